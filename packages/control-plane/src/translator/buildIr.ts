import {
  CONTEXT_EXTENSIONS,
  DEFAULT_MAIN_VHOST,
  STAGES,
  type CircuitBreakerParams,
  type CorsParams,
  type HttpMethod,
  type RemoveHeadersParams,
  type SetHeadersParams,
  type Stage,
} from "@apigw/shared";
import type { GatewayApi, GatewayConfig, GatewayOperation, GatewayStage } from "../store/reads/gatewayConfig";
import type { EffectivePolicy } from "../store/reads/effectivePolicies";
import type {
  GatewayIr,
  IrCluster,
  IrCors,
  IrDiagnostic,
  IrExtAuthz,
  IrForwardRoute,
  IrHeaderMutation,
  IrMethodNotAllowedRoute,
  IrNotFoundRoute,
  IrRoute,
  IrRoutePolicies,
  IrVirtualHost,
} from "./ir";
import {
  compareSegments,
  contextSegments,
  envoyVariableNames,
  operationSegments,
  pathForms,
  pathGroupKey,
  PathTrie,
  renderForm,
  type PathForm,
  type RenderedPath,
  type Segment,
} from "./paths";
import { resolveUpstream } from "./upstreams";
import { compareStrings, deepFreeze } from "./util";

/*
 * GatewayConfig → IR. Pure: the same input gives the same IR, whatever the order of the input's
 * APIs (they are sorted by handle first).
 *
 * Decisions made here:
 *  - Virtual hosts: one per distinct domain (lower-cased), whatever API and stage it comes from;
 *    APIs sharing a domain are merged into it. The `*` host always exists (its 404 at least), so
 *    that every host gets a JSON 404.
 *  - Route order inside a host, across all its APIs: API routes, most specific path first (see
 *    paths.ts compareSegments); then one 405 route per known path; then the 404 catch-all. The
 *    405 routes come after ALL API routes, so a method declared on a more general path
 *    (`PUT /books/{id}`) still answers `PUT /books/new`; Allow lists the methods of the path and
 *    of every path containing it.
 *  - Two operations claiming the same method and path on one host (possible only when domains
 *    differ in case): the first API by handle (RELEASE before TEST) keeps it; a diagnostic names
 *    the other.
 *  - Policies of a route: the stage's API-level policies, with the operation's own policies
 *    replacing those of the same type. setHeaders/removeHeaders → header mutations (several of one
 *    type accumulate in order); cors → the first; circuitBreaker (API level) → the clusters; any
 *    policy enforced by ext_authz (the registry's `enforcedBy`) → ext_authz enabled on the route
 *    with its context extensions, and the request body sent only if appAuth is among them.
 *    `executionCondition`s are not evaluated: the policy applies unconditionally (diagnostic).
 */
export function buildIr(config: GatewayConfig): GatewayIr {
  const diagnostics: IrDiagnostic[] = [];
  const hosts = new Map<string, HostBuilder>();
  const apis = sortedApis(config.apis);

  for (const api of apis) {
    for (const item of apiItems(api)) {
      if (item.kind === "diagnostic") {
        diagnostics.push(item.diagnostic);
        continue;
      }
      let host = hosts.get(item.domain);
      if (!host) hosts.set(item.domain, (host = new HostBuilder(item.domain)));
      if (item.kind === "entry") host.add(item.entry, diagnostics);
    }
  }
  if (!hosts.has(DEFAULT_MAIN_VHOST)) hosts.set(DEFAULT_MAIN_VHOST, new HostBuilder(DEFAULT_MAIN_VHOST));

  const clusters = new Map<string, IrCluster>();
  const virtualHosts = [...hosts.values()]
    .sort((a, b) => compareStrings(a.domain, b.domain))
    .map((host) => host.build(clusters, diagnostics));
  return {
    revision: config.revision,
    virtualHosts,
    clusters: [...clusters.values()].sort((a, b) => compareStrings(a.name, b.name)),
    diagnostics,
  };
}

const byHandle = (a: GatewayApi, b: GatewayApi) => compareStrings(a.handle, b.handle) || compareStrings(a.id, b.id);

/** The APIs by handle (the input is usually sorted already: checked in one pass). */
function sortedApis(apis: readonly GatewayApi[]): readonly GatewayApi[] {
  for (let i = 1; i < apis.length; i++) if (byHandle(apis[i - 1]!, apis[i]!) > 0) return [...apis].sort(byHandle);
  return apis;
}

/*
 * Memoization (what makes a one-API change cost one API, not the whole configuration).
 *
 * Everything decided from one API alone (its stages' upstreams, policies, entries, and their
 * diagnostics, in the order the per-API loop produced them) is computed once per GatewayApi
 * object and kept in a WeakMap, but only for a FROZEN GatewayApi: frozen means immutable, so its
 * identity stands for its content (the pipeline deep-freezes what it reads). An unfrozen input is
 * translated afresh every time, with the same code, so the output never depends on the memo.
 *
 * Each Entry then memoizes its own rendering (variable names, path forms, match/rewrite per form)
 * and its IR routes (forward and 405), keyed by what else they depend on (the methods the path
 * answers, the CORS policy a 405 inherits); IR routes are deep-frozen and keep their identity
 * while nothing they depend on changes, which lets translateIr (envoy/*.ts) memoize the Envoy JSON
 * per IR route, and buildSnapshot the validated bytes per Envoy route. What stays global per build
 * is cheap: grouping entries by path per host, sorting the groups by a precomputed string key,
 * the coverage trie (Allow), and concatenating the memoized routes.
 */

/** What one API contributes, in order: diagnostics, virtual hosts (a stage's host exists even without operations), entries. */
type ApiItem =
  | { kind: "diagnostic"; diagnostic: IrDiagnostic }
  | { kind: "host"; domain: string }
  | { kind: "entry"; domain: string; entry: Entry };

const apiMemo = new WeakMap<GatewayApi, readonly ApiItem[]>();

function apiItems(api: GatewayApi): readonly ApiItem[] {
  if (!Object.isFrozen(api)) return computeApiItems(api);
  let items = apiMemo.get(api);
  if (!items) apiMemo.set(api, (items = computeApiItems(api)));
  return items;
}

function computeApiItems(api: GatewayApi): ApiItem[] {
  const items: ApiItem[] = [];
  const diagnostic = (d: IrDiagnostic) => items.push({ kind: "diagnostic", diagnostic: Object.freeze(d) });
  const stages = [...api.stages].sort((a, b) => STAGES.indexOf(a.stage) - STAGES.indexOf(b.stage));
  for (const stage of stages) addStage(api, stage, items, diagnostic);
  return items;
}

/** One operation of one API in one stage, placed on its host; memoizes its own rendering and IR routes. */
let nextEntryId = 1;

export class Entry {
  /** Unique in the process: identifies the entry in memo keys. */
  readonly id = nextEntryId++;
  /** Context + operation segments, and the group (route identity) key. */
  readonly segments: Segment[];
  readonly key: string;
  /** A string whose code-point order is the route order (compareSegments, then key); undefined when a literal holds a control character. */
  readonly sortKey: string | undefined;
  private names?: ReturnType<typeof envoyVariableNames>;
  private forms?: PathForm[];
  private readonly rendered: RenderedPath[] = [];
  private readonly rendered405: RenderedPath[] = [];
  private readonly forward: ({ key: string; route: IrForwardRoute } | undefined)[] = [];
  private readonly notAllowed: ({ key: string; route: IrMethodNotAllowedRoute } | undefined)[] = [];

  constructor(
    readonly apiId: string,
    readonly stage: Stage,
    readonly method: HttpMethod,
    readonly declaredPath: string,
    readonly context: Segment[],
    readonly operation: Segment[],
    readonly destinations: { cluster: IrCluster; weight: number }[],
    readonly prefix: string,
    readonly hostRewrite: "auto" | "manual",
    readonly policies: RoutePolicyInput,
  ) {
    this.segments = [...context, ...operation];
    this.key = pathGroupKey(this.segments);
    this.sortKey = segmentSortKey(this.segments, this.key);
  }

  get formCount(): number {
    return this.pathForms().length;
  }

  private pathForms(): PathForm[] {
    return (this.forms ??= pathForms(this.context, this.operation));
  }

  private variableNames(): ReturnType<typeof envoyVariableNames> {
    return (this.names ??= envoyVariableNames(this.operation));
  }

  /** Match and rewrite of form `f` (or why it cannot be expressed). */
  render(f: number): RenderedPath {
    return (this.rendered[f] ??= freezeRendered(renderForm(this.pathForms()[f]!, this.variableNames(), this.prefix)));
  }

  /** The same form matched for a 405 (no rewrite). */
  render405(f: number): RenderedPath {
    return (this.rendered405[f] ??= freezeRendered(renderForm(this.pathForms()[f]!, this.variableNames(), "")));
  }

  /** The forward route of form `f`; its CORS allowMethods may default to the path's `allow`. */
  forwardRoute(f: number, allow: HttpMethod[], alsoHead: boolean): IrForwardRoute {
    const cors = this.policies.cors;
    const key = (cors && !cors.allowMethods ? allow.join(",") : "") + (alsoHead ? "|HEAD" : "");
    const memo = this.forward[f];
    if (memo && memo.key === key) return memo.route;
    const rendered = this.render(f) as Exclude<RenderedPath, { problem: string }>;
    const route: IrForwardRoute = deepFreeze({
      kind: "forward",
      name: `${this.apiId} ${this.stage} ${this.method} ${this.declaredPath}`,
      apiId: this.apiId,
      stage: this.stage,
      operation: describe(this),
      method: this.method,
      ...(alsoHead ? { alsoHead: true as const } : {}),
      match: rendered.match,
      ...(rendered.rewrite ? { rewrite: rendered.rewrite } : {}),
      destinations: this.destinations.map((d) => ({ cluster: d.cluster.name, weight: d.weight })),
      hostRewrite: this.hostRewrite,
      policies: irPolicies(this.policies, allow),
    });
    this.forward[f] = { key, route };
    return route;
  }

  /** The 405 route of form `f` of this entry's path (this entry being the group's representative). */
  notAllowedRoute(f: number, allow: HttpMethod[], corsFrom: Entry | undefined): IrMethodNotAllowedRoute {
    const key = `${allow.join(",")}|${corsFrom?.id ?? 0}`;
    const memo = this.notAllowed[f];
    if (memo && memo.key === key) return memo.route;
    const rendered = this.render405(f) as Exclude<RenderedPath, { problem: string }>;
    const route: IrMethodNotAllowedRoute = deepFreeze({
      kind: "methodNotAllowed",
      name: `405 ${this.key}`,
      match: rendered.match,
      allow: [...allow],
      ...(corsFrom ? { cors: corsFor(corsFrom.policies.cors!, [...allow]) } : {}),
    });
    this.notAllowed[f] = { key, route };
    return route;
  }
}

function freezeRendered(rendered: RenderedPath): RenderedPath {
  return deepFreeze(rendered);
}

const RANK_CHAR = { literal: "\u0002", variable: "\u0003", rest: "\u0004" } as const;

/**
 * compareSegments(a, b) || compareStrings(a.key, b.key) as one string, compared by code point:
 * a literal is `\u0002 text \u0001`, a variable `\u0003`, the final `*` `\u0004`, then `\u0000`
 * and the key. A path that ends sorts before one that goes on (`\u0000` is lowest), a literal
 * before a variable before `*`, literals by code point (the `\u0001` terminator is below every
 * character a literal may hold). Undefined when a literal holds a character below U+0005.
 */
function segmentSortKey(segments: Segment[], key: string): string | undefined {
  let out = "";
  for (const s of segments) {
    if (s.kind === "literal") {
      for (let i = 0; i < s.text.length; i++) if (s.text.charCodeAt(i) < 5) return undefined;
      out += RANK_CHAR.literal + s.text + "\u0001";
    } else out += RANK_CHAR[s.kind];
  }
  return out + "\u0000" + key;
}

interface RoutePolicyInput {
  requestHeaders?: IrHeaderMutation;
  responseHeaders?: IrHeaderMutation;
  cors?: CorsParams;
  extAuthz?: IrExtAuthz;
}

interface Group {
  key: string;
  segments: Segment[];
  sortKey: string | undefined;
  /** Sorted by method; one per method. */
  entries: Entry[];
  allow: HttpMethod[];
  /** The entry whose CORS policy the path's 405 route carries. */
  corsFrom?: Entry;
}

function addStage(api: GatewayApi, stage: GatewayStage, items: ApiItem[], diagnostic: (d: IrDiagnostic) => void): void {
  const where = { apiId: api.handle, stage: stage.stage };
  for (const policy of stage.policies) noteCondition(policy, where, diagnostic);
  const circuitBreaker = first(stage.policies, "circuitBreaker")?.params as CircuitBreakerParams | undefined;
  let upstream: ReturnType<typeof resolveUpstream>;
  try {
    upstream = resolveUpstream(api, stage, circuitBreaker);
  } catch (error) {
    diagnostic({ ...where, message: `stage left out: ${(error as Error).message}` });
    return;
  }
  for (const warning of upstream.warnings) diagnostic({ ...where, message: warning });
  // Frozen copies: clusters are shared by routes and builds and must not alias the input's policy params.
  const destinations = upstream.destinations.map((d) => ({ cluster: deepFreeze(structuredClone(d.cluster)), weight: d.weight }));

  const domain = stage.vhost.toLowerCase();
  items.push({ kind: "host", domain });
  const context = contextSegments(api.resolvedContext);
  const apiLevel = byType(stage.policies);
  // Operations with their own upstream: resolved once per distinct upstream of the stage.
  const ownUpstreams = new Map<string, { destinations: typeof destinations; prefix: string } | Error>();
  for (const operation of stage.operations) {
    const operationName = `${operation.method} ${operation.path}`;
    for (const policy of operation.policies) noteCondition(policy, { ...where, operation: operationName }, diagnostic);
    let target = { destinations, prefix: upstream.prefix, hostRewrite: stage.upstream.hostRewrite };
    if (operation.upstream) {
      const key = JSON.stringify(operation.upstream);
      let own = ownUpstreams.get(key);
      if (!own) {
        try {
          const resolved = resolveUpstream(api, { ...stage, upstream: operation.upstream }, circuitBreaker);
          for (const warning of resolved.warnings) diagnostic({ ...where, operation: operationName, message: warning });
          own = { destinations: resolved.destinations.map((d) => ({ cluster: deepFreeze(structuredClone(d.cluster)), weight: d.weight })), prefix: resolved.prefix };
        } catch (error) {
          own = error as Error;
        }
        ownUpstreams.set(key, own);
      }
      if (own instanceof Error) {
        diagnostic({ ...where, operation: operationName, message: `operation left out: its upstream cannot be used: ${own.message}` });
        continue;
      }
      target = { destinations: own.destinations, prefix: own.prefix, hostRewrite: operation.upstream.hostRewrite };
    }
    items.push({
      kind: "entry",
      domain,
      entry: new Entry(
        api.handle,
        stage.stage,
        operation.method,
        operation.path,
        context,
        operationSegments(operation.path),
        target.destinations,
        target.prefix,
        target.hostRewrite,
        routePolicies(api, stage.stage, operation, apiLevel),
      ),
    });
  }
}

function byType(policies: EffectivePolicy[]): Map<string, EffectivePolicy[]> {
  const out = new Map<string, EffectivePolicy[]>();
  for (const policy of policies) {
    const list = out.get(policy.type) ?? [];
    list.push(policy);
    out.set(policy.type, list);
  }
  return out;
}

function first(policies: EffectivePolicy[], type: string): EffectivePolicy | undefined {
  return policies.find((p) => p.type === type);
}

function noteCondition(policy: EffectivePolicy, where: Omit<IrDiagnostic, "message">, diagnostic: (d: IrDiagnostic) => void): void {
  if (policy.executionCondition) {
    diagnostic({ ...where, message: `policy '${policy.type}' has an executionCondition, which the gateway does not evaluate: it applies to every request` });
  }
}

function routePolicies(api: GatewayApi, stage: Stage, operation: GatewayOperation, apiLevel: Map<string, EffectivePolicy[]>): RoutePolicyInput {
  const effective = new Map(apiLevel);
  for (const [type, list] of byType(operation.policies)) effective.set(type, list);
  const out: RoutePolicyInput = {};

  const request: IrHeaderMutation = { set: [], remove: [] };
  const response: IrHeaderMutation = { set: [], remove: [] };
  for (const policy of effective.get("setHeaders") ?? []) {
    const params = policy.params as SetHeadersParams;
    for (const h of params.request?.headers ?? []) request.set.push({ name: h.name, value: h.value });
    for (const h of params.response?.headers ?? []) response.set.push({ name: h.name, value: h.value });
  }
  for (const policy of effective.get("removeHeaders") ?? []) {
    const params = policy.params as RemoveHeadersParams;
    request.remove.push(...(params.request?.headers ?? []));
    response.remove.push(...(params.response?.headers ?? []));
  }
  if (request.set.length || request.remove.length) out.requestHeaders = request;
  if (response.set.length || response.remove.length) out.responseHeaders = response;

  const cors = effective.get("cors")?.[0];
  if (cors) out.cors = cors.params as CorsParams;

  const enforced = [...effective.values()].flat().filter((p) => p.enforcedBy === "ext_authz");
  if (enforced.length > 0) {
    out.extAuthz = {
      contextExtensions: {
        [CONTEXT_EXTENSIONS.apiId]: api.handle,
        [CONTEXT_EXTENSIONS.operation]: `${operation.method} ${operation.path}`,
        [CONTEXT_EXTENSIONS.stage]: stage,
      },
      withBody: enforced.some((p) => p.type === "appAuth"),
    };
  }
  return out;
}

function corsFor(params: CorsParams, allow: HttpMethod[]): IrCors {
  return {
    allowOrigins: [...params.allowOrigins],
    allowMethods: params.allowMethods ? [...params.allowMethods] : allow,
    ...(params.allowHeaders ? { allowHeaders: [...params.allowHeaders] } : {}),
    ...(params.exposeHeaders ? { exposeHeaders: [...params.exposeHeaders] } : {}),
    ...(params.maxAge !== undefined ? { maxAge: params.maxAge } : {}),
    ...(params.allowCredentials !== undefined ? { allowCredentials: params.allowCredentials } : {}),
  };
}

const describe = (e: Entry) => `${e.method} ${e.declaredPath}`;

/** The last route of every virtual host (one shared, frozen object). */
export const NOT_FOUND_ROUTE: IrNotFoundRoute = Object.freeze({ kind: "notFound", name: "404" });

/**
 * What one group (one path on one host) renders to: its forward routes (per form, per entry), its
 * 405 routes, the diagnostics of operations left out, the clusters its routes use. Memoized by the
 * group's first entry and reused while the group has the same entries, Allow and CORS source.
 * `envoy` holds the Envoy JSON of `routes` / `notAllowed`, filled by translateIr per set of options.
 */
export interface GroupRender {
  readonly entries: readonly Entry[];
  readonly allowKey: string;
  readonly corsId: number;
  readonly routes: readonly IrRoute[];
  readonly notAllowed: readonly IrRoute[];
  readonly diagnostics: readonly IrDiagnostic[];
  readonly clusters: readonly IrCluster[];
  readonly envoy: WeakMap<object, unknown>;
}

const groupRenders = new WeakMap<Entry, GroupRender>();

/**
 * The renders an IrVirtualHost was assembled from, in order (its routes are every render's
 * `routes`, then every render's `notAllowed`, then NOT_FOUND_ROUTE). The host and its routes are
 * frozen, so this stays true; translateIr uses it to map whole groups at once.
 */
export const hostPlans = new WeakMap<IrVirtualHost, readonly GroupRender[]>();

/**
 * The order of a host's groups and what each inherits from the groups covering it (Allow, the
 * groups whose CORS policy applies), cached by a signature of the groups (path shape and methods,
 * in insertion order): most changes do not change it, and it is the costly part of a host.
 */
interface HostStructure {
  /** Insertion indices in route order. */
  order: number[];
  allow: HttpMethod[][];
  allowKey: string[];
  /** The other groups covering each group, in route order (insertion indices); undefined for none. */
  others: (number[] | undefined)[];
}

const structures = new Map<string, HostStructure>();
const MAX_STRUCTURES = 16;

function hostStructure(groups: Group[]): HostStructure {
  const cacheable = groups.every((g) => g.sortKey !== undefined);
  let signature: string | undefined;
  if (cacheable) {
    const parts = new Array<string>(groups.length);
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      let methods = "";
      for (const e of g.entries) methods += e.method + ",";
      parts[i] = g.sortKey + "\u0006" + methods;
    }
    signature = parts.join("\u0007");
    const cached = structures.get(signature);
    if (cached) {
      structures.delete(signature);
      structures.set(signature, cached);
      return cached;
    }
  }
  const indices = groups.map((_, i) => i);
  if (cacheable) indices.sort((a, b) => compareStrings(groups[a]!.sortKey!, groups[b]!.sortKey!));
  else indices.sort((a, b) => compareSegments(groups[a]!.segments, groups[b]!.segments) || compareStrings(groups[a]!.key, groups[b]!.key));
  const position = new Array<number>(groups.length);
  indices.forEach((g, p) => (position[g] = p));
  const trie = new PathTrie<number>();
  for (const g of indices) trie.insert(groups[g]!.segments, g);
  const structure: HostStructure = { order: indices, allow: [], allowKey: [], others: [] };
  for (let g = 0; g < groups.length; g++) {
    const covering = trie.covering(groups[g]!.segments);
    if (covering.length > 1) covering.sort((a, b) => position[a]! - position[b]!);
    const allow = new Set<HttpMethod>();
    for (const c of covering) for (const e of groups[c]!.entries) allow.add(e.method);
    if (allow.has("GET")) allow.add("HEAD"); // answered by the GET route (see alsoHead)
    const sorted = Object.freeze([...allow].sort(compareStrings)) as HttpMethod[];
    structure.allow[g] = sorted;
    structure.allowKey[g] = sorted.join(",");
    const others = covering.filter((c) => c !== g);
    structure.others[g] = others.length ? others : undefined;
  }
  if (signature !== undefined) {
    while (structures.size >= MAX_STRUCTURES) structures.delete(structures.keys().next().value!);
    structures.set(signature, structure);
  }
  return structure;
}

class HostBuilder {
  private readonly groups = new Map<string, Group>();

  constructor(readonly domain: string) {}

  add(entry: Entry, diagnostics: IrDiagnostic[]): void {
    const key = entry.key;
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = { key, segments: entry.segments, sortKey: entry.sortKey, entries: [], allow: [] }));
    const taken = group.entries.find((e) => e.method === entry.method);
    if (taken) {
      diagnostics.push({
        apiId: entry.apiId,
        stage: entry.stage,
        operation: describe(entry),
        message: `left out: ${entry.method} ${key} on host '${this.domain}' is already served by '${taken.apiId}' (${taken.stage})`,
      });
      return;
    }
    group.entries.push(entry);
  }

  build(clusters: Map<string, IrCluster>, diagnostics: IrDiagnostic[]): IrVirtualHost {
    const groups = [...this.groups.values()];
    for (const group of groups) if (group.entries.length > 1) group.entries.sort((a, b) => compareStrings(a.method, b.method));
    const structure = hostStructure(groups);

    const renders: GroupRender[] = [];
    let count = 1;
    for (const g of structure.order) {
      const group = groups[g]!;
      group.allow = structure.allow[g]!;
      // The path's own CORS policy, else that of the most specific path containing it.
      group.corsFrom = group.entries.find((e) => e.policies.cors);
      if (!group.corsFrom) {
        for (const other of structure.others[g] ?? []) {
          group.corsFrom = groups[other]!.entries.find((e) => e.policies.cors);
          if (group.corsFrom) break;
        }
      }
      const render = renderGroup(group, structure.allowKey[g]!);
      for (const d of render.diagnostics) diagnostics.push(d);
      for (const c of render.clusters) clusters.set(c.name, c);
      renders.push(render);
      count += render.routes.length + render.notAllowed.length;
    }

    const routes = new Array<IrRoute>(count);
    let i = 0;
    for (const r of renders) for (const route of r.routes) routes[i++] = route;
    for (const r of renders) for (const route of r.notAllowed) routes[i++] = route;
    routes[i] = NOT_FOUND_ROUTE;
    const host: IrVirtualHost = Object.freeze({ name: this.domain, domain: this.domain, routes: Object.freeze(routes) as IrRoute[] });
    hostPlans.set(host, renders);
    return host;
  }
}

function renderGroup(group: Group, allowKey: string): GroupRender {
  const corsId = group.corsFrom?.id ?? 0;
  const first = group.entries[0]!;
  const memo = groupRenders.get(first);
  if (memo && memo.allowKey === allowKey && memo.corsId === corsId && sameEntries(memo.entries, group.entries)) return memo;

  const routes: IrRoute[] = [];
  const notAllowed: IrRoute[] = [];
  const diagnostics: IrDiagnostic[] = [];
  const clusters = new Map<string, IrCluster>();
  const formCount = first.formCount;
  const rejected = new Set<number>();
  const impliedHead = !group.entries.some((e) => e.method === "HEAD");
  for (let f = 0; f < formCount; f++) {
    group.entries.forEach((entry, i) => {
      if (rejected.has(i)) return;
      const rendered = entry.render(f);
      if ("problem" in rendered) {
        rejected.add(i);
        diagnostics.push(Object.freeze({ apiId: entry.apiId, stage: entry.stage, operation: describe(entry), message: `left out: ${rendered.problem}` }));
        return;
      }
      for (const d of entry.destinations) clusters.set(d.cluster.name, d.cluster);
      routes.push(entry.forwardRoute(f, group.allow, impliedHead && entry.method === "GET"));
    });
    const representative = group.entries.findIndex((_, i) => !rejected.has(i));
    if (representative < 0) continue;
    const entry = group.entries[representative]!;
    if ("problem" in entry.render405(f)) continue;
    notAllowed.push(entry.notAllowedRoute(f, group.allow, group.corsFrom));
  }
  const render: GroupRender = Object.freeze({
    entries: Object.freeze([...group.entries]),
    allowKey,
    corsId,
    routes: Object.freeze(routes),
    notAllowed: Object.freeze(notAllowed),
    diagnostics: Object.freeze(diagnostics),
    clusters: Object.freeze([...clusters.values()]),
    envoy: new WeakMap(),
  });
  groupRenders.set(first, render);
  return render;
}

function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function irPolicies(input: RoutePolicyInput, allow: HttpMethod[]): IrRoutePolicies {
  return {
    ...(input.requestHeaders ? { requestHeaders: input.requestHeaders } : {}),
    ...(input.responseHeaders ? { responseHeaders: input.responseHeaders } : {}),
    ...(input.cors ? { cors: corsFor(input.cors, [...allow]) } : {}),
    ...(input.extAuthz ? { extAuthz: input.extAuthz } : {}),
  };
}

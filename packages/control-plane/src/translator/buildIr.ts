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
  IrHeaderMutation,
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
  type Segment,
} from "./paths";
import { resolveUpstream } from "./upstreams";
import { compareStrings } from "./util";

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
  const apis = [...config.apis].sort((a, b) => compareStrings(a.handle, b.handle) || compareStrings(a.id, b.id));

  for (const api of apis) {
    const stages = [...api.stages].sort((a, b) => STAGES.indexOf(a.stage) - STAGES.indexOf(b.stage));
    for (const stage of stages) addStage(api, stage, hosts, diagnostics);
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

/** One operation of one API in one stage, placed on its host. */
interface Entry {
  apiId: string;
  stage: Stage;
  method: HttpMethod;
  declaredPath: string;
  context: Segment[];
  operation: Segment[];
  destinations: { cluster: IrCluster; weight: number }[];
  prefix: string;
  hostRewrite: "auto" | "manual";
  policies: RoutePolicyInput;
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
  /** Sorted by method; one per method. */
  entries: Entry[];
  allow: HttpMethod[];
  cors?: IrCors;
}

function addStage(api: GatewayApi, stage: GatewayStage, hosts: Map<string, HostBuilder>, diagnostics: IrDiagnostic[]): void {
  const where = { apiId: api.handle, stage: stage.stage };
  for (const policy of stage.policies) noteCondition(policy, where, diagnostics);
  const circuitBreaker = first(stage.policies, "circuitBreaker")?.params as CircuitBreakerParams | undefined;
  let upstream: ReturnType<typeof resolveUpstream>;
  try {
    upstream = resolveUpstream(api, stage, circuitBreaker);
  } catch (error) {
    diagnostics.push({ ...where, message: `stage left out: ${(error as Error).message}` });
    return;
  }
  for (const warning of upstream.warnings) diagnostics.push({ ...where, message: warning });

  const domain = stage.vhost.toLowerCase();
  let host = hosts.get(domain);
  if (!host) hosts.set(domain, (host = new HostBuilder(domain)));
  const context = contextSegments(api.resolvedContext);
  const apiLevel = byType(stage.policies);
  for (const operation of stage.operations) {
    const operationName = `${operation.method} ${operation.path}`;
    for (const policy of operation.policies) noteCondition(policy, { ...where, operation: operationName }, diagnostics);
    host.add(
      {
        apiId: api.handle,
        stage: stage.stage,
        method: operation.method,
        declaredPath: operation.path,
        context,
        operation: operationSegments(operation.path),
        destinations: upstream.destinations,
        prefix: upstream.prefix,
        hostRewrite: stage.upstream.hostRewrite,
        policies: routePolicies(api, stage.stage, operation, apiLevel),
      },
      diagnostics,
    );
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

function noteCondition(policy: EffectivePolicy, where: Omit<IrDiagnostic, "message">, diagnostics: IrDiagnostic[]): void {
  if (policy.executionCondition) {
    diagnostics.push({ ...where, message: `policy '${policy.type}' has an executionCondition, which the gateway does not evaluate: it applies to every request` });
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

class HostBuilder {
  private readonly groups = new Map<string, Group>();

  constructor(readonly domain: string) {}

  add(entry: Entry, diagnostics: IrDiagnostic[]): void {
    const segments = [...entry.context, ...entry.operation];
    const key = pathGroupKey(segments);
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = { key, segments, entries: [], allow: [] }));
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
    const groups = [...this.groups.values()].sort((a, b) => compareSegments(a.segments, b.segments) || compareStrings(a.key, b.key));
    const trie = new PathTrie<Group>();
    for (const group of groups) {
      group.entries.sort((a, b) => compareStrings(a.method, b.method));
      trie.insert(group.segments, group);
    }
    const order = new Map(groups.map((g, i) => [g, i]));
    for (const group of groups) {
      const covering = trie.covering(group.segments).sort((a, b) => order.get(a)! - order.get(b)!);
      const allow = new Set<HttpMethod>();
      for (const g of covering) for (const e of g.entries) allow.add(e.method);
      group.allow = [...allow].sort(compareStrings);
      // The path's own CORS policy, else that of the most specific path containing it.
      const withCors = [group, ...covering.filter((g) => g !== group)].flatMap((g) => g.entries).find((e) => e.policies.cors);
      if (withCors) group.cors = corsFor(withCors.policies.cors!, group.allow);
    }

    const routes: IrRoute[] = [];
    const notAllowed: IrRoute[] = [];
    for (const group of groups) {
      const names = group.entries.map((e) => envoyVariableNames(e.operation));
      const forms = group.entries.map((e) => pathForms(e.context, e.operation));
      const formCount = forms[0]!.length;
      const rejected = new Set<number>();
      for (let f = 0; f < formCount; f++) {
        group.entries.forEach((entry, i) => {
          if (rejected.has(i)) return;
          const rendered = renderForm(forms[i]![f]!, names[i]!, entry.prefix);
          if ("problem" in rendered) {
            rejected.add(i);
            diagnostics.push({ apiId: entry.apiId, stage: entry.stage, operation: describe(entry), message: `left out: ${rendered.problem}` });
            return;
          }
          for (const d of entry.destinations) clusters.set(d.cluster.name, d.cluster);
          routes.push({
            kind: "forward",
            name: `${entry.apiId} ${entry.stage} ${entry.method} ${entry.declaredPath}`,
            apiId: entry.apiId,
            stage: entry.stage,
            operation: describe(entry),
            method: entry.method,
            match: rendered.match,
            ...(rendered.rewrite ? { rewrite: rendered.rewrite } : {}),
            destinations: entry.destinations.map((d) => ({ cluster: d.cluster.name, weight: d.weight })),
            hostRewrite: entry.hostRewrite,
            policies: irPolicies(entry.policies, group.allow),
          });
        });
        const representative = group.entries.findIndex((_, i) => !rejected.has(i));
        if (representative < 0) continue;
        const rendered = renderForm(forms[representative]![f]!, names[representative]!, "");
        if ("problem" in rendered) continue;
        notAllowed.push({
          kind: "methodNotAllowed",
          name: `405 ${group.key}`,
          match: rendered.match,
          allow: group.allow,
          ...(group.cors ? { cors: group.cors } : {}),
        });
      }
    }
    routes.push(...notAllowed, { kind: "notFound", name: "404" });
    return { name: this.domain, domain: this.domain, routes };
  }
}

function irPolicies(input: RoutePolicyInput, allow: HttpMethod[]): IrRoutePolicies {
  return {
    ...(input.requestHeaders ? { requestHeaders: input.requestHeaders } : {}),
    ...(input.responseHeaders ? { responseHeaders: input.responseHeaders } : {}),
    ...(input.cors ? { cors: corsFor(input.cors, allow) } : {}),
    ...(input.extAuthz ? { extAuthz: input.extAuthz } : {}),
  };
}

/**
 * Incremental validation and encoding of a RouteConfiguration: a one-route change costs one route,
 * not the whole configuration (one RouteConfiguration holds every API's routes: 14,001 routes and
 * 6 MiB at 1,000 APIs).
 *
 * Protobuf encodes a message as the concatenation of its fields' encodings, in field-number order
 * (that is what @bufbuild/protobuf's toBinary writes); a repeated message field is one
 * `tag, varint length, bytes` record per element. So the bytes of a RouteConfiguration are
 *
 *   [its fields numbered < 2] + per virtual host: 0x12 len(vh) vh + [its fields numbered > 2]
 *   vh = [the host's fields numbered < 3] + per route: 0x1a len(route) route + [fields > 3]
 *
 * (virtual_hosts is field 2 of RouteConfiguration, routes field 3 of VirtualHost): exactly what a
 * full toBinary produces (test/unit/route-configuration-encoding.test.ts checks byte equality).
 *
 * Validation is split the same way, with the same result as validating the whole resource:
 *  - the "shell" (the RouteConfiguration with every host's `routes` left out) goes through
 *    checkEnvoyResource as a RouteConfiguration: its own fields, the hosts' fields, and the rules
 *    that span hosts (unique host names, a domain in one host only); its bytes give the head/tail
 *    pieces above. Neither `virtual_hosts` nor `routes` carries a PGV rule of its own (no
 *    min/max_items), and no check on a Route depends on where the route sits, so nothing is lost.
 *  - each route goes through checkEnvoyResource as an envoy.config.route.v3.Route, once per route
 *    OBJECT when the object is frozen (frozen = immutable: the translator deep-freezes the routes it
 *    emits and keeps them while the API is unchanged): its bytes, issues, digest and cluster
 *    references are kept in a WeakMap keyed by the route object. An unfrozen route is checked on
 *    every build. Issues are reported with the path they would have in the whole resource
 *    (`virtual_hosts[0].routes[3].match.path`).
 *  - as for the whole resource, decode issues (unknown field, wrong type...) hide the rule issues:
 *    when a piece does not decode, only the pieces' decode issues are reported.
 *  - consecutive routes are encoded in content-defined chunks (a chunk ends after a route whose
 *    digest says so, about one in 64, or at the end of its host) kept by their first route object:
 *    a build walks the routes comparing object identity, copies unchanged chunks whole and builds
 *    only the chunks around what changed. Per change: a pointer comparison per route, a memcpy per
 *    chunk, the validation of the changed routes.
 *
 * Version: sha256 over a skeleton of the resource (the head and tail pieces, and per host the
 * digests of its chunks, each chunk digest being sha256 over its routes' lengths and digests;
 * every piece length-prefixed), 16 hex digits. Chunks depend on content only, so the version is a
 * function of the bytes alone: equal bytes get equal versions, in any process, without hashing
 * megabytes on every change.
 *
 * A resource of another shape (no `virtual_hosts` list, both `virtual_hosts` and `virtualHosts`,
 * a host or route that is not an object) is left to the caller's whole-resource check.
 */
import { createHash } from "node:crypto";
import { checkEnvoyResource, encodeStrict, ENVOY_TYPE_URLS, EnvoyResourceError, type ResourceIssue, type ValidateOptions } from "../envoy/schema/strict";
import { collectClusterRefs, isObject, stableStringify, type Obj } from "./json";

export const ROUTE_TYPE_URL = ENVOY_TYPE_URLS.route;

/** RouteConfiguration.virtual_hosts and VirtualHost.routes: field numbers and their (length-delimited) tag bytes. */
const VIRTUAL_HOSTS_FIELD = 2;
const ROUTES_FIELD = 3;
const VIRTUAL_HOSTS_TAG = (VIRTUAL_HOSTS_FIELD << 3) | 2;
const ROUTES_TAG = (ROUTES_FIELD << 3) | 2;
const DIGEST_BYTES = 16;

export interface EncodedRouteConfiguration {
  /** Every issue of the resource (empty when valid). */
  issues: ResourceIssue[];
  /** The encoded RouteConfiguration (valid only). */
  value?: Uint8Array;
  /** 16 hex digits (valid only). */
  version?: string;
  /** Clusters the routes may send traffic to, sorted (valid only). */
  clusterRefs?: string[];
}

interface EncodedRoute {
  bytes: Uint8Array;
  digest: Uint8Array;
  issues: ResourceIssue[];
  /** The issues come from the strict decode, not from the rules (see the header). */
  undecodable: boolean;
  clusterRefs: readonly string[];
  /** A chunk ends after this route (content-defined: a property of its digest). */
  boundary: boolean;
}

/**
 * A run of consecutive routes of one host, encoded together: `0x1a len route` for each. Chunks end
 * after a route whose digest marks it as a boundary (about one route in CHUNK_SPREAD) or at the
 * end of the host, so they depend on content only and realign right after a changed route: a
 * one-route change re-encodes one chunk, and every other chunk is found again by its first route
 * object and checked route by route (identity). Only chunks of frozen routes are kept.
 */
interface Chunk {
  routes: readonly object[];
  bytes: Uint8Array;
  /** sha256 (16 bytes) over the chunk's `length, route digest` pairs. */
  digest: Uint8Array;
  clusterRefs: readonly string[];
  /** Its last route is a boundary (else the chunk was cut short by the end of its host). */
  endsAtBoundary: boolean;
}

interface EncodedShell {
  issues: ResourceIssue[];
  undecodable: boolean;
  head: Uint8Array;
  tail: Uint8Array;
  hosts: { head: Uint8Array; tail: Uint8Array }[];
  clusterRefs: readonly string[];
}

interface Caches {
  routes: WeakMap<object, EncodedRoute>;
  chunks: WeakMap<object, Chunk>;
}

/** Per validation options: route object → its check, first route object → its chunk. */
const caches = new Map<string, Caches>();
/** Recent shells by content (a few: one per gateway group and validation options is the usual need). */
const shellCache = new Map<string, EncodedShell>();
const SHELL_CACHE_SIZE = 16;
/** A route is a chunk boundary when the first byte of its digest is below 256 / CHUNK_SPREAD. */
const CHUNK_SPREAD = 64;

const EMPTY = new Uint8Array(0);

function optionsKey(options: ValidateOptions): string {
  return `${options.semantic ?? true}|${options.deprecated ?? false}|${options.regexProgramSizeLimit ?? 100}`;
}

/** What the last call did (for benchmarks and tests): routes checked anew, chunks reused and rebuilt. */
export const routeConfigurationStats = { checked: 0, chunksReused: 0, chunksBuilt: 0 };

/**
 * Validates and encodes a RouteConfiguration piece by piece (see the header); undefined when the
 * resource does not have the shape this handles (the caller then checks it whole).
 */
export function encodeRouteConfiguration(resource: unknown, validate: ValidateOptions = {}): EncodedRouteConfiguration | undefined {
  if (!isObject(resource)) return undefined;
  const snake = resource.virtual_hosts !== undefined;
  const camel = resource.virtualHosts !== undefined;
  if (snake === camel) return undefined;
  const hostsKey = snake ? "virtual_hosts" : "virtualHosts";
  const hosts = resource[hostsKey];
  if (!Array.isArray(hosts)) return undefined;
  const hostRoutes: unknown[][] = [];
  const shellHosts: Obj[] = [];
  for (const host of hosts) {
    if (!isObject(host)) return undefined;
    const routes = host.routes ?? [];
    if (!Array.isArray(routes)) return undefined;
    for (const route of routes) if (!isObject(route)) return undefined;
    hostRoutes.push(routes);
    const { routes: _omitted, ...shellHost } = host;
    shellHosts.push(shellHost);
  }

  const key = optionsKey(validate);
  const shell = encodeShell({ ...resource, [hostsKey]: shellHosts }, key, validate);
  if (!shell) return undefined;
  let cache = caches.get(key);
  if (!cache) caches.set(key, (cache = { routes: new WeakMap(), chunks: new WeakMap() }));
  routeConfigurationStats.checked = 0;
  routeConfigurationStats.chunksReused = 0;
  routeConfigurationStats.chunksBuilt = 0;

  // checkEnvoyResource reports only decode issues when the strict decode fails (the rules are
  // checked on a decoded message): when any piece fails to decode, so does the whole resource, and
  // its issues are the decode issues of every piece.
  const issues = [...shell.issues];
  const decodeIssues = shell.undecodable ? [...shell.issues] : [];
  const hostChunks = hostRoutes.map((routes, i) => chunksOf(routes as object[], cache, validate, (j, entry) => {
    for (const issue of entry.issues) {
      const placed = { path: `virtual_hosts[${i}].routes[${j}]${issue.path ? `.${issue.path}` : ""}`, message: issue.message };
      issues.push(placed);
      if (entry.undecodable) decodeIssues.push(placed);
    }
  }));
  if (decodeIssues.length) return { issues: decodeIssues };
  if (issues.length) return { issues };

  // The value, and the (length-prefixed, hence unambiguous) skeleton hashed for the version.
  const hostLengths = hostChunks.map((chunks, i) => chunks.reduce((n, c) => n + c.bytes.length, shell.hosts[i]!.head.length + shell.hosts[i]!.tail.length));
  const total = hostLengths.reduce((n, length) => n + 1 + varintSize(length) + length, shell.head.length + shell.tail.length);
  const value = Buffer.allocUnsafe(total);
  let v = copy(value, 0, shell.head);
  const skeleton = new Skeleton();
  skeleton.piece(shell.head);
  hostChunks.forEach((chunks, i) => {
    const h = shell.hosts[i]!;
    value[v++] = VIRTUAL_HOSTS_TAG;
    v = writeVarint(value, v, hostLengths[i]!);
    v += copy(value, v, h.head);
    for (const c of chunks) v += copy(value, v, c.bytes);
    v += copy(value, v, h.tail);
    skeleton.piece(h.head);
    skeleton.number(chunks.length);
    for (const c of chunks) skeleton.raw(c.digest);
    skeleton.piece(h.tail);
  });
  v += copy(value, v, shell.tail);
  skeleton.piece(shell.tail);
  if (v !== total) throw new Error(`RouteConfiguration assembly wrote ${v} of ${total} bytes`);

  const refs = new Set<string>(shell.clusterRefs);
  for (const chunks of hostChunks) for (const c of chunks) for (const name of c.clusterRefs) refs.add(name);
  return { issues, value, version: skeleton.version(), clusterRefs: [...refs].sort() };
}

/** The host's routes as chunks: cached ones where the same route objects follow, new ones elsewhere. */
function chunksOf(routes: object[], cache: Caches, validate: ValidateOptions, report: (index: number, entry: EncodedRoute) => void): Chunk[] {
  const out: Chunk[] = [];
  let failed = false;
  let i = 0;
  while (i < routes.length) {
    const cached = cache.chunks.get(routes[i]!);
    if (cached && matches(cached, routes, i)) {
      out.push(cached);
      routeConfigurationStats.chunksReused++;
      i += cached.routes.length;
      continue;
    }
    // A new chunk: up to and including the next boundary route (or the host's last route).
    const members: object[] = [];
    const encoded: EncodedRoute[] = [];
    let frozen = true;
    for (; i < routes.length; i++) {
      const route = routes[i]!;
      const isFrozen = Object.isFrozen(route);
      let entry = isFrozen ? cache.routes.get(route) : undefined;
      if (!entry) {
        routeConfigurationStats.checked++;
        entry = encodeRoute(route as Obj, validate);
        if (isFrozen) cache.routes.set(route, entry);
      }
      frozen &&= isFrozen;
      members.push(route);
      encoded.push(entry);
      if (entry.issues.length) {
        failed = true;
        report(i, entry);
      }
      if (entry.boundary) {
        i++;
        break;
      }
    }
    if (failed) continue; // keep going for the issues; nothing is assembled
    const chunk = makeChunk(members, encoded);
    routeConfigurationStats.chunksBuilt++;
    if (frozen) cache.chunks.set(members[0]!, chunk);
    out.push(chunk);
  }
  return out;
}

/** The cached chunk (only chunks of frozen routes are cached) applies at `at`: the same route objects follow, and it ends where a chunk would end. */
function matches(chunk: Chunk, routes: object[], at: number): boolean {
  const n = chunk.routes.length;
  if (at + n > routes.length) return false;
  for (let k = 0; k < n; k++) if (routes[at + k] !== chunk.routes[k]) return false;
  // A chunk cut short by the end of its host must end a host here too.
  return at + n === routes.length || chunk.endsAtBoundary;
}

function makeChunk(routes: object[], encoded: EncodedRoute[]): Chunk {
  let size = 0;
  for (const e of encoded) size += 1 + varintSize(e.bytes.length) + e.bytes.length;
  const bytes = Buffer.allocUnsafe(size);
  const skeleton = Buffer.allocUnsafe(encoded.length * (5 + DIGEST_BYTES));
  let b = 0;
  let s = 0;
  const refs = new Set<string>();
  for (const e of encoded) {
    bytes[b++] = ROUTES_TAG;
    b = writeVarint(bytes, b, e.bytes.length);
    b += copy(bytes, b, e.bytes);
    s = writeVarint(skeleton, s, e.bytes.length);
    s += copy(skeleton, s, e.digest);
    for (const c of e.clusterRefs) refs.add(c);
  }
  return {
    routes,
    bytes,
    digest: createHash("sha256").update(skeleton.subarray(0, s)).digest().subarray(0, DIGEST_BYTES),
    clusterRefs: [...refs],
    endsAtBoundary: encoded[encoded.length - 1]!.boundary,
  };
}

/** The bytes hashed for the version: every variable-length piece length-prefixed. */
class Skeleton {
  private readonly parts: Uint8Array[] = [];
  piece(bytes: Uint8Array): void {
    this.number(bytes.length);
    this.parts.push(bytes);
  }
  number(n: number): void {
    const b = Buffer.allocUnsafe(varintSize(n));
    writeVarint(b, 0, n);
    this.parts.push(b);
  }
  raw(bytes: Uint8Array): void {
    this.parts.push(bytes);
  }
  version(): string {
    const hash = createHash("sha256");
    hash.update(Buffer.concat(this.parts));
    return hash.digest("hex").slice(0, 16);
  }
}

function encodeRoute(route: Obj, validate: ValidateOptions): EncodedRoute {
  const checked = checkEnvoyResource(ROUTE_TYPE_URL, route, validate);
  if (!checked.bytes) {
    return { bytes: EMPTY, digest: EMPTY, issues: checked.issues, undecodable: !decodes(ROUTE_TYPE_URL, route), clusterRefs: [], boundary: false };
  }
  const digest = createHash("sha256").update(checked.bytes).digest().subarray(0, DIGEST_BYTES);
  return {
    bytes: checked.bytes,
    digest,
    issues: [],
    undecodable: false,
    clusterRefs: Object.freeze(collectClusterRefs(route)),
    boundary: digest[0]! < 256 / CHUNK_SPREAD,
  };
}

/** Whether the strict decode accepts the JSON (only asked about invalid pieces: their issues are decode issues when it does not). */
function decodes(typeUrl: string, json: unknown): boolean {
  try {
    encodeStrict(typeUrl, json);
    return true;
  } catch (error) {
    if (error instanceof EnvoyResourceError) return false;
    throw error;
  }
}

/** Checks the shell (cached by content) and cuts its bytes into the pieces around hosts and routes; undefined if they cannot be cut. */
function encodeShell(shell: Obj, key: string, validate: ValidateOptions): EncodedShell | undefined {
  const cacheKey = `${key}\u0000${stableStringify(shell)}`;
  const cached = shellCache.get(cacheKey);
  if (cached) {
    shellCache.delete(cacheKey);
    shellCache.set(cacheKey, cached);
    return cached;
  }
  const checked = checkEnvoyResource(ENVOY_TYPE_URLS.routeConfiguration, shell, validate);
  let result: EncodedShell | undefined;
  if (!checked.bytes) {
    result = { issues: checked.issues, undecodable: !decodes(ENVOY_TYPE_URLS.routeConfiguration, shell), head: EMPTY, tail: EMPTY, hosts: [], clusterRefs: [] };
  } else {
    const top = splitRepeated(checked.bytes, VIRTUAL_HOSTS_FIELD);
    const count = (shell.virtual_hosts ?? shell.virtualHosts) as unknown[];
    if (!top || top.items.length !== count.length) return undefined;
    const hosts: EncodedShell["hosts"] = [];
    for (const item of top.items) {
      const host = splitRepeated(item, ROUTES_FIELD);
      if (!host || host.items.length !== 0) return undefined;
      hosts.push({ head: host.head, tail: host.tail });
    }
    result = { issues: [], undecodable: false, head: top.head, tail: top.tail, hosts, clusterRefs: Object.freeze(collectClusterRefs(shell)) };
  }
  while (shellCache.size >= SHELL_CACHE_SIZE) shellCache.delete(shellCache.keys().next().value!);
  shellCache.set(cacheKey, result);
  return result;
}

/**
 * Cuts an encoded message into the fields numbered below `fieldNumber` (head), the payloads of
 * that (length-delimited, repeated) field, and the fields numbered above it (tail). Undefined when
 * the fields are not in number order around it, or the bytes hold groups.
 */
export function splitRepeated(bytes: Uint8Array, fieldNumber: number): { head: Uint8Array; items: Uint8Array[]; tail: Uint8Array } | undefined {
  const items: Uint8Array[] = [];
  let headEnd = -1;
  let tailStart = -1;
  let pos = 0;
  while (pos < bytes.length) {
    const start = pos;
    const tag = readVarint(bytes, pos);
    if (!tag) return undefined;
    pos = tag.next;
    const number = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    let payloadStart = pos;
    switch (wire) {
      case 0: {
        const v = readVarint(bytes, pos);
        if (!v) return undefined;
        pos = v.next;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const len = readVarint(bytes, pos);
        if (!len) return undefined;
        payloadStart = len.next;
        pos = len.next + len.value;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        return undefined;
    }
    if (pos > bytes.length) return undefined;
    if (number < fieldNumber) {
      if (headEnd >= 0 || tailStart >= 0) return undefined;
    } else if (number === fieldNumber) {
      if (wire !== 2 || tailStart >= 0) return undefined;
      if (headEnd < 0) headEnd = start;
      items.push(bytes.subarray(payloadStart, pos));
    } else if (tailStart < 0) {
      tailStart = start;
      if (headEnd < 0) headEnd = start;
    }
  }
  if (headEnd < 0) headEnd = bytes.length;
  if (tailStart < 0) tailStart = bytes.length;
  return { head: bytes.subarray(0, headEnd), items, tail: bytes.subarray(tailStart) };
}

function readVarint(bytes: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10 && pos < bytes.length; i++) {
    const b = bytes[pos++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return { value, next: pos };
    scale *= 128;
  }
  return undefined;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buffer: Uint8Array, pos: number, n: number): number {
  while (n >= 128) {
    buffer[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buffer[pos++] = n;
  return pos;
}

function copy(target: Uint8Array, at: number, source: Uint8Array): number {
  target.set(source, at);
  return source.length;
}

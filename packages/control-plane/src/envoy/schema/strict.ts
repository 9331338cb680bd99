/**
 * Strict encoding and validation of Envoy v3 resources, checked against Envoy's own .proto files
 * (the descriptor set loaded by registry.ts). Works offline and never drops data silently.
 *
 * Why: protobufjs `fromObject` (what @grpc/proto-loader uses) drops unknown fields, turns an unknown
 * enum name into 0 and a misspelled Any `@type` into an empty Any; Envoy then gets a different
 * config than the one we meant, or NACKs a whole response. Here every resource is decoded from its
 * proto3-JSON form (snake_case names as in Envoy's YAML, or lowerCamelCase) with @bufbuild/protobuf
 * `fromJson` (no ignoreUnknownFields) and encoded with `toBinary`.
 *
 * API
 *  - encodeStrict(typeUrl, json): Uint8Array — strict decode + binary encode; throws
 *    EnvoyResourceError on a decode error. Map keys are sorted first, so equal configs give equal
 *    bytes (usable for per-resource version hashes). Does NOT run the rule checks below.
 *  - validateEnvoyResource(typeUrl, json, options?): ResourceIssue[] — every issue, `{path, message}`
 *    with `path` in proto field names (`filter_chains[0].filters[0].typed_config.stat_prefix`,
 *    map entries as `typed_per_filter_config["name"]`). Empty array = valid.
 *  - checkEnvoyResource(typeUrl, json, options?): {issues, bytes?} — both in one pass.
 *  - anyOf(typeUrl, json, options?): {type_url, value} — validates (throws EnvoyResourceError with
 *    all issues) and encodes: the form to hand to grpc-js for a DiscoveryResponse resource.
 *  - anyJson(typeUrl, json): {"@type": url, ...json} — for nesting a typed_config in JSON.
 *  - decodeEnvoyResource(typeUrl, bytes): JSON (proto field names) — for tests and debugging.
 *  - ENVOY_TYPE_URLS: the type URLs the control plane uses; typeUrlOf / typeNameOf.
 *  - uriTemplateProblems(template, "match" | "rewrite"): Envoy's URI template syntax, for callers
 *    that want to check a WSO2 path before translating it.
 *
 * Covered
 *  1. Strict decode (any failure stops here; the JSON is then walked to point at each bad field):
 *     unknown fields (with a "did you mean" hint), unknown enum names, wrong JSON types (a string
 *     where an integer is expected, an object where a list is expected...), integers out of range
 *     (uint32 weight 4294967296), two members of one oneof, the same field given twice (as
 *     `foo_bar` and `fooBar`), malformed Duration/Timestamp strings, an Any whose `@type` is
 *     missing or not in the descriptor set (with the nearest type name as a hint). Note: proto3 JSON
 *     accepts numeric strings for integers ("80" is port 80), as Envoy's own JSON/YAML parser does.
 *  2. protoc-gen-validate `(validate.rules)` read from the descriptors, with PGV semantics (proto3
 *     scalars are checked even when zero; oneof members only when set; proto3 `optional` and
 *     wrapper/message fields only when set):
 *       message: required, skip · oneof `(validate.required)` · `(validate.disabled)` messages
 *       string: const, len, min_len, max_len, len_bytes, min_bytes, max_bytes, pattern (RE2 via
 *         re2js, partial match as in PGV), prefix, suffix, contains, not_contains, in, not_in,
 *         ignore_empty, well_known: HTTP_HEADER_NAME / HTTP_HEADER_VALUE (strict and loose),
 *         hostname, ip, ipv4, ipv6, address, uri, uri_ref, uuid, email (approximations of PGV's
 *         checks: RFC 1034 labels, node:net IP parsing, WHATWG URL parsing)
 *       bytes: const, len, min_len, max_len, pattern, prefix, suffix, contains, in, not_in, ip/ipv4/ipv6
 *       all numeric types (int32/64, uint32/64, sint, fixed, sfixed, float, double): const, lt, lte,
 *         gt, gte (including PGV's "outside the range" form when lt < gt), in, not_in
 *       bool: const · enum: const, defined_only, in, not_in
 *       repeated: min_items, max_items, unique, items (any of the rules above per item), ignore_empty
 *       map: min_pairs, max_pairs, keys, values, ignore_empty
 *       duration: required, const, lt, lte, gt, gte, in, not_in · timestamp: required, const, lt,
 *         lte, gt, gte, lt_now, gt_now, within · any: required, in, not_in
 *       wrapper fields (google.protobuf.UInt32Value...) with scalar rules: checked when set.
 *     Recurses into nested messages, lists, maps and into every Any payload (Envoy validates a
 *     typed_config when it unpacks it). An Any with an empty type URL (`typed_config: {}`) is an issue.
 *  3. RE2: every `envoy.type.matcher.v3.RegexMatcher` / `xds.type.matcher.v3.RegexMatcher` (each
 *     `safe_regex`, `regex_rewrite.pattern`, header/query string matchers...) must compile with
 *     re2js (no lookaround, no backreferences) and its program size must not exceed
 *     `regexProgramSizeLimit` (default 100, Envoy's default error level). re2js's program size is
 *     an estimate of C++ RE2's (it compiles to runes, C++ RE2 to UTF-8 bytes, so it tends to be
 *     lower): a pattern near the limit may still be refused by Envoy.
 *  4. Envoy rules that are not in PGV but NACK a resource (option `semantic`, default on):
 *       RouteConfiguration: unique virtual host names; a domain in only one virtual host (case
 *         insensitive); at most one bare `*`; `*` only as first or last character.
 *       RouteAction: weighted_clusters weights sum > 0 and <= 4294967295; each ClusterWeight has
 *         exactly one of name / cluster_header; at most one of prefix_rewrite, regex_rewrite,
 *         path_rewrite_policy.
 *       Route: a uri_template rewrite needs a uri_template path_match_policy and may use only its
 *         variables.
 *       UriTemplateMatchConfig / UriTemplateRewriteConfig: a port of Envoy's template parser:
 *         starts with `/`, printable ASCII, no `//`, literals of RFC 3986 pchar (no `*`), at most 5
 *         variables, names 1-16 chars `^[a-zA-Z][a-zA-Z0-9_]*$` and unique, no glob or variable
 *         after `**` (literals may follow, as in `/{path=**}.m3u8`); rewrites: `/`-led literals and
 *         plain `{var}` only.
 *       Cluster: STATIC/STRICT_DNS/LOGICAL_DNS need load_assignment with endpoints; LOGICAL_DNS
 *         exactly one; STATIC endpoints are IP literals; EDS needs eds_cluster_config.eds_config.
 *       ClusterLoadAssignment (outside a cluster's load_assignment, i.e. EDS): IP literals.
 *       HttpConnectionManager: the router filter is last, and only last.
 *       ExtAuthz and ApiConfigSource: transport_api_version V3.
 *       LocalRateLimit (HTTP and network): token_bucket.fill_interval >= 50ms.
 *       DiscoveryResponse / DeltaDiscoveryResponse: every resource's type URL equals the response's
 *         type_url; no resource name twice (delta: nor both updated and removed).
 *  5. Option `deprecated: true`: using a field marked deprecated is an issue (off by default:
 *     Envoy only warns).
 *
 * Not covered
 *  - Rules that span resources: a route naming a cluster that does not exist (503, no NACK),
 *    typed_per_filter_config keys naming a filter missing from the HCM chain, listener address
 *    changes under a stable name, ADS ordering/versions.
 *  - Extension-specific checks done in Envoy's C++ factories other than those listed in 4 (e.g.
 *    TLS certificate loading, Lua syntax, cluster `cluster_type` plugins, filter-name registration:
 *    a `name` that Envoy does not know is only caught through the typed_config type).
 *  - Runtime-dependent limits (a raised `re2.max_program_size.error_level`), `xds.validate` rules,
 *    PGV's `no_sparse` (cannot occur in proto3 JSON), exact PGV email/uri grammars.
 *  - Message-typed enum aliasing and `(udpa.annotations...)`/`(envoy.annotations...)` other than
 *    `deprecated` (option 5).
 */
import { isIP, isIPv4, isIPv6 } from "node:net";
import {
  fromBinary,
  fromJson,
  getOption,
  hasOption,
  toBinary,
  toJson,
  type DescEnum,
  type DescExtension,
  type DescField,
  type DescMessage,
  type DescOneof,
  type JsonObject,
  type JsonValue,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import { reflect, type ReflectList, type ReflectMap, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { hasCustomJsonRepresentation, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { RE2JS } from "re2js";
import { loadEnvoyRegistry, TYPE_URL_PREFIX, typeNameOf, typeUrlOf } from "./registry";

export { typeNameOf, typeUrlOf, TYPE_URL_PREFIX };

const url = (name: string) => `${TYPE_URL_PREFIX}${name}` as const;

/** Type URLs of the resources and extension configs the control plane produces. */
export const ENVOY_TYPE_URLS = {
  listener: url("envoy.config.listener.v3.Listener"),
  routeConfiguration: url("envoy.config.route.v3.RouteConfiguration"),
  /** One route of a RouteConfiguration: xds/routeConfiguration.ts validates and encodes routes one by one. */
  route: url("envoy.config.route.v3.Route"),
  cluster: url("envoy.config.cluster.v3.Cluster"),
  clusterLoadAssignment: url("envoy.config.endpoint.v3.ClusterLoadAssignment"),
  httpConnectionManager: url("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
  router: url("envoy.extensions.filters.http.router.v3.Router"),
  extAuthz: url("envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"),
  extAuthzPerRoute: url("envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"),
  cors: url("envoy.extensions.filters.http.cors.v3.Cors"),
  corsPolicy: url("envoy.extensions.filters.http.cors.v3.CorsPolicy"),
  upstreamTlsContext: url("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
  downstreamTlsContext: url("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"),
  stdoutAccessLog: url("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"),
  uriTemplateMatch: url("envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"),
  uriTemplateRewrite: url("envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig"),
  httpProtocolOptions: url("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
  bootstrap: url("envoy.config.bootstrap.v3.Bootstrap"),
  discoveryRequest: url("envoy.service.discovery.v3.DiscoveryRequest"),
  discoveryResponse: url("envoy.service.discovery.v3.DiscoveryResponse"),
  deltaDiscoveryRequest: url("envoy.service.discovery.v3.DeltaDiscoveryRequest"),
  deltaDiscoveryResponse: url("envoy.service.discovery.v3.DeltaDiscoveryResponse"),
  checkRequest: url("envoy.service.auth.v3.CheckRequest"),
  checkResponse: url("envoy.service.auth.v3.CheckResponse"),
} as const;

export interface ResourceIssue {
  /** proto field path from the resource root, e.g. `virtual_hosts[0].routes[1].match.safe_regex.regex` */
  path: string;
  message: string;
}

export interface ValidateOptions {
  /** Envoy rules beyond PGV (section 4 of the header comment). Default true. */
  semantic?: boolean;
  /** Report fields marked deprecated as issues. Default false. */
  deprecated?: boolean;
  /** Largest accepted RE2 program size (re2js estimate). Default 100, Envoy's default. */
  regexProgramSizeLimit?: number;
}

/** `{type_url, value}`: an encoded google.protobuf.Any, the shape grpc-js expects. */
export interface EncodedAny {
  type_url: string;
  value: Uint8Array;
}

export class EnvoyResourceError extends Error {
  constructor(
    readonly typeUrl: string,
    readonly issues: ResourceIssue[],
  ) {
    super(
      `invalid ${typeNameOf(typeUrl)}: ` +
        issues
          .slice(0, 10)
          .map((i) => `${i.path || "(root)"}: ${i.message}`)
          .join("; ") +
        (issues.length > 10 ? ` (and ${issues.length - 10} more)` : ""),
    );
    this.name = "EnvoyResourceError";
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

export function encodeStrict(typeUrl: string, json: unknown): Uint8Array {
  const desc = schemaOrThrow(typeUrl);
  const decoded = decode(desc, json);
  if ("issues" in decoded) throw new EnvoyResourceError(typeUrl, decoded.issues);
  return toBinary(desc, decoded.message);
}

export function validateEnvoyResource(typeUrl: string, json: unknown, options: ValidateOptions = {}): ResourceIssue[] {
  return checkEnvoyResource(typeUrl, json, options).issues;
}

/** Decodes strictly, validates, and encodes when there is no issue. */
export function checkEnvoyResource(
  typeUrl: string,
  json: unknown,
  options: ValidateOptions = {},
): { issues: ResourceIssue[]; bytes?: Uint8Array } {
  const registry = loadEnvoyRegistry();
  const desc = registry.getMessage(typeNameOf(typeUrl));
  if (!desc) return { issues: [{ path: "", message: `unknown resource type "${typeUrl}"` }] };
  const decoded = decode(desc, json);
  if ("issues" in decoded) return { issues: decoded.issues };
  const ctx: WalkContext = {
    registry,
    pgv: pgvExtensions(registry),
    issues: [],
    semantic: options.semantic ?? true,
    deprecated: options.deprecated ?? false,
    regexLimit: options.regexProgramSizeLimit ?? 100,
  };
  walkMessage(reflect(desc, decoded.message), "", ctx);
  const issues = dedupe(ctx.issues);
  return issues.length ? { issues } : { issues, bytes: toBinary(desc, decoded.message) };
}

export function anyOf(typeUrl: string, json: unknown, options: ValidateOptions = {}): EncodedAny {
  const { issues, bytes } = checkEnvoyResource(typeUrl, json, options);
  if (!bytes) throw new EnvoyResourceError(typeUrl, issues);
  return { type_url: typeUrlOf(typeUrl), value: bytes };
}

export function anyJson(typeUrl: string, json: JsonObject = {}): JsonObject {
  if ("@type" in json) throw new Error('anyJson: the payload already has an "@type"');
  return { "@type": typeUrlOf(typeUrl), ...json };
}

export function decodeEnvoyResource(typeUrl: string, bytes: Uint8Array): JsonValue {
  const desc = schemaOrThrow(typeUrl);
  return toJson(desc, fromBinary(desc, bytes), { registry: loadEnvoyRegistry(), useProtoFieldName: true });
}

function schemaOrThrow(typeUrl: string): DescMessage {
  const desc = loadEnvoyRegistry().getMessage(typeNameOf(typeUrl));
  if (!desc) throw new EnvoyResourceError(typeUrl, [{ path: "", message: `unknown resource type "${typeUrl}"` }]);
  return desc;
}

// ---------------------------------------------------------------------------------------------
// Strict decode, and locating the fields a decode error comes from

type Obj = Record<string, any>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);

/** Deep copy with object keys sorted (deterministic map order) and undefined members dropped. */
function canonicalJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonicalJson);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      if (value[key] !== undefined) out[key] = canonicalJson(value[key]);
    }
    return out;
  }
  return value;
}

function decode(desc: DescMessage, json: unknown): { message: Message } | { issues: ResourceIssue[] } {
  const registry = loadEnvoyRegistry();
  const canonical = canonicalJson(json);
  try {
    return { message: fromJson(desc, canonical as JsonValue, { registry, ignoreUnknownFields: false }) };
  } catch (error) {
    const issues: ResourceIssue[] = [];
    locate(desc, canonical, "", { registry, issues });
    if (!issues.length) issues.push({ path: "", message: errorText(error) });
    return { issues: dedupe(issues) };
  }
}

interface LocateContext {
  registry: Registry;
  issues: ResourceIssue[];
}

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);
const index = (path: string, i: number) => `${path}[${i}]`;
const entry = (path: string, key: string) => `${path}[${JSON.stringify(key)}]`;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return `${typeof value} ${String(value)}`;
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text
    .replace(/^cannot decode (?:field|message|enum|oneof) [\w.]+ from JSON:? ?/, "")
    .replace(/^list item #\d+: /, "")
    .replace(/^map entry [^:]*: /, "");
}

const fieldIndexes = new WeakMap<DescMessage, Map<string, DescField>>();
function fieldByJsonKey(desc: DescMessage, key: string): DescField | undefined {
  let byKey = fieldIndexes.get(desc);
  if (!byKey) {
    byKey = new Map();
    for (const f of desc.fields) byKey.set(f.name, f).set(f.jsonName, f);
    fieldIndexes.set(desc, byKey);
  }
  return byKey.get(key);
}

function locate(desc: DescMessage, json: unknown, path: string, ctx: LocateContext): void {
  const issue = (p: string, message: string) => ctx.issues.push({ path: p, message });
  if (desc.typeName === "google.protobuf.Any") return locateAny(json, path, ctx);
  if (hasCustomJsonRepresentation(desc)) {
    try {
      fromJson(desc, json as JsonValue, { registry: ctx.registry });
    } catch (error) {
      const hint =
        desc.typeName === "google.protobuf.Duration"
          ? ' (a duration is a string such as "5s" or "0.25s")'
          : desc.typeName === "google.protobuf.Timestamp"
            ? " (an RFC 3339 string)"
            : "";
      issue(path, `invalid ${desc.typeName} value ${describe(json)}: ${errorText(error)}${hint}`);
    }
    return;
  }
  if (!isPlainObject(json)) {
    issue(path, `expected an object (${desc.typeName}), got ${describe(json)}`);
    return;
  }
  const seen = new Set<DescField>();
  const oneofSeen = new Map<DescOneof, DescField>();
  for (const key of Object.keys(json)) {
    const value = json[key];
    const field = fieldByJsonKey(desc, key);
    if (!field) {
      if (key.startsWith("[") && key.endsWith("]")) {
        const ext = ctx.registry.getExtension(key.slice(1, -1));
        if (ext?.extendee.typeName === desc.typeName) continue;
      }
      issue(join(path, key), unknownFieldMessage(desc, key));
      continue;
    }
    const p = join(path, field.name);
    if (seen.has(field)) {
      issue(p, `set more than once (as "${field.name}" and as "${field.jsonName}")`);
      continue;
    }
    seen.add(field);
    if (field.oneof && !(field.fieldKind === "scalar" && value === null)) {
      const other = oneofSeen.get(field.oneof);
      if (other) {
        issue(p, `only one of ${field.oneof.fields.map((f) => f.name).join(", ")} may be set (${other.name} is set too)`);
        continue;
      }
      oneofSeen.set(field.oneof, field);
    }
    if (value === null) continue; // null resets a field
    switch (field.fieldKind) {
      case "message":
        locate(field.message, value, p, ctx);
        break;
      case "scalar":
      case "enum":
        locateLeaf(desc, field, value, p, ctx, (v) => v);
        break;
      case "list":
        if (!Array.isArray(value)) {
          issue(p, `expected a list, got ${describe(value)}`);
          break;
        }
        value.forEach((item, i) => {
          if (item === null) issue(index(p, i), "a list item must not be null");
          else if (field.listKind === "message") locate(field.message, item, index(p, i), ctx);
          else locateLeaf(desc, field, item, index(p, i), ctx, (v) => [v]);
        });
        break;
      case "map":
        if (!isPlainObject(value)) {
          issue(p, `expected an object (a map), got ${describe(value)}`);
          break;
        }
        for (const [k, v] of Object.entries(value)) {
          const keyProblem = mapKeyProblem(field.mapKey, k);
          if (keyProblem) issue(entry(p, k), keyProblem);
          else if (v === null) issue(entry(p, k), "a map value must not be null");
          else if (field.mapKind === "message") locate(field.message, v, entry(p, k), ctx);
          else locateLeaf(desc, field, v, entry(p, k), ctx, (x) => ({ [k]: x }));
        }
        break;
    }
  }
}

function locateAny(json: unknown, path: string, ctx: LocateContext): void {
  if (!isPlainObject(json)) {
    ctx.issues.push({ path, message: `expected an object with an "@type" (google.protobuf.Any), got ${describe(json)}` });
    return;
  }
  if (Object.keys(json).length === 0) return;
  const typeUrl = json["@type"];
  if (typeof typeUrl !== "string" || typeUrl === "" || typeNameOf(typeUrl) === "") {
    ctx.issues.push({ path: join(path, "@type"), message: 'missing or empty "@type"' });
    return;
  }
  const desc = ctx.registry.getMessage(typeNameOf(typeUrl));
  if (!desc) {
    const hint = nearestTypeName(ctx.registry, typeNameOf(typeUrl));
    ctx.issues.push({
      path: join(path, "@type"),
      message: `unknown type "${typeUrl}": not in the Envoy v3 descriptor set${hint ? ` (did you mean "${TYPE_URL_PREFIX}${hint}"?)` : ""}`,
    });
    return;
  }
  if (hasCustomJsonRepresentation(desc)) {
    locate(desc, json.value, join(path, "value"), ctx);
    return;
  }
  const payload: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) if (k !== "@type") payload[k] = v;
  locate(desc, payload, path, ctx);
}

/** Checks one scalar/enum value by asking the library to decode just that field. */
function locateLeaf(
  parent: DescMessage,
  field: DescField,
  value: unknown,
  path: string,
  ctx: LocateContext,
  wrap: (v: unknown) => unknown,
): void {
  const enumDesc: DescEnum | undefined = field.enum;
  if (enumDesc && typeof value === "string" && !enumDesc.values.some((v) => v.name === value)) {
    const names = enumDesc.values.map((v) => v.name);
    ctx.issues.push({
      path,
      message:
        `unknown enum value "${value}" for ${enumDesc.typeName}; expected one of ` +
        (names.length > 24 ? `${names.slice(0, 24).join(", ")}, …` : names.join(", ")),
    });
    return;
  }
  try {
    fromJson(parent, { [field.name]: wrap(value) } as JsonValue, { registry: ctx.registry });
  } catch (error) {
    // bytes (base64) may hold key material: say what is wrong without echoing it
    const message = field.scalar === BYTES ? "invalid bytes value: expected a base64 string" : `invalid value ${describe(value)}: ${errorText(error)}`;
    ctx.issues.push({ path, message });
  }
}

const BYTES = 12; // ScalarType.BYTES

function mapKeyProblem(keyType: unknown, key: string): string | undefined {
  // ScalarType numbers: 3 INT64, 4 UINT64, 5 INT32, 6 FIXED64, 7 FIXED32, 8 BOOL, 9 STRING,
  // 13 UINT32, 15 SFIXED32, 16 SFIXED64, 17 SINT32, 18 SINT64
  const t = keyType as number;
  if (t === 9) return undefined;
  if (t === 8) return key === "true" || key === "false" ? undefined : `invalid map key "${key}": expected true or false`;
  if (!/^-?\d+$/.test(key)) return `invalid map key "${key}": expected an integer`;
  const n = BigInt(key);
  const ranges: Record<number, [bigint, bigint]> = {
    5: [-(2n ** 31n), 2n ** 31n - 1n],
    15: [-(2n ** 31n), 2n ** 31n - 1n],
    17: [-(2n ** 31n), 2n ** 31n - 1n],
    13: [0n, 2n ** 32n - 1n],
    7: [0n, 2n ** 32n - 1n],
    3: [-(2n ** 63n), 2n ** 63n - 1n],
    16: [-(2n ** 63n), 2n ** 63n - 1n],
    18: [-(2n ** 63n), 2n ** 63n - 1n],
    4: [0n, 2n ** 64n - 1n],
    6: [0n, 2n ** 64n - 1n],
  };
  const range = ranges[t];
  return range && (n < range[0] || n > range[1]) ? `invalid map key "${key}": out of range` : undefined;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function unknownFieldMessage(desc: DescMessage, key: string): string {
  const norm = (s: string) => s.toLowerCase().replace(/_/g, "");
  let best: string | undefined;
  let bestDistance = 3;
  for (const f of desc.fields) {
    const d = norm(f.name) === norm(key) ? 0 : levenshtein(key, f.name);
    if (d < bestDistance) {
      bestDistance = d;
      best = f.name;
    }
  }
  return `unknown field "${key}" in ${desc.typeName}${best ? ` (did you mean "${best}"?)` : ""}`;
}

function nearestTypeName(registry: Registry, name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const type of registry) {
    if (type.kind !== "message") continue;
    const d = type.typeName === name ? 0 : levenshtein(name, type.typeName);
    if (d < bestDistance) {
      bestDistance = d;
      best = type.typeName;
    }
  }
  return best;
}

function dedupe(issues: ResourceIssue[]): ResourceIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// PGV rules

interface PgvExtensions {
  rules?: DescExtension;
  required?: DescExtension;
  disabled?: DescExtension;
}

interface WalkContext {
  registry: Registry;
  pgv: PgvExtensions;
  issues: ResourceIssue[];
  semantic: boolean;
  deprecated: boolean;
  regexLimit: number;
}

const pgvCache = new WeakMap<Registry, PgvExtensions>();
function pgvExtensions(registry: Registry): PgvExtensions {
  let pgv = pgvCache.get(registry);
  if (!pgv) {
    pgv = {
      rules: registry.getExtension("validate.rules"),
      required: registry.getExtension("validate.required"),
      disabled: registry.getExtension("validate.disabled"),
    };
    pgvCache.set(registry, pgv);
  }
  return pgv;
}

/** An option value read through a dynamic extension (its shape is only known at run time). */
function option(element: DescField | DescOneof | DescMessage, ext: DescExtension | undefined): any {
  if (!ext) return undefined;
  const el = element as any;
  return hasOption(el, ext as any) ? getOption(el, ext as any) : undefined;
}

const rulesCache = new WeakMap<DescField, Obj | null>();
function fieldRules(field: DescField, pgv: PgvExtensions): Obj | undefined {
  let rules = rulesCache.get(field);
  if (rules === undefined) {
    rules = (option(field, pgv.rules) as Obj | undefined) ?? null;
    rulesCache.set(field, rules);
  }
  return rules ?? undefined;
}

const oneofRequiredCache = new WeakMap<DescOneof, boolean>();
function oneofRequired(oneof: DescOneof, pgv: PgvExtensions): boolean {
  let required = oneofRequiredCache.get(oneof);
  if (required === undefined) {
    required = option(oneof, pgv.required) === true;
    oneofRequiredCache.set(oneof, required);
  }
  return required;
}

const messageFlagCache = new WeakMap<DescMessage, boolean>();
function validationDisabled(desc: DescMessage, pgv: PgvExtensions): boolean {
  let disabled = messageFlagCache.get(desc);
  if (disabled === undefined) {
    disabled = option(desc, pgv.disabled) === true;
    messageFlagCache.set(desc, disabled);
  }
  return disabled;
}

/** Own property = explicitly set proto2 optional field (defaults live on the prototype). */
const has = (o: Obj | undefined, key: string): boolean => o != null && Object.prototype.hasOwnProperty.call(o, key);

const IMPLICIT_PRESENCE = 2;
const REGEX_MATCHERS = new Set(["envoy.type.matcher.v3.RegexMatcher", "xds.type.matcher.v3.RegexMatcher"]);

function walkMessage(rm: ReflectMessage, path: string, ctx: WalkContext): void {
  const desc = rm.desc;
  if (desc.typeName === "google.protobuf.Any") return walkAny(rm.message as unknown as Obj, path, ctx);
  if (desc.typeName.startsWith("google.protobuf.")) return;
  const issue = (p: string, message: string) => ctx.issues.push({ path: p, message });

  const disabled = validationDisabled(desc, ctx.pgv);
  if (!disabled) {
    for (const oneof of desc.oneofs) {
      if (oneofRequired(oneof, ctx.pgv) && rm.oneofCase(oneof) === undefined) {
        issue(join(path, oneof.name), `one of ${oneof.fields.map((f) => f.name).join(", ")} is required`);
      }
    }
  }

  for (const field of desc.fields) {
    if (field.oneof && rm.oneofCase(field.oneof) !== field) continue;
    const p = join(path, field.name);
    const set = rm.isSet(field);
    if (ctx.deprecated && field.deprecated && set) issue(p, "deprecated field");
    const rules = disabled ? undefined : fieldRules(field, ctx.pgv);
    const typed = rules?.type as { case?: string; value?: Obj } | undefined;

    switch (field.fieldKind) {
      case "scalar":
      case "enum": {
        if (!typed?.case) break;
        if (field.presence !== IMPLICIT_PRESENCE && !field.oneof && !set) break; // proto3 optional
        checkScalar(typed, rm.get(field), p, ctx, field.enum);
        break;
      }
      case "message": {
        const required =
          rules?.message?.required === true ||
          (typed?.case === "duration" || typed?.case === "timestamp" || typed?.case === "any"
            ? typed.value?.required === true
            : false);
        if (!set) {
          if (required) issue(p, "is required");
          break;
        }
        const child = rm.get(field) as ReflectMessage;
        if (typed?.case) checkMessageValue(typed, child, p, ctx);
        if (rules?.message?.skip === true) break;
        walkMessage(child, p, ctx);
        break;
      }
      case "list": {
        const list = rm.get(field) as ReflectList;
        const r = typed?.case === "repeated" ? typed.value : undefined;
        if (r && !(r.ignoreEmpty === true && list.size === 0)) checkRepeated(r, list, field, p, ctx);
        const items = r?.items as Obj | undefined;
        for (const [i, item] of list.entries()) {
          if (field.listKind === "message") {
            if (items?.type?.case) checkMessageValue(items.type, item as ReflectMessage, index(p, i), ctx);
            if (items?.message?.skip !== true) walkMessage(item as ReflectMessage, index(p, i), ctx);
          }
        }
        break;
      }
      case "map": {
        const map = rm.get(field) as ReflectMap;
        const r = typed?.case === "map" ? typed.value : undefined;
        if (r && !(r.ignoreEmpty === true && map.size === 0)) {
          if (has(r, "minPairs") && map.size < Number(r.minPairs)) {
            issue(p, `must have at least ${r.minPairs} ${Number(r.minPairs) === 1 ? "entry" : "entries"}`);
          }
          if (has(r, "maxPairs") && map.size > Number(r.maxPairs)) issue(p, `must have at most ${r.maxPairs} entries`);
        }
        for (const [key, value] of map) {
          const ep = entry(p, String(key));
          if (r?.keys?.type?.case) checkScalar(r.keys.type, key, ep, ctx, undefined, "key ");
          if (field.mapKind === "message") {
            if (r?.values?.type?.case) checkMessageValue(r.values.type, value as ReflectMessage, ep, ctx);
            if (r?.values?.message?.skip !== true) walkMessage(value as ReflectMessage, ep, ctx);
          } else if (r?.values?.type?.case) {
            checkScalar(r.values.type, value, ep, ctx, field.mapKind === "enum" ? field.enum : undefined);
          }
        }
        break;
      }
    }
  }

  if (REGEX_MATCHERS.has(desc.typeName)) checkRegexMatcher(rm.message as unknown as Obj, path, ctx);
  if (ctx.semantic) SEMANTIC_CHECKS[desc.typeName]?.(rm.message as unknown as Obj, path, ctx);
}

function walkAny(any: Obj, path: string, ctx: WalkContext): void {
  const payload = unpackAny(any, ctx.registry);
  if (!payload) {
    ctx.issues.push({
      path,
      message: any.typeUrl ? `cannot resolve "${any.typeUrl}"` : 'an Any without "@type" (empty type URL)',
    });
    return;
  }
  walkMessage(reflect(payload.desc, payload.message), path, ctx);
}

function unpackAny(any: Obj | undefined, registry: Registry): { desc: DescMessage; message: Message } | undefined {
  if (!any?.typeUrl) return undefined;
  const desc = registry.getMessage(typeNameOf(any.typeUrl));
  if (!desc) return undefined;
  return { desc, message: fromBinary(desc, any.value ?? new Uint8Array()) };
}

type Scalar = number | bigint | string | boolean | Uint8Array;
const NUMERIC = new Set([
  "float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
  "fixed32", "fixed64", "sfixed32", "sfixed64",
]);

/** Rules on scalars, enums, and (through a wrapper message) on wrapper values. */
function checkScalar(
  typed: { case?: string; value?: Obj },
  value: unknown,
  path: string,
  ctx: WalkContext,
  enumDesc?: DescEnum,
  what = "",
): void {
  const r = typed.value ?? {};
  const issue = (message: string) => ctx.issues.push({ path, message: what + message });
  const kind = typed.case ?? "";
  if (NUMERIC.has(kind)) return checkNumeric(r, value as number | bigint, issue);
  switch (kind) {
    case "bool":
      if (has(r, "const") && value !== r.const) issue(`must be ${r.const}`);
      return;
    case "string":
      return checkString(r, String(value), issue);
    case "bytes":
      return checkBytes(r, value as Uint8Array, issue);
    case "enum": {
      const n = value as number;
      const name = enumDesc?.values.find((v) => v.number === n)?.name ?? String(n);
      if (has(r, "const") && n !== r.const) issue(`must be ${enumDesc?.values.find((v) => v.number === r.const)?.name ?? r.const}`);
      if (r.definedOnly === true && enumDesc && !enumDesc.values.some((v) => v.number === n)) {
        issue(`${n} is not a defined value of ${enumDesc.typeName}`);
      }
      if (r.in?.length && !r.in.includes(n)) issue(`must be one of ${r.in.map((x: number) => enumName(enumDesc, x)).join(", ")} (got ${name})`);
      if (r.notIn?.length && r.notIn.includes(n)) issue(`must not be ${name}`);
      return;
    }
  }
}

const enumName = (desc: DescEnum | undefined, n: number) => desc?.values.find((v) => v.number === n)?.name ?? String(n);

function checkNumeric(r: Obj, v: number | bigint, issue: (m: string) => void): void {
  if (r.ignoreEmpty === true && v == 0) return;
  if (has(r, "const") && v != r.const) issue(`must equal ${r.const} (got ${v})`);
  const gt = has(r, "gt") ? r.gt : undefined;
  const gte = has(r, "gte") ? r.gte : undefined;
  const lt = has(r, "lt") ? r.lt : undefined;
  const lte = has(r, "lte") ? r.lte : undefined;
  const lower = gt ?? gte;
  const upper = lt ?? lte;
  const lowerOk = gt !== undefined ? v > gt : gte !== undefined ? v >= gte : true;
  const upperOk = lt !== undefined ? v < lt : lte !== undefined ? v <= lte : true;
  const lowerText = gt !== undefined ? `greater than ${gt}` : `greater than or equal to ${gte}`;
  const upperText = lt !== undefined ? `less than ${lt}` : `less than or equal to ${lte}`;
  if (lower !== undefined && upper !== undefined) {
    if (upper > lower) {
      if (!(lowerOk && upperOk)) issue(`must be ${lowerText} and ${upperText} (got ${v})`);
    } else if (!(lowerOk || upperOk)) {
      issue(`must be ${lowerText} or ${upperText} (got ${v})`);
    }
  } else if (!lowerOk) issue(`must be ${lowerText} (got ${v})`);
  else if (!upperOk) issue(`must be ${upperText} (got ${v})`);
  if (r.in?.length && !r.in.some((x: unknown) => x == v)) issue(`must be one of ${r.in.join(", ")} (got ${v})`);
  if (r.notIn?.length && r.notIn.some((x: unknown) => x == v)) issue(`must not be ${v}`);
}

// PGV's well-known header regexes (validate.proto KnownRegex, strict and non-strict forms). PGV
// writes the name class as `+-.`, a range that also admits ",": kept as is.
const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+,\-.^_|~`]+$/;
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function isHostname(s: string): boolean {
  const host = s.endsWith(".") ? s.slice(0, -1) : s;
  if (!host || host.length > 253) return false;
  return host.split(".").every((label) => /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(label));
}

function isUri(s: string, absolute: boolean): boolean {
  try {
    if (absolute) return /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s) && Boolean(new URL(s));
    return Boolean(new URL(s, "http://relative.invalid/"));
  } catch {
    return false;
  }
}

const patternCache = new Map<string, RE2JS | null>();
function re2(pattern: string): RE2JS | null {
  if (!patternCache.has(pattern)) {
    let compiled: RE2JS | null = null;
    try {
      compiled = RE2JS.compile(pattern);
    } catch {
      compiled = null;
    }
    if (patternCache.size > 1000) patternCache.clear();
    patternCache.set(pattern, compiled);
  }
  return patternCache.get(pattern)!;
}

function checkString(r: Obj, s: string, issue: (m: string) => void): void {
  if (r.ignoreEmpty === true && s === "") return;
  const chars = [...s].length;
  const bytes = Buffer.byteLength(s, "utf8");
  const count = (n: unknown, unit: string) => `${n} ${unit}${Number(n) === 1 ? "" : "s"}`;
  if (has(r, "const") && s !== r.const) issue(`must equal ${JSON.stringify(r.const)}`);
  if (has(r, "len") && chars !== Number(r.len)) issue(`must be exactly ${count(r.len, "character")} long`);
  if (has(r, "minLen") && chars < Number(r.minLen)) {
    issue(s === "" ? `must not be empty (at least ${count(r.minLen, "character")})` : `must be at least ${count(r.minLen, "character")} long`);
  }
  if (has(r, "maxLen") && chars > Number(r.maxLen)) issue(`must be at most ${count(r.maxLen, "character")} long (got ${chars})`);
  if (has(r, "lenBytes") && bytes !== Number(r.lenBytes)) issue(`must be exactly ${count(r.lenBytes, "byte")} long`);
  if (has(r, "minBytes") && bytes < Number(r.minBytes)) issue(`must be at least ${count(r.minBytes, "byte")} long`);
  if (has(r, "maxBytes") && bytes > Number(r.maxBytes)) issue(`must be at most ${count(r.maxBytes, "byte")} long (got ${bytes})`);
  if (has(r, "pattern")) {
    const re = re2(r.pattern);
    if (re && !re.test(s)) issue(`must match the pattern ${JSON.stringify(r.pattern)}`);
  }
  if (has(r, "prefix") && !s.startsWith(r.prefix)) issue(`must start with ${JSON.stringify(r.prefix)}`);
  if (has(r, "suffix") && !s.endsWith(r.suffix)) issue(`must end with ${JSON.stringify(r.suffix)}`);
  if (has(r, "contains") && !s.includes(r.contains)) issue(`must contain ${JSON.stringify(r.contains)}`);
  if (has(r, "notContains") && s.includes(r.notContains)) issue(`must not contain ${JSON.stringify(r.notContains)}`);
  if (r.in?.length && !r.in.includes(s)) issue(`must be one of ${r.in.map((x: string) => JSON.stringify(x)).join(", ")}`);
  if (r.notIn?.length && r.notIn.includes(s)) issue(`must not be ${JSON.stringify(s)}`);
  const wk = r.wellKnown as { case?: string; value?: unknown } | undefined;
  switch (wk?.case) {
    case "wellKnownRegex": {
      const strict = r.strict !== false;
      if (wk.value === 1 && !(strict ? HEADER_NAME_STRICT : HEADER_LOOSE).test(s)) {
        issue(`must be a valid HTTP header name (got ${JSON.stringify(s)})`);
      }
      if (wk.value === 2 && !(strict ? HEADER_VALUE_STRICT : HEADER_LOOSE).test(s)) {
        issue("must be a valid HTTP header value (no control characters or line breaks)");
      }
      break;
    }
    case "hostname":
      if (wk.value === true && !isHostname(s)) issue(`must be a valid hostname (got ${JSON.stringify(s)})`);
      break;
    case "ip":
      if (wk.value === true && !isIP(s)) issue(`must be an IP address (got ${JSON.stringify(s)})`);
      break;
    case "ipv4":
      if (wk.value === true && !isIPv4(s)) issue(`must be an IPv4 address (got ${JSON.stringify(s)})`);
      break;
    case "ipv6":
      if (wk.value === true && !isIPv6(s)) issue(`must be an IPv6 address (got ${JSON.stringify(s)})`);
      break;
    case "address":
      if (wk.value === true && !isIP(s) && !isHostname(s)) issue(`must be a hostname or an IP address (got ${JSON.stringify(s)})`);
      break;
    case "uri":
      if (wk.value === true && !isUri(s, true)) issue(`must be an absolute URI (got ${JSON.stringify(s)})`);
      break;
    case "uriRef":
      if (wk.value === true && !isUri(s, false)) issue(`must be a URI reference (got ${JSON.stringify(s)})`);
      break;
    case "uuid":
      if (wk.value === true && !UUID.test(s)) issue(`must be a UUID (got ${JSON.stringify(s)})`);
      break;
    case "email": {
      const at = s.lastIndexOf("@");
      if (wk.value === true && !(at > 0 && at <= 64 && !/\s/.test(s) && isHostname(s.slice(at + 1)))) {
        issue(`must be an email address (got ${JSON.stringify(s)})`);
      }
      break;
    }
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
function bytesIndexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function checkBytes(r: Obj, b: Uint8Array, issue: (m: string) => void): void {
  if (r.ignoreEmpty === true && b.length === 0) return;
  if (has(r, "const") && !bytesEqual(b, r.const)) issue("must equal the constant value");
  if (has(r, "len") && b.length !== Number(r.len)) issue(`must be exactly ${r.len} bytes long`);
  if (has(r, "minLen") && b.length < Number(r.minLen)) issue(`must be at least ${r.minLen} bytes long`);
  if (has(r, "maxLen") && b.length > Number(r.maxLen)) issue(`must be at most ${r.maxLen} bytes long (got ${b.length})`);
  if (has(r, "pattern")) {
    const re = re2(r.pattern);
    if (re && !re.test(b)) issue(`must match the pattern ${JSON.stringify(r.pattern)}`);
  }
  if (has(r, "prefix") && !bytesEqual(b.subarray(0, r.prefix.length), r.prefix)) issue("must start with the given prefix");
  if (has(r, "suffix") && !bytesEqual(b.subarray(b.length - r.suffix.length), r.suffix)) issue("must end with the given suffix");
  if (has(r, "contains") && bytesIndexOf(b, r.contains) < 0) issue("must contain the given bytes");
  if (r.in?.length && !r.in.some((x: Uint8Array) => bytesEqual(x, b))) issue("must be one of the allowed values");
  if (r.notIn?.length && r.notIn.some((x: Uint8Array) => bytesEqual(x, b))) issue("must not be one of the refused values");
  const wk = r.wellKnown as { case?: string; value?: unknown } | undefined;
  if (wk?.value === true) {
    if (wk.case === "ip" && b.length !== 4 && b.length !== 16) issue("must be 4 or 16 bytes (an IP address)");
    if (wk.case === "ipv4" && b.length !== 4) issue("must be 4 bytes (an IPv4 address)");
    if (wk.case === "ipv6" && b.length !== 16) issue("must be 16 bytes (an IPv6 address)");
  }
}

const durationNanos = (d: Obj) => BigInt(d.seconds ?? 0) * 1_000_000_000n + BigInt(d.nanos ?? 0);
function formatDuration(nanos: bigint): string {
  const negative = nanos < 0n;
  const abs = negative ? -nanos : nanos;
  const seconds = abs / 1_000_000_000n;
  const frac = (abs % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${seconds}${frac ? `.${frac}` : ""}s`;
}

/** Rules on a set message-typed value: duration, timestamp, any, and scalar rules on wrappers. */
function checkMessageValue(typed: { case?: string; value?: Obj }, child: ReflectMessage, path: string, ctx: WalkContext): void {
  const r = typed.value ?? {};
  const issue = (message: string) => ctx.issues.push({ path, message });
  const msg = child.message as unknown as Obj;
  switch (typed.case) {
    case "duration": {
      if (child.desc.typeName !== "google.protobuf.Duration") return;
      checkOrdered(r, durationNanos(msg), (x) => durationNanos(x), formatDuration, issue);
      return;
    }
    case "timestamp": {
      if (child.desc.typeName !== "google.protobuf.Timestamp") return;
      const v = durationNanos(msg);
      checkOrdered(r, v, (x) => durationNanos(x), (n) => new Date(Number(n / 1_000_000n)).toISOString(), issue);
      const now = BigInt(Date.now()) * 1_000_000n;
      if (r.ltNow === true && !(v < now)) issue("must be in the past");
      if (r.gtNow === true && !(v > now)) issue("must be in the future");
      if (has(r, "within")) {
        const w = durationNanos(r.within);
        if (v < now - w || v > now + w) issue(`must be within ${formatDuration(w)} of now`);
      }
      return;
    }
    case "any": {
      if (child.desc.typeName !== "google.protobuf.Any") return;
      if (r.in?.length && !r.in.includes(msg.typeUrl)) issue(`type must be one of ${r.in.join(", ")} (got "${msg.typeUrl}")`);
      if (r.notIn?.length && r.notIn.includes(msg.typeUrl)) issue(`type "${msg.typeUrl}" is not allowed here`);
      return;
    }
    default:
      if (isWrapperDesc(child.desc)) checkScalar(typed, msg.value, path, ctx);
  }
}

function checkOrdered(
  r: Obj,
  v: bigint,
  toN: (x: Obj) => bigint,
  format: (n: bigint) => string,
  issue: (m: string) => void,
): void {
  const pick = (k: string) => (has(r, k) && r[k] ? toN(r[k]) : undefined);
  const [cst, lt, lte, gt, gte] = ["const", "lt", "lte", "gt", "gte"].map(pick);
  if (cst !== undefined && v !== cst) issue(`must equal ${format(cst)} (got ${format(v)})`);
  const lower = gt ?? gte;
  const upper = lt ?? lte;
  const lowerOk = gt !== undefined ? v > gt : gte !== undefined ? v >= gte : true;
  const upperOk = lt !== undefined ? v < lt : lte !== undefined ? v <= lte : true;
  const lowerText = gt !== undefined ? `greater than ${format(gt)}` : `at least ${format(gte ?? 0n)}`;
  const upperText = lt !== undefined ? `less than ${format(lt)}` : `at most ${format(lte ?? 0n)}`;
  if (lower !== undefined && upper !== undefined) {
    if (upper > lower ? !(lowerOk && upperOk) : !(lowerOk || upperOk)) {
      issue(`must be ${lowerText} ${upper > lower ? "and" : "or"} ${upperText} (got ${format(v)})`);
    }
  } else if (!lowerOk) issue(`must be ${lowerText} (got ${format(v)})`);
  else if (!upperOk) issue(`must be ${upperText} (got ${format(v)})`);
  if (r.in?.length && !r.in.some((x: Obj) => toN(x) === v)) issue(`must be one of ${r.in.map((x: Obj) => format(toN(x))).join(", ")}`);
  if (r.notIn?.length && r.notIn.some((x: Obj) => toN(x) === v)) issue(`must not be ${format(v)}`);
}

function checkRepeated(
  r: Obj,
  list: ReflectList,
  field: DescField & { fieldKind: "list" },
  path: string,
  ctx: WalkContext,
): void {
  const issue = (p: string, message: string) => ctx.issues.push({ path: p, message });
  if (has(r, "minItems") && list.size < Number(r.minItems)) {
    issue(path, list.size === 0 ? `must have at least ${r.minItems} item${Number(r.minItems) === 1 ? "" : "s"} (the list is empty)` : `must have at least ${r.minItems} items (got ${list.size})`);
  }
  if (has(r, "maxItems") && list.size > Number(r.maxItems)) issue(path, `must have at most ${r.maxItems} items (got ${list.size})`);
  if (r.unique === true && field.listKind !== "message") {
    const seen = new Set<string>();
    for (const [i, item] of list.entries()) {
      const key = item instanceof Uint8Array ? Buffer.from(item).toString("base64") : String(item);
      if (seen.has(key)) issue(index(path, i), `duplicate item ${JSON.stringify(key)} (items must be unique)`);
      seen.add(key);
    }
  }
  const items = r.items as Obj | undefined;
  if (items?.type?.case && field.listKind !== "message") {
    for (const [i, item] of list.entries()) {
      checkScalar(items.type, item as Scalar, index(path, i), ctx, field.listKind === "enum" ? field.enum : undefined);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RE2

const regexCache = new Map<string, { size: number } | { error: string }>();
function compileRegex(regex: string): { size: number } | { error: string } {
  let result = regexCache.get(regex);
  if (!result) {
    try {
      result = { size: RE2JS.compile(regex).programSize() };
    } catch (error) {
      result = { error: error instanceof Error ? error.message : String(error) };
    }
    if (regexCache.size > 5000) regexCache.clear();
    regexCache.set(regex, result);
  }
  return result;
}

function checkRegexMatcher(m: Obj, path: string, ctx: WalkContext): void {
  const regex = m.regex as string | undefined;
  if (!regex) return; // PGV min_len reports the empty string
  const p = join(path, "regex");
  const compiled = compileRegex(regex);
  if ("error" in compiled) {
    ctx.issues.push({ path: p, message: `not a valid RE2 regular expression (${compiled.error}); RE2 has no lookaround or backreferences` });
    return;
  }
  const perMatcherLimit = m.engineType?.case === "googleRe2" ? m.engineType.value?.maxProgramSize : undefined;
  const limit = typeof perMatcherLimit === "number" && perMatcherLimit > 0 ? perMatcherLimit : ctx.regexLimit;
  const size = compiled.size;
  if (size > limit) {
    ctx.issues.push({
      path: p,
      message: `regex program size ${size} exceeds Envoy's limit of ${limit}: simplify it (for example split a long alternation into several routes)`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// URI templates (envoy.path.match.uri_template / envoy.path.rewrite.uri_template), a port of the
// parser in Envoy's source/extensions/path/uri_template_lib (parsePathPatternSyntax,
// parseRewritePattern): the first lexical error stops, as there.

const URI_LITERAL = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/; // RFC 3986 pchar without "*" (Envoy's kLiteral)
const URI_REWRITE_LITERAL = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=/]+$/;
const URI_VARIABLE_NAME = /^[a-zA-Z][a-zA-Z0-9_]*$/;

type UriToken =
  | { kind: "literal"; text: string }
  | { kind: "glob"; text: "*" | "**" }
  | { kind: "variable"; name: string; match: UriToken[] };

/** Returns the problems and the variable names of a URI template (kind "match" or "rewrite"). */
export function uriTemplateProblems(template: string, kind: "match" | "rewrite"): { problems: string[]; variables: string[] } {
  return kind === "match" ? matchTemplateProblems(template) : rewriteTemplateProblems(template);
}

function matchTemplateProblems(template: string): { problems: string[]; variables: string[] } {
  const fail = (problem: string) => ({ problems: [problem], variables: [] as string[] });
  if (!template.startsWith("/")) return fail('must start with "/"');
  if (!/^\/[\x21-\x7e]*$/.test(template)) return fail("may only contain printable ASCII characters (no spaces)");

  // literal: "/" alone, or the text up to the next "/" cut before any "{"
  const literal = (rest: string): { token?: UriToken; rest: string; problem?: string } => {
    if (rest[0] === "/") return { token: { kind: "literal", text: "/" }, rest: rest.slice(1) };
    let text = rest.split("/", 1)[0]!;
    if (text.includes("{")) text = text.slice(0, text.indexOf("{"));
    if (!URI_LITERAL.test(text)) return { rest, problem: `invalid literal "${text}" (allowed: letters, digits and -._~%!$&'()+,;:@=)` };
    return { token: { kind: "literal", text }, rest: rest.slice(text.length) };
  };
  const glob = (rest: string) => (rest.startsWith("**") ? "**" : "*") as "*" | "**";

  const tokens: UriToken[] = [];
  let rest = template;
  while (rest) {
    if (rest[0] === "*") {
      const g = glob(rest);
      tokens.push({ kind: "glob", text: g });
      rest = rest.slice(g.length);
    } else if (rest[0] === "{") {
      const close = rest.indexOf("}");
      if (close < 0) return fail(`unmatched "{" in "${rest}"`);
      const body = rest.slice(1, close);
      rest = rest.slice(close + 1);
      const eq = body.indexOf("=");
      const name = eq >= 0 ? body.slice(0, eq) : body;
      if (!URI_VARIABLE_NAME.test(name)) {
        return fail(`invalid variable name "${name}": letters, digits and underscores, starting with a letter`);
      }
      const match: UriToken[] = [];
      if (eq >= 0) {
        let pattern = body.slice(eq + 1);
        if (!pattern) return fail(`empty variable match in {${body}}`);
        while (pattern) {
          const last = match[match.length - 1];
          if (pattern[0] === "*" && last?.kind !== "glob") {
            const g = glob(pattern);
            match.push({ kind: "glob", text: g });
            pattern = pattern.slice(g.length);
          } else if (pattern[0] !== "/" && last?.kind === "glob") {
            return fail(`invalid variable match {${body}}: a glob must be followed by "/"`);
          } else {
            const lit = literal(pattern);
            if (!lit.token) return fail(`${lit.problem} in {${body}}`);
            match.push(lit.token);
            pattern = lit.rest;
          }
        }
      }
      tokens.push({ kind: "variable", name, match });
    } else {
      const lit = literal(rest);
      if (!lit.token) return fail(lit.problem!);
      tokens.push(lit.token);
      rest = lit.rest;
    }
  }

  const problems: string[] = [];
  const variables: string[] = [];
  for (const t of tokens) {
    if (t.kind !== "variable") continue;
    if (t.name.length > 16) problems.push(`variable name "${t.name}" is longer than 16 characters`);
    if (variables.includes(t.name)) problems.push(`variable "${t.name}" appears twice`);
    else variables.push(t.name);
  }
  if (variables.length > 5) problems.push(`at most 5 variables (got ${variables.length})`);
  let afterTextGlob = false;
  let previousSlash = false;
  for (const t of tokens) {
    const globs = t.kind === "glob" ? [t] : t.kind === "variable" ? (t.match.length ? t.match.filter((m) => m.kind === "glob") : [undefined]) : [];
    for (const g of globs) {
      if (afterTextGlob) {
        problems.push('nothing but literals may follow "**" (no "*", "**" or variable after it)');
        afterTextGlob = false; // report once
        break;
      }
      if (g?.kind === "glob" && g.text === "**") afterTextGlob = true;
    }
    const slash = (t.kind === "literal" && t.text === "/") || (t.kind === "variable" && t.match[0]?.kind === "literal" && t.match[0].text === "/");
    if (previousSlash && slash) problems.push('must not contain an empty segment ("//")');
    previousSlash = slash;
  }
  return { problems: [...new Set(problems)], variables };
}

function rewriteTemplateProblems(template: string): { problems: string[]; variables: string[] } {
  const variables: string[] = [];
  const fail = (problem: string) => ({ problems: [problem], variables });
  if (!template.startsWith("/")) return fail('must start with "/"');
  if (template.includes("//")) return fail('must not contain an empty segment ("//")');
  let rest = template;
  while (rest) {
    const open = rest.indexOf("{");
    const text = open < 0 ? rest : rest.slice(0, open);
    if (text && !URI_REWRITE_LITERAL.test(text)) return fail(`invalid literal "${text}" (allowed: letters, digits, "/" and -._~%!$&'()+,;:@=)`);
    if (open < 0) break;
    const close = rest.indexOf("}", open);
    if (close < 0) return fail(`unmatched "{" in "${rest.slice(open)}"`);
    const name = rest.slice(open + 1, close);
    if (name.includes("=")) return fail(`a rewrite variable is a plain {${name.slice(0, name.indexOf("="))}} (no "=" pattern)`);
    if (!URI_VARIABLE_NAME.test(name)) return fail(`invalid variable name "${name}"`);
    variables.push(name);
    rest = rest.slice(close + 1);
  }
  return { problems: [], variables };
}

// ---------------------------------------------------------------------------------------------
// Envoy rules beyond PGV

type SemanticCheck = (m: Obj, path: string, ctx: WalkContext) => void;

const T = {
  cluster: "envoy.config.cluster.v3.Cluster",
  cla: "envoy.config.endpoint.v3.ClusterLoadAssignment",
  uriMatch: "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
  uriRewrite: "envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig",
  router: "envoy.extensions.filters.http.router.v3.Router",
} as const;

function enumNumber(ctx: WalkContext, enumType: string, name: string): number | undefined {
  return ctx.registry.getEnum(enumType)?.values.find((v) => v.name === name)?.number;
}

/** Socket addresses of a ClusterLoadAssignment that are not IP literals (and use no resolver). */
function nonIpEndpoints(cla: Obj, path: string): { path: string; address: string }[] {
  const out: { path: string; address: string }[] = [];
  (cla.endpoints ?? []).forEach((locality: Obj, i: number) => {
    (locality.lbEndpoints ?? []).forEach((lb: Obj, j: number) => {
      const id = lb.hostIdentifier;
      if (id?.case !== "endpoint") return;
      const addr = id.value?.address?.address;
      if (addr?.case !== "socketAddress") return;
      const sa = addr.value;
      if (sa.resolverName) return;
      if (!isIP(sa.address ?? "")) {
        out.push({ path: `${path}endpoints[${i}].lb_endpoints[${j}].endpoint.address.socket_address.address`, address: sa.address });
      }
    });
  });
  return out;
}

function resourceName(any: Obj, registry: Registry): string | undefined {
  const payload = unpackAny(any, registry);
  if (!payload) return undefined;
  const m = payload.message as unknown as Obj;
  if (payload.desc.typeName === T.cla) return m.clusterName;
  return typeof m.name === "string" ? m.name : undefined;
}

const SEMANTIC_CHECKS: Record<string, SemanticCheck> = {
  "envoy.config.route.v3.RouteConfiguration": (m, path, ctx) => {
    const names = new Map<string, number>();
    const domains = new Map<string, number>();
    let bareWildcard = -1;
    (m.virtualHosts ?? []).forEach((vh: Obj, i: number) => {
      const vp = `${join(path, "virtual_hosts")}[${i}]`;
      if (names.has(vh.name)) {
        ctx.issues.push({ path: `${vp}.name`, message: `duplicate virtual host name "${vh.name}" (also virtual_hosts[${names.get(vh.name)}])` });
      } else names.set(vh.name, i);
      (vh.domains ?? []).forEach((domain: string, k: number) => {
        const dp = `${vp}.domains[${k}]`;
        const key = domain.toLowerCase();
        if (domain === "*") {
          if (bareWildcard >= 0 && bareWildcard !== i) {
            ctx.issues.push({ path: dp, message: `only one virtual host may use the wildcard domain "*" (also virtual_hosts[${bareWildcard}])` });
          }
          bareWildcard = i;
        } else if (domain.includes("*")) {
          const ok = (domain.startsWith("*") && !domain.slice(1).includes("*")) || (domain.endsWith("*") && !domain.slice(0, -1).includes("*"));
          if (!ok) ctx.issues.push({ path: dp, message: `"*" may only be the first or the last character of a domain (got "${domain}")` });
        }
        if (domains.has(key)) {
          const j = domains.get(key)!;
          ctx.issues.push({ path: dp, message: `duplicate domain "${domain}"${j === i ? "" : ` (also in virtual_hosts[${j}])`}: a domain may appear in only one virtual host` });
        } else domains.set(key, i);
      });
    });
  },

  "envoy.config.route.v3.RouteAction": (m, path, ctx) => {
    const spec = m.clusterSpecifier;
    if (spec?.case === "weightedClusters") {
      const wp = join(path, "weighted_clusters.clusters");
      let sum = 0n;
      (spec.value.clusters ?? []).forEach((c: Obj, i: number) => {
        sum += BigInt(c.weight ?? 0);
        if (Boolean(c.name) === Boolean(c.clusterHeader)) {
          ctx.issues.push({ path: index(wp, i), message: c.name ? "only one of name and cluster_header may be set" : "name or cluster_header is required" });
        }
      });
      if ((spec.value.clusters ?? []).length && sum === 0n) {
        ctx.issues.push({ path: wp, message: "the sum of the weights must be greater than 0" });
      }
      if (sum > 4294967295n) ctx.issues.push({ path: wp, message: `the sum of the weights (${sum}) must not exceed 4294967295` });
    }
    const rewrites = [m.prefixRewrite ? "prefix_rewrite" : "", m.regexRewrite ? "regex_rewrite" : "", m.pathRewritePolicy ? "path_rewrite_policy" : ""].filter(Boolean);
    if (rewrites.length > 1) {
      ctx.issues.push({ path: join(path, rewrites[1]!), message: `only one of prefix_rewrite, regex_rewrite and path_rewrite_policy may be set (got ${rewrites.join(" and ")})` });
    }
  },

  "envoy.config.route.v3.Route": (m, path, ctx) => {
    if (m.action?.case !== "route") return;
    const rewrite = m.action.value?.pathRewritePolicy?.typedConfig;
    const rewriteConfig = unpackAny(rewrite, ctx.registry);
    if (rewriteConfig?.desc.typeName !== T.uriRewrite) return;
    const rp = join(path, "route.path_rewrite_policy");
    const spec = m.match?.pathSpecifier;
    const matchConfig = spec?.case === "pathMatchPolicy" ? unpackAny(spec.value?.typedConfig, ctx.registry) : undefined;
    if (matchConfig?.desc.typeName !== T.uriMatch) {
      ctx.issues.push({ path: rp, message: "a uri_template rewrite needs a uri_template path_match_policy in the route's match" });
      return;
    }
    const parsedMatch = uriTemplateProblems((matchConfig.message as unknown as Obj).pathTemplate ?? "", "match");
    if (parsedMatch.problems.length) return; // reported on the template itself
    const matchVars = parsedMatch.variables;
    const rewriteVars = uriTemplateProblems((rewriteConfig.message as unknown as Obj).pathTemplateRewrite ?? "", "rewrite").variables;
    for (const v of rewriteVars) {
      if (!matchVars.includes(v)) {
        ctx.issues.push({ path: join(rp, "typed_config.path_template_rewrite"), message: `variable "${v}" is not captured by the match template (has ${matchVars.join(", ") || "none"})` });
      }
    }
  },

  [T.uriMatch]: (m, path, ctx) => {
    if (!m.pathTemplate) return;
    for (const problem of uriTemplateProblems(m.pathTemplate, "match").problems) {
      ctx.issues.push({ path: join(path, "path_template"), message: `URI template ${JSON.stringify(m.pathTemplate)}: ${problem}` });
    }
  },

  [T.uriRewrite]: (m, path, ctx) => {
    if (!m.pathTemplateRewrite) return;
    for (const problem of uriTemplateProblems(m.pathTemplateRewrite, "rewrite").problems) {
      ctx.issues.push({ path: join(path, "path_template_rewrite"), message: `URI template rewrite ${JSON.stringify(m.pathTemplateRewrite)}: ${problem}` });
    }
  },

  [T.cluster]: (m, path, ctx) => {
    const discovery = m.clusterDiscoveryType;
    if (discovery?.case === "clusterType") return;
    const type = discovery?.case === "type" ? (discovery.value as number) : 0;
    const DT = "envoy.config.cluster.v3.Cluster.DiscoveryType";
    const [STATIC, STRICT_DNS, LOGICAL_DNS, EDS] = ["STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS"].map((n) => enumNumber(ctx, DT, n));
    const typeName = ctx.registry.getEnum(DT)?.values.find((v) => v.number === type)?.name ?? String(type);
    const lp = join(path, "load_assignment");
    if (type === STATIC || type === STRICT_DNS || type === LOGICAL_DNS) {
      const localities: Obj[] = m.loadAssignment?.endpoints ?? [];
      const count = localities.reduce((n, l) => n + (l.lbEndpoints?.length ?? 0), 0);
      if (count === 0) {
        ctx.issues.push({ path: lp, message: `a ${typeName} cluster needs load_assignment with at least one endpoint` });
      } else if (type === LOGICAL_DNS && (localities.length !== 1 || count !== 1)) {
        ctx.issues.push({ path: lp, message: "a LOGICAL_DNS cluster must have exactly one locality with exactly one endpoint" });
      }
      if (type === STATIC && m.loadAssignment) {
        for (const bad of nonIpEndpoints(m.loadAssignment, `${lp}.`)) {
          ctx.issues.push({ path: bad.path, message: `a STATIC cluster's endpoint must be an IP address (got "${bad.address}"; use STRICT_DNS or LOGICAL_DNS for hostnames)` });
        }
      }
    }
    if (type === EDS && !m.edsClusterConfig?.edsConfig) {
      ctx.issues.push({ path: join(path, "eds_cluster_config.eds_config"), message: "an EDS cluster needs eds_cluster_config.eds_config (with ADS: {ads: {}, resource_api_version: V3})" });
    }
  },

  [T.cla]: (m, path, ctx) => {
    if (path.endsWith("load_assignment")) return; // inline in a cluster: checked by the cluster rule
    for (const bad of nonIpEndpoints(m, path ? `${path}.` : "")) {
      ctx.issues.push({ path: bad.path, message: `an EDS endpoint must be an IP address (got "${bad.address}")` });
    }
  },

  "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": (m, path, ctx) => {
    const filters: Obj[] = m.httpFilters ?? [];
    const fp = join(path, "http_filters");
    const typeOf = (f: Obj) => (f.configType?.case === "typedConfig" && f.configType.value?.typeUrl ? typeNameOf(f.configType.value.typeUrl) : undefined);
    filters.forEach((f, i) => {
      const t = typeOf(f);
      if (t === T.router && i !== filters.length - 1) {
        ctx.issues.push({ path: index(fp, i), message: `the router filter must be the last HTTP filter (it is #${i + 1} of ${filters.length})` });
      }
      if (i === filters.length - 1 && t !== undefined && t !== T.router) {
        ctx.issues.push({ path: index(fp, i), message: `the last HTTP filter must be the router (envoy.filters.http.router), not ${t}` });
      }
    });
  },

  "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz": (m, path, ctx) => {
    const V3 = enumNumber(ctx, "envoy.config.core.v3.ApiVersion", "V3");
    if (m.transportApiVersion !== V3) {
      ctx.issues.push({ path: join(path, "transport_api_version"), message: "must be V3 (Envoy refuses AUTO and V2)" });
    }
  },

  "envoy.config.core.v3.ApiConfigSource": (m, path, ctx) => {
    const V3 = enumNumber(ctx, "envoy.config.core.v3.ApiVersion", "V3");
    if (m.transportApiVersion !== V3) {
      ctx.issues.push({ path: join(path, "transport_api_version"), message: "must be V3 (Envoy refuses AUTO and V2)" });
    }
  },

  "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit": (m, path, ctx) => checkFillInterval(m, path, ctx),
  "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit": (m, path, ctx) => checkFillInterval(m, path, ctx),

  "envoy.service.discovery.v3.DiscoveryResponse": (m, path, ctx) => {
    const names = new Map<string, number>();
    (m.resources ?? []).forEach((r: Obj, i: number) => {
      const rp = index(join(path, "resources"), i);
      if (r.typeUrl !== m.typeUrl) {
        ctx.issues.push({ path: rp, message: `resource type "${r.typeUrl}" differs from the response's type_url "${m.typeUrl}"` });
      }
      const name = resourceName(r, ctx.registry);
      if (name !== undefined) {
        if (names.has(name)) ctx.issues.push({ path: rp, message: `resource "${name}" appears twice (also resources[${names.get(name)}])` });
        else names.set(name, i);
      }
    });
  },

  "envoy.service.discovery.v3.DeltaDiscoveryResponse": (m, path, ctx) => {
    const names = new Map<string, number>();
    const removed = new Set<string>(m.removedResources ?? []);
    (m.resources ?? []).forEach((r: Obj, i: number) => {
      const rp = index(join(path, "resources"), i);
      if (r.resource?.typeUrl && r.resource.typeUrl !== m.typeUrl) {
        ctx.issues.push({ path: join(rp, "resource"), message: `resource type "${r.resource.typeUrl}" differs from the response's type_url "${m.typeUrl}"` });
      }
      if (names.has(r.name)) ctx.issues.push({ path: join(rp, "name"), message: `resource "${r.name}" appears twice (also resources[${names.get(r.name)}])` });
      else names.set(r.name, i);
      if (removed.has(r.name)) ctx.issues.push({ path: join(rp, "name"), message: `resource "${r.name}" is both updated and removed` });
    });
  },
};

function checkFillInterval(m: Obj, path: string, ctx: WalkContext): void {
  const interval = m.tokenBucket?.fillInterval;
  if (interval && durationNanos(interval) < 50_000_000n) {
    ctx.issues.push({ path: join(path, "token_bucket.fill_interval"), message: `must be at least 50ms (got ${formatDuration(durationNanos(interval))})` });
  }
}

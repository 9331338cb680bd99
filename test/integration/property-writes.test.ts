import { expect } from "chai";
import fc from "fast-check";
import YAML from "yaml";
import { currentRevision } from "../../packages/control-plane/src/store/changes";
import { loadGatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { translatorOptions } from "../../packages/control-plane/src/controlPlane";
import { translate } from "../../packages/control-plane/src/translator";
import { buildSnapshot, XDS_TYPE_URLS } from "../../packages/control-plane/src/xds/snapshot";
import { call, type Reply, type UserName } from "../support/client";
import { harness } from "../support/hooks";
import { waitFor } from "../support/wait";
import { connectDelta, type DeltaClient } from "../support/xdsClient";

/*
 * Property: whatever a client writes, valid or hostile, in any field (NUL, lone surrogates, CR/LF,
 * huge, negative and fractional numbers, huge and tiny durations, wrong types, very long strings,
 * unicode, empty strings, deep objects, unknown fields), every write answers
 *  - a 4xx in the error shape that changed nothing (the store revision did not move), or
 *  - a 2xx after which the gateway pipeline published the write's revision without a failed
 *    rebuild, the APIs the write touched translate to a valid snapshot, and (checked every
 *    CANARY_EVERY writes) a change to another API still reaches an ADS client.
 * Never a 5xx.
 *
 * The run is reproducible: the seed is printed; PROPERTY_SEED=<seed> replays it, PROPERTY_RUNS
 * sets the number of writes. The suite (and CI) uses a fixed seed so that a landing never depends
 * on chance; PROPERTY_SEED=random explores new cases (do that when changing validation).
 */
const SEED =
  process.env.PROPERTY_SEED === "random" ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.PROPERTY_SEED ?? 1_254_029_803);
const RUNS = Number(process.env.PROPERTY_RUNS ?? 2000);
const CANARY_EVERY = 100;
const ROUTE_CONFIG = "apigw-routes";

type Json = any;

interface Write {
  method: "POST" | "PUT" | "DELETE";
  /** Send the body as YAML instead of JSON. */
  yaml?: boolean;
  /** A path template: `{api}`, `{plugin}`, `{plan}`, `{sub}`, `{app}` are filled from what exists at run time. */
  path: string;
  body?: Json;
  as?: UserName;
}

// ---------------------------------------------------------------------------------------------
// Values

function nested(depth: number): Json {
  let value: Json = "leaf";
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { deep: value };
  return value;
}

const hostileString = fc.oneof(
  fc.constantFrom(
    "",
    " ",
    "\u0000",
    "a\u0000b",
    "a\udc00b",
    "\ud800",
    "line\r\nbreak",
    "\n",
    "tab\there",
    "\u0001\u007f",
    "%00",
    "../..",
    "{id}",
    "*",
    "$version",
    "ünïcödé",
    "😀",
    "\u202e",
    "x".repeat(300),
    "€".repeat(5000),
    "y".repeat(70_000),
  ),
  fc.string({ unit: "binary", maxLength: 24 }),
  fc.string({ unit: "grapheme", maxLength: 24 }),
);
const hostileNumber = fc.oneof(
  fc.constantFrom(0, -1, -0, 1.5, 0.0000001, 100, 101, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53, 2 ** 53 + 2, 1e21, 1e308, -1e308),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const DURATIONS = ["1ms", "1.5ms", "500ms", "5s", "1m30s", "87600h", "315576000000s"];
const BAD_DURATIONS = ["999999999h", "0.0000001ms", "0.5ms", "315576000001s", "0s", "-5s", "5", "5 s", "999999999.999999999h", "1.0000000001s"];
const hostileDuration = fc.constantFrom(...DURATIONS, ...BAD_DURATIONS);
const wrongType = fc.constantFrom<Json>(null, true, false, 0, [], {}, "str", [null], { a: 1 });
const hostile: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 2, arbitrary: hostileNumber },
  { weight: 1, arbitrary: hostileDuration },
  { weight: 2, arbitrary: wrongType },
  { weight: 1, arbitrary: fc.constant(nested(40)) },
);

/** Valid-looking values with a share of hostile ones. */
const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 15, arbitrary: valid }, { weight: 1, arbitrary: hostile });

const headerName = mostly(fc.constantFrom("x-trace", "X-Env", "x-a_b", "accept", "x-'quoted'", "x|pipe", "x".repeat(256)));
const headerValue = mostly(fc.oneof(fc.constantFrom("v1", "a b", "tab\tok", "x".repeat(8192)), fc.string({ unit: "grapheme", maxLength: 30 })));
const duration = mostly(fc.constantFrom(...DURATIONS));
const smallInt = mostly(fc.integer({ min: 1, max: 100 }));
const url = mostly(
  fc.constantFrom(
    "http://a.internal:8080",
    "https://b.example.com/base",
    "http://10.0.0.5:9000/x",
    "http://[::1]:8080",
    "https://c.example.com:65535",
    "http://f.internal/ü",
    "http://h.internal/%00",
    "http://UPPER.Internal:8080/A",
  ),
);
const opPath = mostly(fc.constantFrom("/items", "/items/{id}", "/files/*", "/a/{x}/b/{y}", "/", "/a:b;c", "/items/", "/~user/$x", "/a-b.c"));

const setHeaders = fc.record({ request: fc.record({ headers: fc.array(fc.record({ name: headerName, value: headerValue }), { minLength: 1, maxLength: 3 }) }) });
const removeHeaders = fc.record({ response: fc.record({ headers: fc.array(headerName, { minLength: 1, maxLength: 3 }) }) });
const cors = fc.record(
  {
    allowOrigins: fc.array(mostly(fc.constantFrom("*", "https://app.example.com", "https://*.example.com", "http://x.internal:3000")), { minLength: 1, maxLength: 2 }),
    allowHeaders: fc.array(headerName, { maxLength: 2 }),
    maxAge: mostly(fc.integer({ min: 0, max: 100_000 })),
  },
  { requiredKeys: ["allowOrigins"] },
);
const circuitBreaker = fc.record(
  { consecutiveErrors: smallInt, ejectionTime: duration, maxConnections: mostly(fc.integer({ min: 1, max: 2_000_000 })), maxEjectionPercent: smallInt },
  { requiredKeys: ["consecutiveErrors", "ejectionTime"] },
);
const apiKeyAuth = fc.record({ key: mostly(fc.constantFrom("X-API-Key", "api_key")), in: mostly(fc.constantFrom("header", "query")) }, { requiredKeys: [] });
const ipControl = fc.record({ allow: fc.array(mostly(fc.constantFrom("10.0.0.0/8", "::1", "192.0.2.1", "300.1.1.1")), { minLength: 1, maxLength: 2 }) });
const trafficControl = fc.record({ unit: mostly(fc.constantFrom("SECOND", "MINUTE")), apiLimit: mostly(fc.integer({ min: 1, max: 2_000_000_000 })) });

const policy = fc.oneof(
  setHeaders.map((params) => ({ name: "set-headers", params })),
  removeHeaders.map((params) => ({ name: "removeHeaders", params })),
  cors.map((params) => ({ name: "cors", params })),
  circuitBreaker.map((params) => ({ name: "circuit-breaker", params })),
  apiKeyAuth.map((params) => ({ name: "api-key-auth", params })),
  ipControl.map((params) => ({ name: "ip-control", params })),
  trafficControl.map((params) => ({ name: "traffic-control", params })),
);
const pluginOf = fc.oneof(
  setHeaders.map((params) => ({ type: "setHeaders", params })),
  removeHeaders.map((params) => ({ type: "removeHeaders", params })),
  cors.map((params) => ({ type: "cors", params })),
  circuitBreaker.map((params) => ({ type: "circuitBreaker", params })),
  ipControl.map((params) => ({ type: "ipControl", params })),
  trafficControl.map((params) => ({ type: "trafficControl", params })),
);

const API_POOL = 6;
const apiIndex = fc.integer({ min: 0, max: API_POOL - 1 });

const upstreamRef = fc.oneof(url.map((u) => ({ url: u })), fc.constant({ ref: "defs" }));
const restApiBody = fc
  .record(
    {
      i: apiIndex,
      main: upstreamRef,
      sandbox: fc.option(upstreamRef, { nil: undefined }),
      hostRewrite: fc.option(fc.constantFrom("auto", "manual"), { nil: undefined }),
      definition: fc.record({
        basePath: fc.option(mostly(fc.constantFrom("/api", "/v2/", "/", "/a;b=c")), { nil: undefined }),
        connect: fc.option(duration, { nil: undefined }),
        upstreams: fc.array(fc.record({ url, weight: fc.option(mostly(fc.integer({ min: 0, max: 100 })), { nil: undefined }) }), { minLength: 1, maxLength: 3 }),
      }),
      vhost: fc.option(mostly(fc.constantFrom("*", "api.example.com", "*.example.com", "API.example.com:8443", "sandbox-*")), { nil: undefined }),
      policies: fc.array(policy, { maxLength: 2 }),
      operations: fc.array(
        fc.record(
          {
            method: mostly(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")),
            path: opPath,
            upstream: fc.option(fc.record({ main: upstreamRef }), { nil: undefined }),
            policies: fc.option(fc.array(policy.filter((p) => p.name !== "cors" && p.name !== "circuit-breaker" && p.name !== "api-key-auth"), { maxLength: 1 }), { nil: undefined }),
          },
          { requiredKeys: ["method", "path"] },
        ),
        { minLength: 1, maxLength: 4 },
      ),
      labels: fc.option(fc.dictionary(mostly(fc.constantFrom("team", "tier")), mostly(fc.constantFrom("a", "b"))), { nil: undefined }),
      executionCondition: fc.option(mostly(fc.constantFrom("request.method == 'GET'")), { nil: undefined }),
    },
    { requiredKeys: ["i", "main", "definition", "policies", "operations"] },
  )
  .map((g) => {
    const spec: Json = {
      displayName: `Api ${g.i}`,
      version: "v1",
      context: `/ctx${g.i}`,
      upstream: { main: { ...g.main, ...(g.hostRewrite ? { hostRewrite: g.hostRewrite } : {}) }, ...(g.sandbox ? { sandbox: g.sandbox } : {}) },
      upstreamDefinitions: [
        {
          name: "defs",
          ...(g.definition.basePath !== undefined ? { basePath: g.definition.basePath } : {}),
          ...(g.definition.connect !== undefined ? { timeout: { connect: g.definition.connect } } : {}),
          upstreams: g.definition.upstreams.map((u) => ({ url: u.url, ...(u.weight !== undefined ? { weight: u.weight } : {}) })),
        },
      ],
      ...(g.vhost !== undefined ? { vhosts: { main: g.vhost } } : {}),
      policies: g.policies.map((p, j) => (j === 0 && g.executionCondition !== undefined ? { ...p, executionCondition: g.executionCondition } : p)),
      operations: g.operations,
    };
    return { handle: `api-${g.i}`, body: { apiVersion: "gateway.api-platform.wso2.com/v1alpha1", kind: "RestApi", metadata: { name: `api-${g.i}`, ...(g.labels ? { labels: g.labels } : {}) }, spec } };
  });

/** Replaces up to 3 values anywhere in `doc` by hostile ones, or adds a field with a hostile key. */
function mutate(doc: Json, edits: [number, Json, boolean][]): Json {
  if (edits.length === 0) return doc;
  const copy = structuredClone(doc);
  for (const [pick, shared, addKey] of edits) {
    const value = structuredClone(shared); // generated constants are shared between runs
    const slots: { parent: Json; key: string | number }[] = [];
    const walk = (node: Json) => {
      if (node === null || typeof node !== "object") return;
      for (const key of Object.keys(node)) {
        slots.push({ parent: node, key: Array.isArray(node) ? Number(key) : key });
        walk(node[key]);
      }
    };
    walk(copy);
    if (slots.length === 0) continue;
    const slot = slots[pick % slots.length]!;
    if (addKey) {
      const target = slot.parent[slot.key];
      const holder = target && typeof target === "object" && !Array.isArray(target) ? target : slot.parent;
      if (!Array.isArray(holder)) holder[typeof value === "string" ? value.slice(0, 40) : "unknownField"] = value;
    } else {
      slot.parent[slot.key] = value;
    }
  }
  return copy;
}

const edits = fc.oneof(
  { weight: 3, arbitrary: fc.constant<[number, Json, boolean][]>([]) },
  { weight: 2, arbitrary: fc.array(fc.tuple(fc.nat(), hostile, fc.boolean()), { minLength: 1, maxLength: 3 }) },
);
const hostileSegment = fc.oneof(hostileString, fc.constantFrom("a%00b", "%ED%B0%80", "%0D%0A", "..", "%2F"));

/** Percent-encodes a path segment; a lone surrogate (which encodeURIComponent refuses) becomes invalid UTF-8. */
function segment(value: string): string {
  if (/^%[0-9A-F]{2}/.test(value) || value === "..") return value;
  try {
    return encodeURIComponent(value.slice(0, 200));
  } catch {
    return "%ED%B0%80";
  }
}

const anyWrite: fc.Arbitrary<Write> = fc.oneof(
  // RestApi create / update / delete
  { weight: 10, arbitrary: fc.tuple(restApiBody, edits).map(([api, e]) => ({ method: "PUT" as const, path: `{upsert:${api.handle}}`, body: mutate(api.body, e) })) },
  { weight: 1, arbitrary: apiIndex.map((i) => ({ method: "DELETE" as const, path: `/rest-apis/api-${i}` })) },
  // Many setHeaders policies (told apart by executionConditions) add up on every route.
  {
    weight: 1,
    arbitrary: fc.tuple(restApiBody, fc.integer({ min: 8, max: 20 }), fc.integer({ min: 32, max: 64 })).map(([api, n, m]) => {
      const body = structuredClone(api.body);
      body.spec.policies = Array.from({ length: n }, (_, j) => ({
        name: "set-headers",
        executionCondition: `c${j}`,
        params: { request: { headers: Array.from({ length: m }, (_, i) => ({ name: `x-${j}-${i}`, value: "v" })) } },
      }));
      return { method: "PUT" as const, path: `{upsert:${api.handle}}`, body };
    }),
  },
  // Plug-ins: create, update, bind, unbind
  {
    weight: 4,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 5 }), pluginOf, edits).map(([i, p, e]) => ({ method: "POST" as const, path: "/plugins", body: mutate({ name: `plug-${i}`, ...p }, e) })),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 5 }), pluginOf, edits).map(([i, p, e]) => ({ method: "PUT" as const, path: `/plugins/{plugin:${i}}`, body: mutate({ params: p.params }, e) })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 5 }), fc.array(apiIndex, { minLength: 1, maxLength: 2 }), fc.constantFrom("RELEASE", "TEST"), edits)
      .map(([i, apis, stage, e]) => ({ method: "POST" as const, path: `/plugins/{plugin:${i}}/bindings`, body: mutate({ apiIds: [...new Set(apis)].map((a) => `api-${a}`), stage }, e) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 5 }), apiIndex, fc.constantFrom("RELEASE", "TEST")).map(([i, a, stage]) => ({ method: "DELETE" as const, path: `/plugins/{plugin:${i}}/bindings/${stage}/api-${a}` })),
  },
  // Plans
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 3 }), mostly(fc.integer({ min: 1, max: 2 ** 31 })), mostly(fc.constantFrom("Min", "Hour", "Day", "Month")), mostly(fc.constantFrom("2099-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "9999-12-31T23:59:59+14:00")), edits)
      .map(([i, count, unit, expiry, e]) => ({ method: "POST" as const, path: "/subscription-plans", body: mutate({ planName: `Plan ${i}`, throttleLimitCount: count, throttleLimitUnit: unit, expiryTime: expiry }, e) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), mostly(fc.constantFrom("ACTIVE", "INACTIVE")), edits).map(([i, status, e]) => ({ method: "PUT" as const, path: `/subscription-plans/{plan:${i}}`, body: mutate({ status }, e) })),
  },
  // Subscriptions
  {
    weight: 3,
    arbitrary: fc
      .tuple(apiIndex, mostly(fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 20 })), fc.boolean(), fc.boolean(), edits)
      .map(([a, token, withApp, withPlan, e]) => ({
        method: "POST" as const,
        path: "/subscriptions",
        body: mutate({ apiId: `api-${a}`, subscriptionToken: token, ...(withApp ? { applicationId: "{app:0}" } : {}), ...(withPlan ? { subscriptionPlanId: "{plan:0}" } : {}) }, e),
      })),
  },
  { weight: 1, arbitrary: fc.tuple(mostly(fc.constantFrom("ACTIVE", "REVOKED")), edits).map(([status, e]) => ({ method: "PUT" as const, path: "/subscriptions/{sub:0}", body: mutate({ status }, e) })) },
  // API keys (as a consumer)
  {
    weight: 3,
    arbitrary: fc
      .tuple(apiIndex, mostly(fc.constantFrom("my-key", "key_2", "k3y")), mostly(fc.constantFrom("2099-01-01T00:00:00Z", "2099-06-30T23:59:59.999+14:00", "9999-12-31T23:59:59Z")), edits)
      .map(([a, name, expiresAt, e]) => ({ method: "POST" as const, path: `/rest-apis/api-${a}/api-keys`, body: mutate({ name, expiresAt }, e), as: "consumer" as const })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(apiIndex, mostly(fc.constantFrom("my-key", "key_2"))).map(([a, name]) => ({ method: "DELETE" as const, path: `/rest-apis/api-${a}/api-keys/${typeof name === "string" ? segment(name) : "x"}`, as: "consumer" as const })),
  },
  // Applications
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 3 }), mostly(fc.constantFrom("Reader app", "")), mostly(fc.constantFrom('{"tenant":"acme"}', "x")), edits)
      .map(([i, description, extInfo, e]) => ({ method: "POST" as const, path: "/applications", body: mutate({ name: `app-${i}`, description, extInfo }, e) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.dictionary(mostly(fc.constantFrom("team", "env")), mostly(fc.constantFrom("a", "b")), { maxKeys: 3 }), edits).map(([tags, e]) => ({ method: "PUT" as const, path: "/applications/{app:0}", body: mutate({ tags }, e) })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(apiIndex, fc.constantFrom("RELEASE", "TEST"), edits).map(([a, stage, e]) => ({ method: "POST" as const, path: "/authorizations", body: mutate({ applicationId: "{app:0}", apiId: `api-${a}`, stage }, e) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(apiIndex, mostly(fc.constantFrom("my-key", "key_2")), mostly(fc.constantFrom("hours", "days", "months")), mostly(fc.integer({ min: 1, max: 40 })), edits)
      .map(([a, name, unit, duration, e]) => ({ method: "POST" as const, path: `/rest-apis/api-${a}/api-keys/${name}/regenerate`, body: mutate({ gracePeriod: { unit, duration } }, e), as: "consumer" as const })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(mostly(fc.constantFrom("AppKey_0001", "AppKey_0002")), mostly(fc.constantFrom("S3cret!S3cret!S3cret!", "short")), edits)
      .map(([appKey, appSecret, e]) => ({ method: "POST" as const, path: "/applications/{app:0}/key-pairs", body: mutate({ appKey, appSecret }, e) })),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 5 }).map((i) => ({ method: "DELETE" as const, path: `/plugins/{plugin:${i}}` })) },
  // Hostile path parameters on every family
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom("DELETE /rest-apis/", "DELETE /rest-apis/api-0/api-keys/", "DELETE /subscriptions/", "DELETE /plugins/", "PUT /subscription-plans/", "DELETE /applications/", "POST /rest-apis/api-0/api-keys/", "DELETE /authorizations/"),
        hostileSegment,
      )
      .map(([prefix, s]) => {
        const [method, path] = prefix.split(" ") as ["POST" | "PUT" | "DELETE", string];
        const suffix = path.endsWith("api-keys/") && method === "POST" ? "/regenerate" : "";
        return { method, path: path + segment(s) + suffix, ...(method !== "DELETE" ? { body: {} } : {}) };
      }),
  },
);

/** One write in ten sends its body as YAML (the same checks apply to both parsers' output). */
const write: fc.Arbitrary<Write> = fc.tuple(anyWrite, fc.integer({ min: 0, max: 9 })).map(([w, r]) => (w.body !== undefined && r === 0 ? { ...w, yaml: true } : w));

// ---------------------------------------------------------------------------------------------
// The run

describe("property: generated REST writes", function () {
  this.timeout(300_000);
  let ads: DeltaClient;
  let beat = 0;
  const known = { plugin: new Map<number, string>(), plan: new Map<number, string>(), app: new Map<number, string>(), sub: new Map<number, string>() };
  const apis = new Set<string>();
  const stats = { writes: 0, ok: 0, clientErrors: 0, byStatus: new Map<number, number>() };

  const canaryBody = (n: number) => ({
    apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
    kind: "RestApi",
    metadata: { name: "canary" },
    spec: { displayName: "Canary", version: "v1", context: "/canary", upstream: { main: { url: "http://canary.internal:8080" } }, operations: [{ method: "GET", path: `/beat-${n}` }] },
  });

  /** A change to the canary API reaches the ADS client (whatever the generated writes did). */
  async function canaryReaches(): Promise<void> {
    beat++;
    const reply = await call(beat === 1 ? "POST" : "PUT", beat === 1 ? "/rest-apis" : "/rest-apis/canary", { body: canaryBody(beat) });
    expect(reply.status, reply.text).to.be.oneOf([200, 201]);
    const marker = `/canary/beat-${beat}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const response = await ads.next(Math.max(1, deadline - Date.now())).catch((error: Error) => {
        throw new Error(`canary change ${beat} did not reach the ADS client: ${error.message} (seed ${SEED})`);
      });
      ads.ack(response);
      if (response.typeUrl === XDS_TYPE_URLS.route && response.resources.some((r) => Buffer.from(r.resource!.value).includes(marker))) return;
    }
  }

  async function failures(): Promise<number> {
    const metric = harness().metrics.registry.getSingleMetric("apigw_xds_rebuild_failures_total");
    return metric ? ((await metric.get()).values[0]?.value ?? 0) : 0;
  }

  /** Fills `{plugin:i}`-style placeholders (in the path and in body strings) from what exists. */
  function resolve(text: string): string {
    return text.replace(/\{(plugin|plan|app|sub):(\d)\}/g, (_, kind: keyof typeof known, i: string) => known[kind].get(Number(i)) ?? "00000000-0000-4000-8000-000000000000");
  }

  function remember(w: Write, reply: Reply): void {
    const b = reply.body ?? {};
    if (w.method === "POST" && w.path === "/plugins" && b.plugin?.id) known.plugin.set(Number(String(b.plugin.name).slice(5)), b.plugin.id);
    if (w.method === "POST" && w.path === "/subscription-plans" && b.id) known.plan.set(Number(String(b.planName).slice(5)), b.id);
    if (w.method === "POST" && w.path === "/applications" && b.application?.id) known.app.set(Number(String(b.application.name).slice(4)), b.application.id);
    if (w.method === "POST" && w.path === "/subscriptions" && b.id) known.sub.set(0, b.id);
    const plugin = /^\/plugins\/\{plugin:(\d)\}$/.exec(w.path);
    if (w.method === "DELETE" && plugin) known.plugin.delete(Number(plugin[1]));
    if (w.method === "POST" && w.path === "/rest-apis" && b.metadata?.name) apis.add(b.metadata.name);
    const deleted = /^\/rest-apis\/([^/]+)$/.exec(w.path);
    if (w.method === "DELETE" && deleted) apis.delete(deleted[1]!);
  }

  async function check(w: Write): Promise<void> {
    const knex = harness().database.knex;
    const before = await currentRevision(knex);
    const failedBefore = await failures();
    // A RestApi write: create when the API does not exist yet, else replace it.
    const upsert = /^\{upsert:(.+)\}$/.exec(w.path)?.[1];
    if (upsert) w = { ...w, method: apis.has(upsert) ? "PUT" : "POST", path: apis.has(upsert) ? `/rest-apis/${upsert}` : "/rest-apis" };
    const path = resolve(w.path);
    const body = w.body === undefined ? undefined : JSON.parse(resolve(JSON.stringify(w.body)));
    const payload = body !== undefined && w.yaml ? { body: YAML.stringify(body), contentType: "application/yaml" } : body !== undefined ? { body } : {};
    const reply = await call(w.method, path, { ...payload, ...(w.as ? { as: w.as } : {}) });
    stats.writes++;
    stats.byStatus.set(reply.status, (stats.byStatus.get(reply.status) ?? 0) + 1);
    const what = `${w.method} ${path} ${JSON.stringify(body)?.slice(0, 600)} → ${reply.status} ${reply.text.slice(0, 400)}`;
    expect(reply.status, what).to.be.below(500);
    if (reply.status >= 400) {
      stats.clientErrors++;
      if (process.env.PROPERTY_DEBUG) process.stdout.write(`DEBUG ${w.method} ${path} ${reply.status} ${reply.text.slice(0, 300)}\n`);
      expect(reply.body?.status, what).to.equal("error");
      expect(reply.body?.message, what).to.be.a("string");
      for (const e of reply.body?.errors ?? []) {
        expect(e.field, what).to.be.a("string");
        expect(e.message, what).to.be.a("string");
      }
      expect(await currentRevision(knex), `a refused write changed the store: ${what}`).to.equal(before);
      return;
    }
    stats.ok++;
    remember(w, reply);
    const after = await currentRevision(knex);
    if (after === before) return;
    // The APIs the write changed, as its change notification names them.
    const rows = await knex("change_log").where("revision", ">", before).select("changes");
    const handles = new Set<string>();
    for (const row of rows) for (const change of typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes) for (const h of change.apiIds ?? []) handles.add(h);
    if (handles.size === 0) return;
    await waitFor(`the pipeline to publish revision ${after}`, () => (harness().pipeline.publishedRevision >= after ? true : undefined), 10_000);
    await harness().pipeline.settled();
    expect(await failures(), `a rebuild failed after ${what}`).to.equal(failedBefore);
    const config = await loadGatewayConfig(knex, { handles: [...handles] });
    try {
      buildSnapshot(translate(config, translatorOptions(harness().config)) as never);
    } catch (error) {
      expect.fail(`accepted write gives an invalid snapshot: ${what}\n${(error as Error).message}`);
    }
  }

  before(async () => {
    ads = connectDelta(`127.0.0.1:${harness().xdsPort}`, { id: "property-envoy" });
    ads.subscribe(XDS_TYPE_URLS.cluster);
    ads.subscribe(XDS_TYPE_URLS.listener);
    ads.subscribe(XDS_TYPE_URLS.route, [ROUTE_CONFIG]);
  });

  after(async () => {
    ads?.close();
    // Leave nothing behind for the running control plane's pipeline (the reset truncates silently).
    for (let i = 0; i < API_POOL; i++) await call("DELETE", `/rest-apis/api-${i}`);
    await call("DELETE", "/rest-apis/canary");
    await harness().pipeline.settled();
  });

  it(`answers every write with a 4xx that changes nothing, or a 2xx whose configuration reaches Envoy (${RUNS} writes)`, async () => {
    process.stdout.write(`      property seed: ${SEED} (PROPERTY_SEED=${SEED} replays this run)\n`);
    await canaryReaches();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(write, async (w) => {
        await check(w);
        if (++n % CANARY_EVERY === 0) await canaryReaches();
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    await canaryReaches();
    const statuses = [...stats.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([s, c]) => `${s}:${c}`).join(" ");
    process.stdout.write(`      ${stats.writes} writes: ${stats.ok} accepted, ${stats.clientErrors} refused (${statuses}); ${beat} canary changes reached the ADS client\n`);
    // The generator must exercise both outcomes, or the property says little.
    expect(stats.ok).to.be.above(RUNS / 10);
    expect(stats.clientErrors).to.be.above(RUNS / 10);
  });
});

import { createHash } from "node:crypto";
import { expect } from "chai";
import {
  encodeStrict,
  ENVOY_TYPE_URLS as U,
  validateEnvoyResource,
  type ResourceIssue,
  type ValidateOptions,
} from "../../packages/control-plane/src/envoy/schema/strict";
import type { GatewayApi, GatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { translate } from "../../packages/control-plane/src/translator/index";
import { deepFreeze } from "../../packages/control-plane/src/translator/util";
import { collectClusterRefs, stableStringify } from "../../packages/control-plane/src/xds/json";
import * as incremental from "../../packages/control-plane/src/xds/routeConfiguration";
import { caseInput, goldenCases } from "../support/golden";
import { buildSnapshot, SnapshotError } from "../../packages/control-plane/src/xds/snapshot";

/*
 * routeConfiguration.ts validates and encodes a RouteConfiguration piece by piece (shell, routes,
 * content-defined chunks of routes, a version over a skeleton). These tests hold it to what it
 * claims: its bytes are exactly encodeStrict's for the whole resource, its version is a function of
 * those bytes (whatever the cache history, in any encoder instance), and its issues are
 * validateEnvoyResource's on the whole resource. Generated cases come from a seeded PRNG.
 */

type Json = Record<string, any>;
type Module = typeof incremental;
const { encodeRouteConfiguration, routeConfigurationStats, ROUTE_TYPE_URL } = incremental;
const RC = U.routeConfiguration;

// ---------------------------------------------------------------------------------------------
// Helpers

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const intBelow = (rand: () => number, n: number) => Math.floor(rand() * n);
const pick = <T>(rand: () => number, items: readonly T[]): T => items[intBelow(rand, items.length)]!;

const clone = <T>(value: T): T => structuredClone(value);
const frozenClone = <T>(value: T): T => deepFreeze(structuredClone(value));
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function fullBytes(rc: unknown): Buffer {
  return Buffer.from(encodeStrict(RC, rc));
}

/** The incremental encoding; fails the test when the resource is not handled incrementally. */
function encode(rc: unknown, validate?: ValidateOptions, impl: Module = incremental): incremental.EncodedRouteConfiguration {
  const result = impl.encodeRouteConfiguration(rc, validate);
  expect(result, "encodeRouteConfiguration handles the resource").to.not.equal(undefined);
  return result!;
}

/** Asserts a valid encoding byte-identical to encodeStrict of the whole resource; returns it. */
function expectFullEquivalent(rc: unknown, label: string, validate?: ValidateOptions, impl: Module = incremental): incremental.EncodedRouteConfiguration {
  const result = encode(rc, validate, impl);
  expect(result.issues, `${label}: issues`).to.deep.equal([]);
  expect(result.value, `${label}: value`).to.be.instanceOf(Uint8Array);
  const full = fullBytes(rc);
  const value = Buffer.from(result.value!);
  expect(value.length, `${label}: length`).to.equal(full.length);
  // Buffer.compare: no multi-megabyte diff in the failure message, but the first differing offset.
  if (!value.equals(full)) {
    let at = 0;
    while (at < full.length && value[at] === full[at]) at++;
    expect.fail(`${label}: bytes differ from encodeStrict's at offset ${at} of ${full.length}`);
  }
  expect(result.version, `${label}: version`).to.match(/^[0-9a-f]{16}$/);
  expect(result.clusterRefs, `${label}: cluster references`).to.deep.equal(collectClusterRefs(rc));
  return result;
}

const issueKey = (i: ResourceIssue) => `${i.path}\u0000${i.message}`;
const sortedIssues = (issues: ResourceIssue[]) => issues.map(issueKey).sort();

/**
 * Asserts that the resource is invalid and that the incremental check reports exactly the whole
 * resource's issues (as given, as a deep-frozen copy twice, as an unfrozen copy); returns them.
 */
function expectSameIssues(rc: Json, validate?: ValidateOptions): ResourceIssue[] {
  const whole = validateEnvoyResource(RC, rc, validate);
  expect(whole, "the case is invalid as a whole").to.not.be.empty;
  const frozen = frozenClone(rc);
  for (const [label, variant] of [
    ["as given", rc],
    ["frozen", frozen],
    ["frozen, cached", frozen],
    ["unfrozen copy", clone(rc)],
  ] as const) {
    const result = encode(variant, validate);
    expect(result.value, `${label}: no value`).to.equal(undefined);
    expect(result.version, `${label}: no version`).to.equal(undefined);
    expect(sortedIssues(result.issues), label).to.deep.equal(sortedIssues(whole));
  }
  return whole;
}

/** Mirrors the implementation's chunk rule (a route ends a chunk when its digest's first byte is < 4), to aim at chunk edges. */
function isBoundary(route: Json): boolean {
  return createHash("sha256").update(encodeStrict(ROUTE_TYPE_URL, route)).digest()[0]! < 256 / 64;
}

/** A variant of the route (new frozen object, other content) whose boundary flag is `boundary`. */
function variantWithBoundary(route: Json, boundary: boolean): Json {
  for (let n = 0; n < 5000; n++) {
    const variant = { ...clone(route), name: `${route.name}~${n}` };
    if (isBoundary(variant) === boundary) return deepFreeze(variant);
  }
  throw new Error("no variant found");
}

/** Every cluster named by the routes' actions (cluster, weighted_clusters) and by request mirrors: computed independently of json.ts. */
function clustersNamedBy(rc: Json): string[] {
  const out = new Set<string>();
  const mirrors = (list: Json[] | undefined) => list?.forEach((m) => m.cluster && out.add(m.cluster));
  mirrors(rc.request_mirror_policies);
  for (const host of rc.virtual_hosts ?? []) {
    mirrors(host.request_mirror_policies);
    for (const route of host.routes ?? []) {
      const action = route.route;
      if (!action) continue;
      if (action.cluster) out.add(action.cluster);
      for (const c of action.weighted_clusters?.clusters ?? []) if (c.name) out.add(c.name);
      mirrors(action.request_mirror_policies);
    }
  }
  return [...out].sort();
}

// ---------------------------------------------------------------------------------------------
// Inputs: golden translator cases, translator configurations generated from them, synthetic routes

const cases = goldenCases;

const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"] as const;

/**
 * A GatewayConfig of `apiCount` APIs cloned from the golden inputs' APIs (their policies and
 * upstreams kept) under new handles and contexts, spread over several release and sandbox
 * virtual hosts, with extra operations; plus one API with `bigOperations` operations on `*`.
 */
function generatedConfig(seed: number, apiCount: number, bigOperations: number): GatewayConfig {
  const rand = prng(seed);
  const templates = cases.flatMap((c) => caseInput(c).config.apis);
  const releaseHosts = ["*", "api.example.com", "shop.example.com", "Docs.Example.com"];
  const sandboxHosts = ["sandbox-*", "sandbox.api.example.com"];
  const apis: GatewayApi[] = [];
  for (let k = 0; k < apiCount; k++) {
    const api = clone(pick(rand, templates));
    const context = `/gen${seed}-${k}`;
    apis.push({
      ...api,
      id: uuid(seed * 10_000 + k),
      handle: `gen-${seed}-${k}`,
      displayName: `gen-${seed}-${k}`,
      context,
      resolvedContext: context,
      stages: api.stages.map((stage) => ({
        ...stage,
        vhost: stage.stage === "RELEASE" ? pick(rand, releaseHosts) : pick(rand, sandboxHosts),
        operations: [
          ...stage.operations,
          ...Array.from({ length: intBelow(rand, 6) }, (_, j) => ({
            method: pick(rand, METHODS),
            path: rand() < 0.5 ? `/extra${j}` : `/extra${j}/{id}`,
            policies: [],
          })),
        ],
      })),
    });
  }
  const big = clone(templates.find((a) => a.stages.length === 1 && a.stages[0]!.stage === "RELEASE")!);
  apis.push({
    ...big,
    id: uuid(seed * 10_000 + 9_999),
    handle: `big-${seed}`,
    displayName: `big-${seed}`,
    context: `/big${seed}`,
    resolvedContext: `/big${seed}`,
    stages: [
      {
        ...big.stages[0]!,
        vhost: "*",
        operations: Array.from({ length: bigOperations }, (_, j) => ({
          method: METHODS[j % METHODS.length]!,
          path: j % 3 === 0 ? `/items${j}/{id}` : `/items${j}`,
          policies: [],
        })),
      },
    ],
  });
  return { revision: seed, apis } as GatewayConfig;
}

const EXT_AUTHZ_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

/** A valid Route with varied content (match kinds, actions, headers, maps, metadata, sizes). */
function syntheticRoute(rand: () => number, id: number): Json {
  const match: Json =
    rand() < 0.4
      ? { prefix: `/p${id}` }
      : rand() < 0.6
        ? { path: `/x/${id}` }
        : { safe_regex: { regex: `/r${id}/[a-z]+` } };
  if (rand() < 0.5) match.headers = [{ name: ":method", string_match: { exact: pick(rand, METHODS) } }];
  const route: Json = { name: `route-${id}`, match };
  const kind = rand();
  if (kind < 0.55) {
    route.route = { cluster: `c${intBelow(rand, 12)}`, timeout: `${1 + intBelow(rand, 30)}s` };
    if (rand() < 0.5) route.route.prefix_rewrite = "/";
    if (rand() < 0.3) route.route.auto_host_rewrite = true;
  } else if (kind < 0.8) {
    const n = 1 + intBelow(rand, 3);
    route.route = {
      weighted_clusters: { clusters: Array.from({ length: n }, (_, i) => ({ name: `w${intBelow(rand, 6)}-${i}`, weight: 1 + intBelow(rand, 100) })) },
    };
  } else if (kind < 0.9) {
    route.redirect = { https_redirect: true };
  } else {
    route.direct_response = { status: 200 + intBelow(rand, 300), body: { inline_string: "x".repeat(intBelow(rand, 300)) } };
  }
  if (rand() < 0.4) {
    route.request_headers_to_add = [{ header: { key: "x-route", value: String(id) }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" }];
  }
  if (rand() < 0.4) route.typed_per_filter_config = { "envoy.filters.http.ext_authz": { "@type": EXT_AUTHZ_PER_ROUTE, disabled: true } };
  if (rand() < 0.3) route.metadata = { filter_metadata: { apigw: { zeta: id, alpha: "a", nested: { b: [1, 2], a: true } } } };
  return route;
}

function syntheticRoutes(rand: () => number, count: number, firstId: number): Json[] {
  return Array.from({ length: count }, (_, i) => deepFreeze(syntheticRoute(rand, firstId + i)));
}

/** A host with fields on both sides of `routes` (field 3): name and domains before, the rest after. */
function syntheticHost(name: string, domains: string[], routes: Json[] | undefined, extras = true): Json {
  const host: Json = { name, domains };
  if (routes !== undefined) host.routes = routes;
  if (extras) {
    host.response_headers_to_add = [{ header: { key: "x-host", value: name }, append_action: "APPEND_IF_EXISTS_OR_ADD" }];
    host.request_headers_to_remove = ["x-internal"];
    host.include_request_attempt_count = true;
    host.typed_per_filter_config = { "envoy.filters.http.ext_authz": { "@type": EXT_AUTHZ_PER_ROUTE, disabled: true } };
    host.request_mirror_policies = [{ cluster: `mirror-${name.replace(/\W/g, "")}` }];
  }
  return host;
}

/** A RouteConfiguration with fields after `virtual_hosts` (field 2). */
function syntheticConfig(hosts: Json[], extras = true): Json {
  const rc: Json = { name: "synthetic", virtual_hosts: hosts };
  if (extras) {
    rc.response_headers_to_add = [{ header: { key: "x-gateway", value: "apigw" } }];
    rc.internal_only_headers = ["x-internal"];
    rc.validate_clusters = false;
    rc.max_direct_response_body_size_bytes = 65536;
  }
  return rc;
}

// ---------------------------------------------------------------------------------------------

describe("xds/routeConfiguration: incremental encoding", function () {
  this.timeout(120_000);

  /** A second instance of the module: its own caches, its own history. */
  let other: Module;
  before(async () => {
    const spec = new URL("../../packages/control-plane/src/xds/routeConfiguration.ts?instance=other", import.meta.url).href;
    other = (await import(spec)) as Module;
    expect(other.encodeRouteConfiguration).to.not.equal(encodeRouteConfiguration);
  });

  describe("byte equality with encodeStrict of the whole resource", () => {
    for (const name of cases) {
      it(`golden case ${name}: frozen, cached, unfrozen, other instance`, () => {
        const { config, options } = caseInput(name);
        const resources = translate(config, options);
        expect(resources.routes, "the case has a RouteConfiguration").to.not.be.empty;
        const clusterNames = new Set(resources.clusters.map((c) => c.name));
        for (const { name: rcName, resource } of resources.routes) {
          const rc = resource as Json;
          for (const host of rc.virtual_hosts) for (const route of host.routes ?? []) expect(Object.isFrozen(route), "translator routes are frozen").to.equal(true);

          const first = expectFullEquivalent(rc, `${name}/${rcName}`);
          // Same frozen routes in a new resource object: everything comes from the caches.
          const again = expectFullEquivalent({ ...rc, virtual_hosts: rc.virtual_hosts.map((h: Json) => ({ ...h })) }, `${name}/${rcName} again`);
          expect(routeConfigurationStats.checked, "no route checked again").to.equal(0);
          expect(routeConfigurationStats.chunksBuilt, "no chunk built again").to.equal(0);
          expect(routeConfigurationStats.chunksReused).to.be.greaterThan(0);
          const unfrozen = expectFullEquivalent(clone(rc), `${name}/${rcName} unfrozen`);
          const elsewhere = expectFullEquivalent(rc, `${name}/${rcName} other instance`, undefined, other);
          expect([again.version, unfrozen.version, elsewhere.version]).to.deep.equal([first.version, first.version, first.version]);

          expect(first.clusterRefs).to.deep.equal(clustersNamedBy(rc));
          for (const ref of first.clusterRefs!) expect(clusterNames.has(ref), `cluster ${ref} exists`).to.equal(true);
        }
      });
    }

    for (const [seed, apiCount, big] of [
      [11, 40, 130],
      [23, 90, 20],
      [37, 15, 260],
    ] as const) {
      it(`generated translator configuration (seed ${seed}: ${apiCount} APIs + ${big} operations on one API), with hosts of 0 and 1 routes added`, () => {
        const resources = translate(generatedConfig(seed, apiCount, big));
        expect(resources.routes).to.have.length(1);
        const translated = resources.routes[0]!.resource as Json;
        const hosts: Json[] = translated.virtual_hosts;
        expect(hosts.length, "several virtual hosts").to.be.greaterThanOrEqual(4);
        expect(hosts.some((h) => h.domains.some((d: string) => d.startsWith("sandbox"))), "sandbox hosts").to.equal(true);
        const largest = Math.max(...hosts.map((h) => h.routes.length));
        expect(largest, "a host with more than 200 routes").to.be.greaterThan(200);

        const one = hosts.find((h) => h.routes.length > 0)!.routes[0];
        const rc = {
          ...translated,
          virtual_hosts: [
            ...hosts.slice(0, 1),
            { name: `empty-${seed}`, domains: [`empty-${seed}.example.org`] },
            { name: `empty-list-${seed}`, domains: [`empty-list-${seed}.example.org`], routes: [] },
            ...hosts.slice(1),
            { name: `single-${seed}`, domains: [`single-${seed}.example.org`], routes: [one] },
          ],
        };
        // Unfrozen: every chunk is built, which shows that the big host has several.
        const unfrozen = expectFullEquivalent(clone(rc), `seed ${seed} unfrozen`);
        const routedHosts = rc.virtual_hosts.filter((h: Json) => h.routes?.length).length;
        expect(routeConfigurationStats.chunksBuilt, "more chunks than hosts with routes").to.be.greaterThan(routedHosts + 1);
        const frozen = expectFullEquivalent(rc, `seed ${seed} frozen`);
        const elsewhere = expectFullEquivalent(rc, `seed ${seed} other instance`, undefined, other);
        expect(frozen.version).to.equal(unfrozen.version);
        expect(elsewhere.version).to.equal(unfrozen.version);
        expect(frozen.clusterRefs).to.deep.equal(clustersNamedBy(rc));
      });
    }

    it("generated translator configuration with the ip-upstreams-eds options", () => {
      const rc = translate(generatedConfig(5, 30, 10), caseInput("ip-upstreams-eds").options).routes[0]!.resource as Json;
      const a = expectFullEquivalent(rc, "eds options");
      expect(expectFullEquivalent(clone(rc), "eds options unfrozen").version).to.equal(a.version);
    });

    it("synthetic configurations: fields after virtual_hosts and after routes, maps, metadata, large routes and hosts", () => {
      const rand = prng(4242);
      for (let round = 0; round < 6; round++) {
        const hosts = [
          syntheticHost("big", ["big.example.com", "*.big.example.com"], syntheticRoutes(rand, 230 + intBelow(rand, 80), round * 1000)),
          syntheticHost("none", ["none.example.com"], undefined),
          syntheticHost("empty", ["empty.example.com"], []),
          syntheticHost("one", ["one.example.com"], syntheticRoutes(rand, 1, round * 1000 + 500)),
          syntheticHost("few", ["few.example.com"], syntheticRoutes(rand, 2 + intBelow(rand, 10), round * 1000 + 600), round % 2 === 0),
          syntheticHost("bare", ["bare.example.com"], undefined, false),
        ];
        const rc = syntheticConfig(hosts, round % 3 !== 2);
        const a = expectFullEquivalent(rc, `round ${round}`);
        const b = expectFullEquivalent(clone(rc), `round ${round} unfrozen`);
        expect(b.version).to.equal(a.version);
        expect(a.clusterRefs).to.deep.equal(clustersNamedBy(rc));
        expect(a.clusterRefs, "a mirror cluster of a host counts").to.include("mirror-big");
      }
    });

    it("a route longer than 16383 bytes and a host longer than 2 MiB (3- and 4-byte length varints)", () => {
      const rand = prng(7);
      const long = deepFreeze({ name: "long", match: { prefix: "/long" }, direct_response: { status: 200, body: { inline_string: "y".repeat(40_000) } } });
      const routes = [...syntheticRoutes(rand, 20, 0), long, ...Array.from({ length: 55 }, (_, i) => deepFreeze({ ...clone(long), name: `long-${i}` }))];
      const rc = syntheticConfig([syntheticHost("huge", ["huge.example.com"], routes)]);
      const a = expectFullEquivalent(rc, "huge host");
      expect(a.value!.length).to.be.greaterThan(2 * 1024 * 1024);
      expect(expectFullEquivalent(clone(rc), "huge host unfrozen").version).to.equal(a.version);
    });

    it("lowerCamelCase JSON (virtualHosts, weightedClusters...) gives the same bytes as its snake_case twin", () => {
      const camel = {
        name: "camel",
        virtualHosts: [
          {
            name: "a",
            domains: ["a.example.com"],
            routes: [
              { name: "r0", match: { prefix: "/" }, route: { weightedClusters: { clusters: [{ name: "w1", weight: 3 }, { name: "w2", weight: 1 }] }, prefixRewrite: "/x" } },
              { name: "r1", match: { safeRegex: { regex: "/b+" } }, directResponse: { status: 204 } },
            ],
            responseHeadersToAdd: [{ header: { key: "x-a", value: "1" } }],
          },
        ],
        validateClusters: false,
      };
      const snake = {
        name: "camel",
        virtual_hosts: [
          {
            name: "a",
            domains: ["a.example.com"],
            routes: [
              { name: "r0", match: { prefix: "/" }, route: { weighted_clusters: { clusters: [{ name: "w1", weight: 3 }, { name: "w2", weight: 1 }] }, prefix_rewrite: "/x" } },
              { name: "r1", match: { safe_regex: { regex: "/b+" } }, direct_response: { status: 204 } },
            ],
            response_headers_to_add: [{ header: { key: "x-a", value: "1" } }],
          },
        ],
        validate_clusters: false,
      };
      const c = expectFullEquivalent(deepFreeze(camel), "camel");
      const s = expectFullEquivalent(snake, "snake");
      expect(Buffer.from(c.value!).equals(Buffer.from(s.value!))).to.equal(true);
      expect(c.version).to.equal(s.version);
      expect(c.clusterRefs).to.deep.equal(["w1", "w2"]);
    });

    it("a configuration without hosts, and hosts without routes", () => {
      expectFullEquivalent({ name: "nothing", virtual_hosts: [] }, "no hosts");
      expectFullEquivalent(syntheticConfig([]), "no hosts, tail fields");
      const r = expectFullEquivalent(syntheticConfig([syntheticHost("h", ["h.example.com"], undefined), syntheticHost("i", ["i.example.com"], [])]), "routeless hosts");
      expect(r.clusterRefs).to.deep.equal(["mirror-h", "mirror-i"]);
      // `routes: []` and no `routes` encode alike, so they share a version.
      const a = encode(syntheticConfig([syntheticHost("h", ["h.example.com"], [])]));
      const b = encode(syntheticConfig([syntheticHost("h", ["h.example.com"], undefined)]));
      expect(a.version).to.equal(b.version);
    });
  });

  describe("incremental sequences: bytes equal the full encoding, the version follows the bytes", () => {
    /**
     * Checks a sequence of configurations built from frozen routes: after every step the bytes are
     * encodeStrict's, the version is the one another instance gives (and, every few steps, the one
     * an unfrozen copy gives: no cache), and across the whole sequence version ⇔ bytes.
     */
    class Tracker {
      private readonly versionByBytes = new Map<string, string>();
      private readonly bytesByVersion = new Map<string, string>();
      private previous?: { bytes: string; version: string };
      steps = 0;

      /** What the step's own encoding did (the checks after it encode again). */
      stats = { ...routeConfigurationStats };

      step(rc: Json, label: string): incremental.EncodedRouteConfiguration {
        const result = expectFullEquivalent(rc, label);
        this.stats = { ...routeConfigurationStats };
        const bytes = sha(result.value!);
        const version = result.version!;
        if (this.previous) {
          expect(version !== this.previous.version, `${label}: version changes iff the bytes change`).to.equal(bytes !== this.previous.bytes);
        }
        if (this.versionByBytes.has(bytes)) expect(version, `${label}: bytes seen before, same version`).to.equal(this.versionByBytes.get(bytes));
        if (this.bytesByVersion.has(version)) expect(bytes, `${label}: version seen before, same bytes`).to.equal(this.bytesByVersion.get(version));
        this.versionByBytes.set(bytes, version);
        this.bytesByVersion.set(version, bytes);
        expect(encode(rc, undefined, other).version, `${label}: other instance`).to.equal(version);
        if (this.steps++ % 5 === 0) expect(encode(clone(rc)).version, `${label}: unfrozen copy`).to.equal(version);
        this.previous = { bytes, version };
        return result;
      }

      distinctVersions(): number {
        return this.bytesByVersion.size;
      }
    }

    const rcOf = (hosts: Json[], header = "apigw") => ({
      name: "seq",
      virtual_hosts: hosts,
      response_headers_to_add: [{ header: { key: "x-gateway", value: header } }],
    });
    const host = (name: string, routes: Json[], domains = [`${name}.example.com`]) => ({ name, domains, routes, response_headers_to_add: [{ header: { key: "x-host", value: name } }] });

    it("scripted steps: change, add at start/middle/end, remove, boundary edits, hosts added/removed/reordered, shell changes", () => {
      const rand = prng(99);
      const big = syntheticRoutes(rand, 300, 0);
      const boundaries = big.map((r, i) => (isBoundary(r) ? i : -1)).filter((i) => i >= 0);
      expect(boundaries.length, "the big host has several chunks").to.be.greaterThanOrEqual(2);
      const small = syntheticRoutes(rand, 6, 1000);
      const t = new Tracker();

      let hosts = [host("big", big), host("small", small), host("none", [])];
      const initial = t.step(rcOf(hosts), "initial");
      t.step(rcOf(hosts), "unchanged");
      expect(t.stats.checked).to.equal(0);
      expect(t.stats.chunksBuilt).to.equal(0);

      // One route changed (a new frozen object, other content): one route checked, the other chunks reused.
      const mid = 150;
      const changed = deepFreeze({ ...clone(big[mid]!), name: "changed" });
      let routes = big.map((r, i) => (i === mid ? changed : r));
      const afterChange = t.step(rcOf([host("big", routes), hosts[1]!, hosts[2]!]), "one route changed");
      expect(afterChange.version).to.not.equal(initial.version);
      expect(t.stats.checked, "only the changed route is checked").to.equal(1);
      expect(t.stats.chunksBuilt, "one or two chunks rebuilt").to.be.within(1, 2);
      expect(t.stats.chunksReused).to.be.greaterThan(0);

      // Back to the original object: the original bytes and version.
      expect(t.step(rcOf(hosts), "change reverted").version).to.equal(initial.version);
      // A new object with the original content: same bytes, same version.
      expect(t.step(rcOf([host("big", big.map((r, i) => (i === mid ? frozenClone(r) : r))), hosts[1]!, hosts[2]!]), "equal copy").version).to.equal(initial.version);

      const extra = syntheticRoutes(rand, 4, 2000);
      t.step(rcOf([host("big", [extra[0]!, ...big]), hosts[1]!, hosts[2]!]), "added at the start");
      t.step(rcOf([host("big", [...big.slice(0, mid), extra[1]!, ...big.slice(mid)]), hosts[1]!, hosts[2]!]), "added in the middle");
      t.step(rcOf([host("big", [...big, extra[2]!]), hosts[1]!, hosts[2]!]), "added at the end");
      t.step(rcOf([host("big", [...big.slice(0, mid), ...big.slice(mid + 1)]), hosts[1]!, hosts[2]!]), "removed in the middle");
      t.step(rcOf([host("big", big.slice(1)), hosts[1]!, hosts[2]!]), "first removed");
      t.step(rcOf([host("big", big.slice(0, -1)), hosts[1]!, hosts[2]!]), "last removed");

      // Chunk edges: remove a boundary route (two chunks merge), flip a route's boundary flag both ways,
      // cut the host in the middle of a chunk and right after a boundary, then grow it again.
      const b0 = boundaries[0]!;
      t.step(rcOf([host("big", [...big.slice(0, b0), ...big.slice(b0 + 1)]), hosts[1]!, hosts[2]!]), "boundary route removed");
      t.step(rcOf([host("big", big.map((r, i) => (i === b0 ? variantWithBoundary(r, false) : r))), hosts[1]!, hosts[2]!]), "boundary route made ordinary");
      const ordinary = boundaries[0]! > 0 ? 0 : boundaries[0]! + 1;
      t.step(rcOf([host("big", big.map((r, i) => (i === ordinary ? variantWithBoundary(r, true) : r))), hosts[1]!, hosts[2]!]), "ordinary route made a boundary");
      t.step(rcOf(hosts), "back to the initial configuration");
      const cut = b0 > 1 ? b0 - 1 : b0 + 2;
      t.step(rcOf([host("big", big.slice(0, cut)), hosts[1]!, hosts[2]!]), "cut inside a chunk");
      t.step(rcOf([host("big", big.slice(0, cut + 1)), hosts[1]!, hosts[2]!]), "grown by one after a cut");
      t.step(rcOf([host("big", big.slice(0, b0 + 1)), hosts[1]!, hosts[2]!]), "cut right after a boundary");
      t.step(rcOf([host("big", [...big.slice(0, b0 + 1), extra[3]!]), hosts[1]!, hosts[2]!]), "grown after a boundary cut");
      t.step(rcOf([host("big", big.slice(b0 + 1)), hosts[1]!, hosts[2]!]), "starts right after a boundary");
      t.step(rcOf([host("big", big.slice(cut)), hosts[1]!, hosts[2]!]), "starts inside a chunk");
      // The same frozen objects in other places: twice in one host, swapped, moved to another host.
      t.step(rcOf([host("big", [...big.slice(0, 10), ...big.slice(0, 10), ...big.slice(10)]), hosts[1]!, hosts[2]!]), "routes repeated");
      t.step(rcOf([host("big", [big[1]!, big[0]!, ...big.slice(2)]), hosts[1]!, hosts[2]!]), "two routes swapped");
      t.step(rcOf([host("big", big.slice(0, b0 + 1)), host("small", [...small, ...big.slice(b0 + 1)]), hosts[2]!]), "routes moved to another host");

      // Hosts added, removed, reordered.
      const added = host("added", syntheticRoutes(rand, 3, 3000));
      t.step(rcOf([hosts[0]!, added, hosts[1]!, hosts[2]!]), "host added in the middle");
      t.step(rcOf([added, ...hosts]), "host added first");
      t.step(rcOf([hosts[0]!, hosts[2]!]), "host removed");
      t.step(rcOf([hosts[2]!, hosts[1]!, hosts[0]!]), "hosts reversed");
      t.step(rcOf([hosts[1]!, hosts[0]!, hosts[2]!]), "hosts swapped");
      const reordered = t.step(rcOf([hosts[1]!, hosts[0]!, hosts[2]!]), "hosts swapped, unchanged");
      expect(t.stats.chunksBuilt).to.equal(0);

      // Shell fields: a host's domains, a host's response header, the configuration's response header.
      hosts = [host("big", big, ["big.example.com", "alias.example.com"]), hosts[1]!, hosts[2]!];
      const domains = t.step(rcOf(hosts), "domains changed");
      expect(t.stats.checked, "no route checked for a shell change").to.equal(0);
      expect(t.stats.chunksBuilt, "no chunk built for a shell change").to.equal(0);
      t.step(rcOf([{ ...hosts[0]!, response_headers_to_add: [{ header: { key: "x-host", value: "other" } }] }, hosts[1]!, hosts[2]!]), "host header changed");
      t.step(rcOf(hosts, "other"), "configuration header changed");
      expect(t.step(rcOf(hosts), "configuration header reverted").version).to.equal(domains.version);
      expect(reordered.version).to.not.equal(domains.version);
      expect(t.distinctVersions()).to.be.greaterThan(25);
    });

    for (const seed of [1, 2, 3]) {
      it(`random edit sequence (seed ${seed})`, () => {
        const rand = prng(seed * 7919);
        let nextId = seed * 100_000;
        const newRoutes = (n: number) => {
          const routes = syntheticRoutes(rand, n, nextId);
          nextId += n;
          return routes;
        };
        let hosts: { name: string; domains: string[]; routes: Json[]; extras: boolean }[] = [
          { name: "h0", domains: ["h0.example.com"], routes: newRoutes(220), extras: true },
          { name: "h1", domains: ["h1.example.com"], routes: newRoutes(40), extras: false },
          { name: "h2", domains: ["h2.example.com"], routes: [], extras: true },
          { name: "h3", domains: ["h3.example.com"], routes: newRoutes(1), extras: false },
        ];
        let header = "v0";
        let hostCounter = 4;
        const history: Json[] = [];
        const build = () => {
          const rc = syntheticConfig(hosts.map((h) => syntheticHost(h.name, h.domains, h.routes, h.extras)));
          rc.response_headers_to_add[0].header.value = header;
          return rc;
        };
        const t = new Tracker();
        t.step(build(), "initial");
        for (let step = 1; step <= 45; step++) {
          const h = pick(rand, hosts);
          const at = intBelow(rand, h.routes.length + 1);
          const op = intBelow(rand, 12);
          let label: string;
          switch (op) {
            case 0:
            case 1: {
              if (!h.routes.length) continue;
              const i = Math.min(at, h.routes.length - 1);
              h.routes = h.routes.map((r, k) => (k === i ? deepFreeze({ ...clone(r), name: `${r.name}*` }) : r));
              label = `change route ${i} of ${h.name}`;
              break;
            }
            case 2:
            case 3:
              h.routes = [...h.routes.slice(0, at), ...newRoutes(1 + intBelow(rand, 3)), ...h.routes.slice(at)];
              label = `insert at ${at} of ${h.name}`;
              break;
            case 4:
            case 5: {
              if (!h.routes.length) continue;
              const n = 1 + intBelow(rand, 3);
              h.routes = [...h.routes.slice(0, at), ...h.routes.slice(at + n)];
              label = `remove ${n} at ${at} of ${h.name}`;
              break;
            }
            case 6: {
              const name = `h${hostCounter++}`;
              hosts.splice(intBelow(rand, hosts.length + 1), 0, { name, domains: [`${name}.example.com`], routes: newRoutes(intBelow(rand, 80)), extras: rand() < 0.5 });
              label = `add host ${name}`;
              break;
            }
            case 7:
              if (hosts.length < 2) continue;
              hosts = hosts.filter((x) => x !== h);
              label = `remove host ${h.name}`;
              break;
            case 8: {
              const i = intBelow(rand, hosts.length);
              const j = intBelow(rand, hosts.length);
              [hosts[i], hosts[j]] = [hosts[j]!, hosts[i]!];
              label = `swap hosts ${i} and ${j}`;
              break;
            }
            case 9:
              h.domains = rand() < 0.5 ? [...h.domains, `alias${step}.${h.name}.example.com`] : [h.domains[0]!];
              label = `domains of ${h.name}`;
              break;
            case 10:
              header = rand() < 0.5 ? `v${step}` : "v0";
              label = `configuration header ${header}`;
              break;
            default: {
              const previous = history.length ? pick(rand, history) : undefined;
              if (!previous) continue;
              hosts = previous.map((x: Json) => ({ ...x }));
              label = "back to an earlier configuration";
            }
          }
          history.push(hosts.map((x) => ({ ...x })));
          t.step(build(), `step ${step}: ${label}`);
        }
      });
    }

    it("unfrozen route objects edited in place between builds are encoded anew each time", () => {
      const rand = prng(31);
      const routes = Array.from({ length: 150 }, (_, i) => syntheticRoute(rand, i)); // not frozen
      const hostObj: Json = { name: "live", domains: ["live.example.com"], routes };
      const rc: Json = { name: "live", virtual_hosts: [hostObj] };
      const t = new Tracker();
      const first = t.step(rc, "unfrozen");
      expect(t.stats.checked, "every unfrozen route checked").to.equal(150);
      routes[75]!.name = "edited in place";
      const edited = t.step(rc, "edited in place");
      expect(edited.version).to.not.equal(first.version);
      routes[75]!.name = "route-75";
      expect(t.step(rc, "edited back").version).to.equal(first.version);
      routes.push(syntheticRoute(rand, 150));
      t.step(rc, "pushed in place");
      routes.splice(10, 5);
      t.step(rc, "spliced in place");
      hostObj.domains.push("alias.example.com");
      t.step(rc, "domains edited in place");
      // A mix: frozen routes around unfrozen ones.
      const mixed = routes.map((r, i) => (i % 3 === 0 ? r : frozenClone(r)));
      rc.virtual_hosts = [{ ...hostObj, routes: mixed }];
      t.step(rc, "mixed");
      (mixed[3] as Json).name = "edited again";
      t.step(rc, "mixed, an unfrozen one edited");
      const invalid = { name: "invalid", match: { prefix: "/invalid" }, route: { cluster: "" } };
      mixed[6] = invalid;
      expect(sortedIssues(encode(rc).issues)).to.deep.equal(sortedIssues(validateEnvoyResource(RC, rc)));
      invalid.route.cluster = "fixed";
      t.step(rc, "unfrozen invalid route fixed in place");
    });

    it("the version does not depend on the encoder's history (fresh instance, caches filled in another order)", async () => {
      const rand = prng(555);
      const routes = syntheticRoutes(rand, 260, 0);
      const a = rcOf([host("a", routes.slice(0, 130)), host("b", routes.slice(130))]);
      const b = rcOf([host("a", routes.slice(0, 131)), host("b", routes.slice(131))]);
      const spec = new URL("../../packages/control-plane/src/xds/routeConfiguration.ts?instance=fresh", import.meta.url).href;
      const fresh = (await import(spec)) as Module;
      // `incremental` sees a then b; `fresh` sees only b, then a.
      const a1 = expectFullEquivalent(a, "a");
      const b1 = expectFullEquivalent(b, "b");
      const b2 = expectFullEquivalent(b, "b fresh", undefined, fresh);
      const a2 = expectFullEquivalent(a, "a fresh", undefined, fresh);
      expect([a2.version, b2.version]).to.deep.equal([a1.version, b1.version]);
      expect(a1.version).to.not.equal(b1.version);
      // Deterministic across runs of the encoder: a pinned expectation would freeze the format;
      // instead, a third instance given deep-frozen copies (no shared objects at all) agrees.
      expect(encode(frozenClone(a), undefined, fresh).version).to.equal(a1.version);
    });
  });

  describe("validation: the same issues as validateEnvoyResource on the whole resource", () => {
    const rand = prng(2024);
    const valid = () => syntheticRoutes(rand, 8, intBelow(rand, 1_000_000));
    /** Host 1 route 2 replaced by `bad` (plus a valid host around it). */
    const withRoute = (bad: Json) => {
      const routes = valid();
      routes[2] = bad;
      return syntheticConfig([syntheticHost("h0", ["h0.example.com"], valid()), syntheticHost("h1", ["h1.example.com"], routes)]);
    };
    const match = { prefix: "/" };

    const badRoutes: [string, Json, string | undefined][] = [
      ["weights summing to 0", { name: "w0", match, route: { weighted_clusters: { clusters: [{ name: "a", weight: 0 }, { name: "b", weight: 0 }] } } }, "virtual_hosts[1].routes[2].route.weighted_clusters.clusters"],
      ["weights summing over 2^32-1", { name: "w1", match, route: { weighted_clusters: { clusters: [{ name: "a", weight: 4294967295 }, { name: "b", weight: 1 }] } } }, "virtual_hosts[1].routes[2].route.weighted_clusters.clusters"],
      ["a weight out of the uint32 range (decode)", { name: "w2", match, route: { weighted_clusters: { clusters: [{ name: "a", weight: 4294967296 }] } } }, undefined],
      ["a weighted cluster with neither name nor header", { name: "w3", match, route: { weighted_clusters: { clusters: [{ weight: 5 }] } } }, "virtual_hosts[1].routes[2].route.weighted_clusters.clusters[0]"],
      ["an empty cluster name", { name: "c0", match, route: { cluster: "" } }, "virtual_hosts[1].routes[2].route.cluster"],
      ["an unbalanced regex", { name: "re0", match: { safe_regex: { regex: "(a" } }, route: { cluster: "c" } }, "virtual_hosts[1].routes[2].match.safe_regex.regex"],
      ["a lookahead regex", { name: "re1", match, route: { cluster: "c", regex_rewrite: { pattern: { regex: "a(?=b)" }, substitution: "x" } } }, undefined],
      ["a regex over the program size limit", { name: "re2", match: { safe_regex: { regex: "(abcdefghij|klmnopqrst|uvwxyz0123){1,9}" } }, route: { cluster: "c" } }, "virtual_hosts[1].routes[2].match.safe_regex.regex"],
      ["two rewrites", { name: "rw", match, route: { cluster: "c", prefix_rewrite: "/a", regex_rewrite: { pattern: { regex: "a" }, substitution: "b" } } }, "virtual_hosts[1].routes[2].route.regex_rewrite"],
      ["no match", { name: "nm", route: { cluster: "c" } }, "virtual_hosts[1].routes[2].match"],
      ["no action", { name: "na", match }, undefined],
      ["an unknown field (decode)", { name: "uf", match, route: { cluster: "c" }, rutes: 1 }, "virtual_hosts[1].routes[2].rutes"],
      ["a wrong type (decode)", { name: "wt", match, route: { cluster: "c", timeout: 5 } }, undefined],
      ["an unknown enum name (decode)", { name: "en", match, route: { cluster: "c" }, request_headers_to_add: [{ header: { key: "a", value: "b" }, append_action: "SOMETIMES" }] }, undefined],
      ["a bad header name", { name: "hn", match, route: { cluster: "c" }, request_headers_to_add: [{ header: { key: "bad\nheader", value: "b" } }] }, "virtual_hosts[1].routes[2].request_headers_to_add[0].header.key"],
      ["a uri_template rewrite without a uri_template match", {
        name: "ut",
        match,
        route: { cluster: "c", path_rewrite_policy: { name: "envoy.path.rewrite.uri_template", typed_config: { "@type": U.uriTemplateRewrite, path_template_rewrite: "/{x}" } } },
      }, "virtual_hosts[1].routes[2].route.path_rewrite_policy"],
    ];
    for (const [title, bad, expectedPath] of badRoutes) {
      it(`route with ${title}`, () => {
        const issues = expectSameIssues(withRoute(bad));
        if (expectedPath) expect(issues.map((i) => i.path)).to.include(expectedPath);
        for (const issue of issues) expect(issue.path.startsWith("virtual_hosts[1].routes[2]"), issue.path).to.equal(true);
      });
    }

    it("with other validation options (semantic off, a higher regex limit, deprecated fields reported)", () => {
      const weights = withRoute(badRoutes[0]![1]);
      expectSameIssues(weights);
      expect(encode(weights, { semantic: false }).issues, "semantic off: the weight rule is not checked").to.deep.equal([]);
      expectFullEquivalent(weights, "semantic off", { semantic: false });
      const regex = withRoute(badRoutes[7]![1]);
      expectSameIssues(regex);
      expectFullEquivalent(regex, "regex limit 1000", { regexProgramSizeLimit: 1000 });
      expectSameIssues(regex, { regexProgramSizeLimit: 20 });
      // A deprecated Route field (RouteAction.max_grpc_timeout) is an issue only with `deprecated`.
      const deprecated = withRoute({ name: "dep", match, route: { cluster: "c", max_grpc_timeout: "5s" } });
      expectFullEquivalent(deprecated, "deprecated allowed");
      const issues = expectSameIssues(deprecated, { deprecated: true });
      expect(issues.map((i) => i.path)).to.include("virtual_hosts[1].routes[2].route.max_grpc_timeout");
      // After those, the default options still see the route as valid (caches are per options).
      expectFullEquivalent(deprecated, "deprecated allowed again");
    });

    const shells: [string, (rc: Json) => void, string][] = [
      ["duplicate domains across hosts (case-insensitive)", (rc) => rc.virtual_hosts[1].domains.push("H0.example.com"), "virtual_hosts[1].domains[1]"],
      ["a duplicate domain within a host", (rc) => rc.virtual_hosts[0].domains.push("h0.example.com"), "virtual_hosts[0].domains[1]"],
      ["duplicate host names", (rc) => (rc.virtual_hosts[1].name = "h0"), "virtual_hosts[1].name"],
      ["two bare wildcard hosts", (rc) => ((rc.virtual_hosts[0].domains = ["*"]), (rc.virtual_hosts[1].domains = ["*"])), "virtual_hosts[1].domains[0]"],
      ["a wildcard inside a domain", (rc) => (rc.virtual_hosts[1].domains = ["a*b.example.com"]), "virtual_hosts[1].domains[0]"],
      ["a host without domains", (rc) => (rc.virtual_hosts[1].domains = []), "virtual_hosts[1].domains"],
      ["a host without a name", (rc) => (rc.virtual_hosts[0].name = ""), "virtual_hosts[0].name"],
      ["an unknown host field (decode)", (rc) => (rc.virtual_hosts[1].rutes = []), "virtual_hosts[1].rutes"],
      ["an unknown configuration field (decode)", (rc) => (rc.virtualhosts = []), "virtualhosts"],
      ["a bad configuration header", (rc) => (rc.response_headers_to_add = [{ header: { key: "", value: "x" } }]), "response_headers_to_add[0].header.key"],
      ["a host header out of type (decode)", (rc) => (rc.virtual_hosts[0].response_headers_to_add = {}), "virtual_hosts[0].response_headers_to_add"],
      ["a virtual cluster without a name", (rc) => (rc.virtual_hosts[0].virtual_clusters = [{ name: "", headers: [{ name: ":method", string_match: { exact: "GET" } }] }]), "virtual_hosts[0].virtual_clusters[0].name"],
    ];
    for (const [title, spoil, expectedPath] of shells) {
      it(`shell with ${title}`, () => {
        const rc = syntheticConfig([syntheticHost("h0", ["h0.example.com"], valid()), syntheticHost("h1", ["h1.example.com"], valid())]);
        spoil(rc);
        const issues = expectSameIssues(rc);
        expect(issues.map((i) => i.path).some((p) => p.startsWith(expectedPath)), `${expectedPath} in ${JSON.stringify(issues)}`).to.equal(true);
      });
    }

    it("shell issues and route issues together; decode issues hide rule issues, as for the whole resource", () => {
      const base = () => withRoute(badRoutes[0]![1]); // weights summing to 0 (a rule) in host 1 route 2
      // Rule issues in the shell and in a route: both reported.
      const both = base();
      both.virtual_hosts[1].domains.push("h0.example.com");
      const issues = expectSameIssues(both);
      expect(issues.map((i) => i.path)).to.include.members(["virtual_hosts[1].domains[1]", "virtual_hosts[1].routes[2].route.weighted_clusters.clusters"]);
      // A route that does not decode: the whole resource reports its decode issues only.
      const decode = base();
      decode.virtual_hosts[0].routes[5] = { name: "x", match, route: { cluster: "c" }, bogus: true };
      expect(expectSameIssues(decode).map((i) => i.path)).to.deep.equal(["virtual_hosts[0].routes[5].bogus"]);
      // A shell that does not decode, a route rule issue: the decode issue only.
      const shell = base();
      shell.virtual_hosts[0].bogus = 1;
      expect(expectSameIssues(shell).map((i) => i.path)).to.deep.equal(["virtual_hosts[0].bogus"]);
      // Decode issues in several pieces: all of them.
      const several = base();
      several.virtual_hosts[0].bogus = 1;
      several.virtual_hosts[1].routes[4] = { name: "y", match, route: { cluster: "c", timeout: true } };
      several.virtual_hosts[0].routes[0] = { name: "z", match: { prefix: 3 }, route: { cluster: "c" } };
      expect(expectSameIssues(several)).to.have.length(3);
    });

    it("an invalid route cached once stays reported; a valid one is reported again nowhere", () => {
      const rand2 = prng(8);
      const routes = syntheticRoutes(rand2, 200, 0);
      const bad = deepFreeze({ name: "bad", match, route: { weighted_clusters: { clusters: [{ name: "a", weight: 0 }] } } });
      const invalid = () => rcOfRoutes([...routes.slice(0, 100), bad, ...routes.slice(100)]);
      const rcOfRoutes = (list: Json[]) => syntheticConfig([syntheticHost("h", ["h.example.com"], routes.slice(0, 5)), syntheticHost("big", ["big.example.com"], list)]);
      expectFullEquivalent(rcOfRoutes(routes), "valid first");
      const first = encode(invalid());
      const expected = ["virtual_hosts[1].routes[100].route.weighted_clusters.clusters\u0000the sum of the weights must be greater than 0"];
      expect(sortedIssues(first.issues)).to.deep.equal(expected);
      expect(sortedIssues(first.issues)).to.deep.equal(sortedIssues(validateEnvoyResource(RC, invalid())));
      const second = encode(invalid());
      expect(routeConfigurationStats.checked, "the invalid route comes from the cache").to.equal(0);
      expect(sortedIssues(second.issues)).to.deep.equal(expected);
      expect(second.value).to.equal(undefined);
      // Elsewhere in the host, the same cached object is reported at its new index; twice, twice.
      const moved = encode(rcOfRoutes([bad, ...routes, bad]));
      expect(moved.issues.map((i) => i.path).sort()).to.deep.equal([
        "virtual_hosts[1].routes[0].route.weighted_clusters.clusters",
        "virtual_hosts[1].routes[201].route.weighted_clusters.clusters",
      ]);
      // In the first host too, at that host's index.
      const inFirst = encode(syntheticConfig([syntheticHost("h", ["h.example.com"], [bad]), syntheticHost("big", ["big.example.com"], routes)]));
      expect(inFirst.issues.map((i) => i.path)).to.deep.equal(["virtual_hosts[0].routes[0].route.weighted_clusters.clusters"]);
      // Fixed: valid again, with the bytes and the version it had before.
      const again = expectFullEquivalent(rcOfRoutes(routes), "valid again");
      expect(again.version).to.equal(encode(clone(rcOfRoutes(routes))).version);
    });

    it("an invalid shell cached once stays reported", () => {
      const routes = valid();
      const rc = () => syntheticConfig([syntheticHost("h0", ["dup.example.com"], routes), syntheticHost("h1", ["dup.example.com"], [])]);
      const whole = sortedIssues(validateEnvoyResource(RC, rc()));
      expect(whole).to.have.length(1);
      expect(sortedIssues(encode(rc()).issues)).to.deep.equal(whole);
      expect(sortedIssues(encode(rc()).issues)).to.deep.equal(whole);
    });

    it("a shell value JSON cannot hold is not confused with null (the shell cache is keyed by content)", () => {
      const routes = valid();
      const rc = (value: unknown) => ({ ...syntheticConfig([syntheticHost("h0", ["h0.example.com"], routes)], false), max_direct_response_body_size_bytes: value });
      expectFullEquivalent(rc(null), "null resets the field");
      for (const value of [NaN, Infinity, -Infinity, 5n]) {
        expectSameIssues(rc(value));
      }
      // An undefined list item is not a null one either (they have different decode issues).
      const domains = (items: unknown[]) => syntheticConfig([{ ...syntheticHost("h0", ["h0.example.com"], routes), domains: items }], false);
      expectSameIssues(domains(["h0.example.com", null]));
      expectSameIssues(domains(["h0.example.com", undefined]));
      expect(stableStringify([null])).to.not.equal(stableStringify([undefined]));
      expect(stableStringify({ a: NaN })).to.not.equal(stableStringify({ a: null }));
    });

    it("cluster references: the clusters the routes and hosts name, and only those", () => {
      const rc = syntheticConfig([
        { name: "a", domains: ["a.example.com"], routes: [
          { name: "1", match, route: { cluster: "plain" } },
          { name: "2", match, route: { weighted_clusters: { clusters: [{ name: "w-a", weight: 1 }, { cluster_header: "x-cluster", weight: 1 }] } } },
          { name: "3", match, route: { cluster: "mirrored", request_mirror_policies: [{ cluster: "route-mirror" }] } },
          { name: "4", match, redirect: { host_redirect: "cluster.example.com" } },
          { name: "5", match, route: { cluster_header: "x-target" } },
        ] },
        { name: "b", domains: ["b.example.com"], request_mirror_policies: [{ cluster: "host-mirror" }] },
      ], false);
      const r = expectFullEquivalent(deepFreeze(rc), "refs");
      expect(r.clusterRefs).to.deep.equal(["host-mirror", "mirrored", "plain", "route-mirror", "w-a"]);
      expect(r.clusterRefs).to.deep.equal(clustersNamedBy(rc));
    });
  });

  describe("resources of another shape fall back to the caller's whole-resource check", () => {
    const route = { name: "r", match: { prefix: "/" }, route: { cluster: "c" } };
    const okHost = { name: "h", domains: ["h.example.com"], routes: [route] };
    const shapes: [string, unknown][] = [
      ["null", null],
      ["a string", "routes"],
      ["a list", [okHost]],
      ["no virtual_hosts", { name: "rc" }],
      ["virtual_hosts: null", { name: "rc", virtual_hosts: null }],
      ["both virtual_hosts and virtualHosts", { name: "rc", virtual_hosts: [okHost], virtualHosts: [okHost] }],
      ["virtual_hosts not a list", { name: "rc", virtual_hosts: { h: okHost } }],
      ["a host that is a string", { name: "rc", virtual_hosts: [okHost, "h2"] }],
      ["a host that is null", { name: "rc", virtual_hosts: [null] }],
      ["a host that is a list", { name: "rc", virtual_hosts: [[okHost]] }],
      ["routes not a list", { name: "rc", virtual_hosts: [{ ...okHost, routes: { r: route } }] }],
      ["a route that is a string", { name: "rc", virtual_hosts: [{ ...okHost, routes: [route, "r2"] }] }],
      ["a route that is null", { name: "rc", virtual_hosts: [{ ...okHost, routes: [null] }] }],
      ["a route that is a list", { name: "rc", virtual_hosts: [{ ...okHost, routes: [[route]] }] }],
    ];
    for (const [title, resource] of shapes) {
      it(`${title}: undefined`, () => {
        expect(encodeRouteConfiguration(resource)).to.equal(undefined);
        expect(encodeRouteConfiguration(deepFreeze(clone(resource)))).to.equal(undefined);
      });
    }

    it("the snapshot then checks the whole resource: the same issues, or the same bytes", () => {
      const invalid = { name: "rc", virtual_hosts: [okHost, "h2"] };
      let error: unknown;
      try {
        buildSnapshot({ routes: [{ name: "rc", typeUrl: RC, resource: invalid }] });
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(SnapshotError);
      const reported = (error as SnapshotError).issues.map((i) => ({ path: i.path, message: i.message }));
      expect(sortedIssues(reported)).to.deep.equal(sortedIssues(validateEnvoyResource(RC, invalid)));
      // A valid resource of another shape (no virtual_hosts) is still encoded, whole.
      const snapshot = buildSnapshot({ routes: [{ name: "rc", typeUrl: RC, resource: { name: "rc" } }] });
      const entry = snapshot.resources[RC].get("rc")!;
      expect(Buffer.from(entry.value).equals(fullBytes({ name: "rc" }))).to.equal(true);
    });

    it("the snapshot uses the incremental encoding for the usual shape", () => {
      const rc = syntheticConfig([syntheticHost("h", ["h.example.com"], [route])]);
      const snapshot = buildSnapshot({ routes: [{ name: "synthetic", typeUrl: RC, resource: rc }] });
      const entry = snapshot.resources[RC].get("synthetic")!;
      const encoded = encode(rc);
      expect(Buffer.from(entry.value).equals(fullBytes(rc))).to.equal(true);
      expect(entry.version).to.equal(encoded.version);
      expect(entry.clusterRefs).to.deep.equal(["c", "mirror-h"]);
    });
  });
});

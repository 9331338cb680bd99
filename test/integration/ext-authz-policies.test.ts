import { expect } from "chai";
import type { Redis } from "ioredis";
import { connectRedis, redisReady, RedisCredentialStore, type ProjectedApplication, type ScopeConfig } from "@apigw/shared";
import { createExtAuthzServer, fixedWindow, planWindow, type ExtAuthzServer } from "../../packages/ext-authz/src/index";
import { TEST_MASTER_KEY } from "../support/environment";
import { ExtAuthzClient, scopeConfig, writeScope, type ScopeEntries, type SimpleCheckResult } from "../support/extAuthzClient";

/*
 * ext_authz plug-ins over real gRPC and Redis (index 3): ipControl (allow/deny, CIDRs, per
 * application, X-Forwarded-For trust) and trafficControl (per API, application and user, with
 * specials and operation-level overrides; fixed windows counted in Redis and shared by replicas).
 */

const REDIS_URL = process.env.EXT_AUTHZ_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3";
const API = "reading-list";
const OPERATION = "GET /books/{id}";
const CTX = { api_id: API, stage: "RELEASE", operation: "GET /books" };
const OP_CTX = { ...CTX, operation: OPERATION };
const CODES: Record<string, string> = { app1: "code-for-app-1-0000000000000000", app2: "code-for-app-2-0000000000000000" };

const app = (appId: string): ProjectedApplication => ({ appId, name: appId, status: "ENABLED", extInfo: null, authorizationExpiresAt: null });

describe("ext_authz: ipControl and trafficControl", function () {
  let redis: Redis;
  let store: RedisCredentialStore;
  let server: ExtAuthzServer;
  let replica: ExtAuthzServer;
  let trusting: ExtAuthzServer;
  let client: ExtAuthzClient;
  let replicaClient: ExtAuthzClient;
  let trustingClient: ExtAuthzClient;
  /** The servers' clock: fixed in the middle of a minute, so that a test never straddles a window. */
  let clock = 0;
  const now = () => clock;

  before(async () => {
    redis = connectRedis({ url: REDIS_URL }) as Redis;
    await redisReady(redis);
    store = new RedisCredentialStore(redis);
    const common = { port: 0, host: "127.0.0.1", now };
    server = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: common });
    replica = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: common });
    trusting = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { ...common, trustForwardedFor: true } });
    client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
    replicaClient = new ExtAuthzClient(`127.0.0.1:${replica.port}`);
    trustingClient = new ExtAuthzClient(`127.0.0.1:${trusting.port}`);
  });

  after(async () => {
    for (const c of [client, replicaClient, trustingClient]) c?.close();
    for (const s of [server, replica, trusting]) await s?.close(1000);
    await redis?.flushdb();
    await store?.close();
  });

  beforeEach(async () => {
    await redis.flushdb();
    clock = Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
  });

  async function scope(partial: Partial<ScopeConfig>, entries: ScopeEntries = {}) {
    await writeScope(store, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", partial), entries);
  }

  /** Anonymous scope, or with AppCodes for app1/app2 when `apps` is set. */
  const withApps = (partial: Partial<ScopeConfig>) =>
    scope(
      { accepts: { appAuth: { signature: false, signatureMethods: ["HmacSHA256"], appCode: "HEADER", forceNonceCheck: false } }, ...partial },
      { apps: Object.entries(CODES).map(([appId, appCode]) => ({ appCode, app: app(appId) })) },
    );
  const asApp = (appId: string) => ({ authorization: `APPCODE ${CODES[appId]}` });

  function denied(result: SimpleCheckResult, status: number, code: string, message: string) {
    expect(result.allowed, JSON.stringify(result.json)).to.equal(false);
    expect(result.status).to.equal(status);
    expect(result.json).to.deep.equal({ code, message });
    expect(result.headers["x-ca-error-message"]).to.equal(message);
    expect(result.headers["x-ca-error-code"]).to.equal(code);
  }

  describe("ipControl", () => {
    it("a deny list (addresses and CIDRs) refuses with 403 IP Not Allowed; other addresses pass", async () => {
      await scope({ ipControl: { deny: ["198.51.100.7", "10.0.0.0/8", "2001:db8::/32"] } });
      denied(await client.check({ path: "/books", sourceAddress: "198.51.100.7", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      denied(await client.check({ path: "/books", sourceAddress: "10.20.30.40", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      denied(await client.check({ path: "/books", sourceAddress: "2001:db8::1", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      denied(await client.check({ path: "/books", sourceAddress: "::ffff:10.1.1.1", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      expect((await client.check({ path: "/books", sourceAddress: "198.51.100.8", contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", sourceAddress: "2001:db9::1", contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("an allow list lets only its addresses in; an unknown client address is refused", async () => {
      await scope({ ipControl: { allow: ["192.0.2.0/24", "::1"] } });
      expect((await client.check({ path: "/books", sourceAddress: "192.0.2.99", contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", sourceAddress: "::1", contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", sourceAddress: "192.0.3.1", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      denied(await client.check({ path: "/books", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
    });

    it("deny wins over allow", async () => {
      await scope({ ipControl: { allow: ["192.0.2.0/24"], deny: ["192.0.2.66"] } });
      denied(await client.check({ path: "/books", sourceAddress: "192.0.2.66", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      expect((await client.check({ path: "/books", sourceAddress: "192.0.2.65", contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("per-application rules apply to that application only", async () => {
      await withApps({ ipControl: { applications: [{ applicationId: "app1", allow: ["10.0.0.0/8"] }, { applicationId: "app2", deny: ["172.16.0.0/12"] }] } });
      expect((await client.check({ path: "/books", headers: asApp("app1"), sourceAddress: "10.1.2.3", contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app1"), sourceAddress: "172.16.0.1", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      expect((await client.check({ path: "/books", headers: asApp("app2"), sourceAddress: "10.1.2.3", contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app2"), sourceAddress: "172.20.0.1", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
    });

    it("X-Forwarded-For is ignored unless trusted (by the policy, or by TRUST_FORWARDED_FOR)", async () => {
      await scope({ ipControl: { allow: ["192.0.2.10"] } });
      const spoof = { path: "/books", headers: { "x-forwarded-for": "192.0.2.10" }, sourceAddress: "203.0.113.5", contextExtensions: CTX };
      denied(await client.check(spoof), 403, "A403IP", "IP Not Allowed");
      // The service-wide option trusts it...
      expect((await trustingClient.check(spoof)).allowed).to.equal(true);
      // ...unless the policy says not to.
      await scope({ ipControl: { allow: ["192.0.2.10"], trustForwardedFor: false } });
      denied(await trustingClient.check(spoof), 403, "A403IP", "IP Not Allowed");
      // The policy can turn it on for one API.
      await scope({ ipControl: { allow: ["192.0.2.10"], trustForwardedFor: true } });
      expect((await client.check(spoof)).allowed).to.equal(true);
    });

    it("with a depth, the entry that many places from the right is the client; a short header falls back to the peer", async () => {
      await scope({ ipControl: { deny: ["198.51.100.1"], trustForwardedFor: true, forwardedForDepth: 2 } });
      const check = (xff: string) => client.check({ path: "/books", headers: { "x-forwarded-for": xff }, sourceAddress: "203.0.113.5", contextExtensions: CTX });
      denied(await check("1.1.1.1, 198.51.100.1, 10.0.0.2"), 403, "A403IP", "IP Not Allowed");
      // A client prepending a fake address does not move the trusted position.
      expect((await check("198.51.100.1, 1.1.1.1, 10.0.0.2")).allowed).to.equal(true);
      expect((await check("198.51.100.1")).allowed).to.equal(true); // one entry < depth 2: the peer decides
      await scope({ ipControl: { allow: ["192.0.2.0/24"], trustForwardedFor: true } });
      denied(await check("not-an-ip"), 403, "A403IP", "IP Not Allowed");
    });

    it("an operation's ipControl replaces the API's for that operation", async () => {
      await scope({ ipControl: { deny: ["198.51.100.7"] }, operations: { [OPERATION]: { ipControl: { allow: ["198.51.100.7"] } } } });
      denied(await client.check({ path: "/books", sourceAddress: "198.51.100.7", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      expect((await client.check({ path: "/books/1", sourceAddress: "198.51.100.7", contextExtensions: OP_CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books/1", sourceAddress: "198.51.100.8", contextExtensions: OP_CTX }), 403, "A403IP", "IP Not Allowed");
    });

    it("a refused address does not use up the traffic limits", async () => {
      await scope({ ipControl: { deny: ["198.51.100.7"] }, trafficControl: { unit: "MINUTE", apiLimit: 1 } });
      for (let i = 0; i < 3; i++) denied(await client.check({ path: "/books", sourceAddress: "198.51.100.7", contextExtensions: CTX }), 403, "A403IP", "IP Not Allowed");
      expect((await client.check({ path: "/books", sourceAddress: "198.51.100.8", contextExtensions: CTX })).allowed).to.equal(true);
    });
  });

  describe("trafficControl", () => {
    it("apiLimit: the first N requests of a window pass, then 429 Throttled by API Flow Control with Retry-After; the next window starts over", async () => {
      await scope({ trafficControl: { unit: "MINUTE", apiLimit: 2 } });
      const firstWindow = clock - 30_000;
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      const over = await client.check({ path: "/books", contextExtensions: CTX });
      denied(over, 429, "A429AP", "Throttled by API Flow Control");
      expect(over.headers["retry-after"]).to.equal("30");
      clock += 60_000;
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      // The counter key names the window start (UTC-aligned); it expires after the window.
      const keys = (await redis.keys("apigw:count:tc:*")).sort();
      expect(keys).to.deep.equal([
        `apigw:count:tc:${API}:RELEASE:api:api:MINUTE:${firstWindow}`,
        `apigw:count:tc:${API}:RELEASE:api:api:MINUTE:${firstWindow + 60_000}`,
      ]);
      expect(await redis.get(keys[0]!)).to.equal("3");
      expect(await redis.get(keys[1]!)).to.equal("1");
      const ttl = await redis.ttl(keys[1]!);
      expect(ttl).to.be.within(60, 65);
    });

    it("counters are shared by replicas", async () => {
      await scope({ trafficControl: { unit: "HOUR", apiLimit: 3 } });
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      expect((await replicaClient.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      denied(await replicaClient.check({ path: "/books", contextExtensions: CTX }), 429, "A429AP", "Throttled by API Flow Control");
    });

    it("concurrent requests are counted atomically", async () => {
      await scope({ trafficControl: { unit: "DAY", apiLimit: 25 } });
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? client : replicaClient).check({ path: "/books", contextExtensions: CTX })));
      expect(results.filter((r) => r.allowed)).to.have.length(25);
      expect(results.filter((r) => r.status === 429)).to.have.length(15);
    });

    it("appLimit counts per application", async () => {
      await withApps({ trafficControl: { unit: "SECOND", appLimit: 1 } });
      expect((await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", headers: asApp("app2"), contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX }), 429, "A429AA", "Throttled by APP Flow Control");
      clock += 1000;
      expect((await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("userLimit counts per user (the API key's name); a USER special raises one user's limit", async () => {
      await scope(
        { accepts: { apiKey: { in: "header", name: "API-Key" } }, trafficControl: { unit: "MINUTE", userLimit: 1, specials: [{ type: "USER", key: "vip", limit: 3 }] } },
        {
          apiKeys: [
            { raw: "apip_a", key: { name: "alice", status: "active", expiresAt: null } },
            { raw: "apip_a2", key: { name: "alice", status: "grace", expiresAt: new Date(Date.now() + 3_600_000).toISOString() } },
            { raw: "apip_v", key: { name: "vip", status: "active", expiresAt: null } },
          ],
        },
      );
      const as = (key: string) => client.check({ path: "/books", headers: { "api-key": key }, contextExtensions: CTX });
      expect((await as("apip_a")).allowed).to.equal(true);
      // The same user through its previous key value shares the count.
      denied(await as("apip_a2"), 429, "A429AU", "Throttled by USER Flow Control");
      for (let i = 0; i < 3; i++) expect((await as("apip_v")).allowed, `vip ${i + 1}`).to.equal(true);
      denied(await as("apip_v"), 429, "A429AU", "Throttled by USER Flow Control");
    });

    it("an APP special overrides appLimit for that application", async () => {
      await withApps({ trafficControl: { unit: "MINUTE", appLimit: 1, specials: [{ type: "APP", key: "app2", limit: 2 }] } });
      expect((await client.check({ path: "/books", headers: asApp("app2"), contextExtensions: CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books", headers: asApp("app2"), contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app2"), contextExtensions: CTX }), 429, "A429AA", "Throttled by APP Flow Control");
      expect((await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX }), 429, "A429AA", "Throttled by APP Flow Control");
    });

    it("an operation's trafficControl replaces the API's, with counters of its own", async () => {
      await scope({ trafficControl: { unit: "MINUTE", apiLimit: 1 }, operations: { [OPERATION]: { trafficControl: { unit: "MINUTE", apiLimit: 2 } } } });
      expect((await client.check({ path: "/books", contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", contextExtensions: CTX }), 429, "A429AP", "Throttled by API Flow Control");
      expect((await client.check({ path: "/books/1", contextExtensions: OP_CTX })).allowed).to.equal(true);
      expect((await client.check({ path: "/books/2", contextExtensions: OP_CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books/3", contextExtensions: OP_CTX }), 429, "A429AP", "Throttled by API Flow Control");
      // Operations without their own rule share the API's counter.
      denied(await client.check({ path: "/authors", contextExtensions: { ...CTX, operation: "GET /authors" } }), 429, "A429AP", "Throttled by API Flow Control");
      const keys = await redis.keys("apigw:count:tc:*op=*");
      expect(keys).to.have.length(1);
      expect(keys[0]).to.include(`op=${encodeURIComponent(OPERATION)}`);
      expect(keys[0]).to.not.match(/[{} ]/);
    });

    it("the API limit is checked first, then the application's, then the user's", async () => {
      await withApps({ trafficControl: { unit: "MINUTE", apiLimit: 1, appLimit: 1, userLimit: 1 } });
      expect((await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX })).allowed).to.equal(true);
      denied(await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX }), 429, "A429AP", "Throttled by API Flow Control");
      await withApps({ trafficControl: { unit: "MINUTE", appLimit: 1, userLimit: 1 } });
      denied(await client.check({ path: "/books", headers: asApp("app1"), contextExtensions: CTX }), 429, "A429AA", "Throttled by APP Flow Control");
    });
  });

  describe("window arithmetic", () => {
    it("fixed windows are aligned to UTC boundaries and expire a little after they end", () => {
      const t = Date.UTC(2026, 2, 14, 13, 37, 42, 123);
      expect(fixedWindow("SECOND", t)).to.deep.equal({ start: Date.UTC(2026, 2, 14, 13, 37, 42), end: Date.UTC(2026, 2, 14, 13, 37, 43), ttlSeconds: 6 });
      expect(fixedWindow("MINUTE", t).start).to.equal(Date.UTC(2026, 2, 14, 13, 37));
      expect(fixedWindow("HOUR", t)).to.deep.equal({ start: Date.UTC(2026, 2, 14, 13), end: Date.UTC(2026, 2, 14, 14), ttlSeconds: 3605 });
      expect(fixedWindow("DAY", t).start).to.equal(Date.UTC(2026, 2, 14));
      expect(planWindow("Min", t).start).to.equal(Date.UTC(2026, 2, 14, 13, 37));
    });

    it("a plan's Month is the UTC calendar month", () => {
      const t = Date.UTC(2028, 1, 29, 23, 59, 59);
      const w = planWindow("Month", t);
      expect(w.start).to.equal(Date.UTC(2028, 1, 1));
      expect(w.end).to.equal(Date.UTC(2028, 2, 1));
      expect(w.ttlSeconds).to.equal(1 + 5);
      expect(planWindow("Month", Date.UTC(2026, 11, 31, 12)).end).to.equal(Date.UTC(2027, 0, 1));
    });
  });
});

import { expect } from "chai";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import {
  DIRECTORY_SCOPE,
  MemoryCredentialStore,
  RedisCredentialStore,
  SecretBox,
  connectRedis,
  redisReady,
  scopeKey,
  sha256Hex,
  type CredentialStore,
  type ProjectedApiKey,
  type ProjectedApplication,
  type ProjectedSubscription,
  type ScopeConfig,
  type ScopeRef,
} from "@apigw/shared";
import { projectScope } from "../../packages/control-plane/src/projection/project";
import { CredentialProjector } from "../../packages/control-plane/src/projection/projector";
import type { CredentialData } from "../../packages/control-plane/src/store/reads/credentials";
import { loadCredentialData } from "../../packages/control-plane/src/store/reads/credentials";
import { CHANGE_CHANNEL, currentRevision } from "../../packages/control-plane/src/store/changes";
import type { Database } from "../../packages/control-plane/src/store/database";
import { del, post, put } from "../support/client";
import { TEST_MASTER_KEY } from "../support/environment";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { sleep, waitFor } from "../support/wait";

/** Its own Redis database (flushed by these tests): PROJECTION_TEST_REDIS_URL, else db 4. */
const REDIS_URL = process.env.PROJECTION_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/4";
const API = "reading-list-api-v1.0";
const OTHER = "petstore-v1";
const RELEASE: ScopeRef = { apiId: API, stage: "RELEASE" };
const TEST: ScopeRef = { apiId: API, stage: "TEST" };
const TOKEN = "sub-token-projection-0123456789";
const box = new SecretBox(TEST_MASTER_KEY);
const latencies: number[] = [];


function newProjector(store: CredentialStore, extra: Partial<ConstructorParameters<typeof CredentialProjector>[0]> = {}) {
  const registry = new Registry();
  const projector = new CredentialProjector({
    knex: harness().database.knex,
    database: harness().database,
    store,
    logger: harness().logger,
    metrics: registry,
    ...extra,
  });
  return { projector, registry };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  const values = data.values.filter((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l));
  if (String(data.type) === "histogram") return values.filter((v) => (v as { metricName?: string }).metricName?.endsWith("_count")).reduce((s, v) => s + v.value, 0);
  return values.reduce((s, v) => s + v.value, 0);
}

/** A deployed API with a sandbox, API key, subscription and app credentials, and a per-operation IP rule. */
function credentialApi(name = API, spec: Record<string, unknown> = {}) {
  return restApi(name, {
    upstream: { main: { url: "http://books:8080" }, sandbox: { url: "http://books-sandbox:8080" } },
    policies: [
      { name: "api-key-auth", version: "v1", params: { key: "X-API-Key", in: "header" } },
      { name: "subscription-key-auth", version: "v1", params: {} },
      { name: "app-auth", version: "v1", params: { signature: true, appCode: "HEADER_QUERY", signatureMethods: ["HmacSHA256"] } },
    ],
    operations: [
      { method: "GET", path: "/books", policies: [{ name: "ip-control", version: "v1", params: { deny: ["192.0.2.0/24"] } }] },
      { method: "POST", path: "/books" },
    ],
    ...spec,
  });
}

async function created(reply: Promise<{ status: number; text: string; body: any }>, status = 201): Promise<any> {
  const r = await reply;
  expect(r.status, r.text).to.equal(status);
  return r.body;
}

/** Everything in Redis db 4, field names and values included, as one list of strings. */
async function everythingStored(redis: RedisCredentialStore["redis"]): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await (redis as any).scan(cursor, "COUNT", 1000);
    cursor = next;
    for (const key of keys as string[]) {
      out.push(key);
      const type = await (redis as any).type(key);
      if (type === "hash") out.push(...Object.entries((await (redis as any).hgetall(key)) as Record<string, string>).flat());
      else if (type === "string") out.push(String(await (redis as any).get(key)));
    }
  } while (cursor !== "0");
  return out;
}

describe("credential projection", function () {
  let reader: RedisCredentialStore;
  let writer: RedisCredentialStore;
  let projector: CredentialProjector | undefined;
  let registry: Registry;

  const hgetall = (scope: ScopeRef) => (reader.redis as any).hgetall(scopeKey(scope)) as Promise<Record<string, string>>;
  const field = async (scope: ScopeRef, name: string) => (await reader.readFields(scope, [name]))[0] ?? null;
  /** Waits until every committed change is projected, then answers the scope's config. */
  const caughtUp = async (scope: ScopeRef = RELEASE): Promise<ScopeConfig> => {
    const revision = await currentRevision(harness().database.knex);
    await waitFor(`the projection at revision ${revision}`, () => {
      const status = projector!.status();
      return status.revision >= revision && status.pendingApis === 0 ? true : undefined;
    });
    const config = await field(scope, "config");
    expect(config, `config of ${scopeKey(scope)}`).to.be.a("string");
    return JSON.parse(config!) as ScopeConfig;
  };

  before(async () => {
    reader = new RedisCredentialStore(connectRedis({ url: REDIS_URL }));
    writer = new RedisCredentialStore(connectRedis({ url: REDIS_URL }));
    await Promise.all([redisReady(reader.redis), redisReady(writer.redis)]);
  });

  beforeEach(async () => {
    await (reader.redis as any).flushdb();
    ({ projector, registry } = newProjector(writer));
    await projector.start();
  });

  afterEach(async () => {
    await projector?.stop();
    projector = undefined;
  });

  after(async () => {
    await reader.close();
    await writer.close();
    if (latencies.length) {
      const sorted = [...latencies].sort((a, b) => a - b);
      process.stdout.write(`      revoke/disable → Redis after the HTTP response: ${sorted.map((l) => `${l} ms`).join(", ")} (max ${sorted.at(-1)} ms)\n`);
    }
  });

  describe("projectScope (pure)", () => {
    const data = (): CredentialData => ({
      revision: 7,
      apiId: "api-1",
      stage: "RELEASE",
      deployed: true,
      accepts: { apiKey: { in: "header", name: "API-Key" } },
      apiKeys: [
        { name: "b", hash: "bb", status: "active", expiresAt: null },
        { name: "a", hash: "aa", status: "active", expiresAt: "2030-01-01T00:00:00.000Z" },
        { name: "a", hash: "a0", status: "grace", expiresAt: "2029-01-01T00:00:00.000Z" },
        { name: "dup", hash: "bb", status: "expired", expiresAt: "2020-01-01T00:00:00.000Z" },
      ],
      subscriptions: [{ id: "s1", tokenHash: "t1", status: "ACTIVE", applicationId: null, plan: null }],
      applications: [
        {
          id: "app-1",
          name: "reading-app",
          status: "ENABLED",
          appCodeHash: "c1",
          extInfo: null,
          keyPairs: [
            { appKey: "k2", secretSealed: "v1.sealed2" },
            { appKey: "k1", secretSealed: "v1.sealed1" },
          ],
          authorization: { id: "z1", expiresAt: null },
        },
      ],
      operations: { "POST /x": { ipControl: { allow: ["10.0.0.1"] } }, "GET /x": { ipControl: { deny: ["10.0.0.2"] } } },
    });

    it("names one field per credential, sorted, with the contract's JSON", () => {
      const fields = projectScope(data());
      expect(Object.keys(fields)).to.deep.equal(["app:k1", "app:k2", "code:c1", "config", "key:a0", "key:aa", "key:bb", "sub:t1"]);
      expect(JSON.parse(fields["key:a0"]!)).to.deep.equal({ name: "a", status: "grace", expiresAt: "2029-01-01T00:00:00.000Z" });
      expect(JSON.parse(fields["app:k1"]!)).to.deep.equal({
        appId: "app-1",
        name: "reading-app",
        status: "ENABLED",
        extInfo: null,
        authorizationExpiresAt: null,
        secretSealed: "v1.sealed1",
        appKey: "k1",
      });
      expect(JSON.parse(fields["code:c1"]!)).to.not.have.any.keys("secretSealed", "appKey");
      expect(JSON.parse(fields["sub:t1"]!)).to.deep.equal({ id: "s1", status: "ACTIVE", applicationId: null, plan: null });
      const config = JSON.parse(fields.config!) as ScopeConfig;
      expect(config).to.deep.equal({
        revision: 7,
        apiId: "api-1",
        stage: "RELEASE",
        deployed: true,
        accepts: { apiKey: { in: "header", name: "API-Key" } },
        operations: { "GET /x": { ipControl: { deny: ["10.0.0.2"] } }, "POST /x": { ipControl: { allow: ["10.0.0.1"] } } },
      });
      expect(Object.keys(config.operations)).to.deep.equal(["GET /x", "POST /x"]);
    });

    it("keeps an admitting key over an expired one with the same hash, and is deterministic", () => {
      const fields = projectScope(data());
      expect(JSON.parse(fields["key:bb"]!)).to.include({ name: "b", status: "active" });
      const shuffled = data();
      shuffled.apiKeys.reverse();
      shuffled.applications[0]!.keyPairs.reverse();
      expect(JSON.stringify(projectScope(shuffled))).to.equal(JSON.stringify(fields));
    });
  });

  describe("projecting the REST API's writes", () => {
    it("writes every credential of both stages as hashes and JSON, and no raw credential anywhere", async () => {
      await created(post("/rest-apis", credentialApi()));
      const alpha = (await created(post(`/rest-apis/${API}/api-keys`, { name: "alpha" }, { as: "consumer" }))).apiKey.apiKey as string;
      const betaOld = (await created(post(`/rest-apis/${API}/api-keys`, { name: "beta", expiresIn: { unit: "days", duration: 10 } }, { as: "consumer" }))).apiKey;
      const regenerated = await created(post(`/rest-apis/${API}/api-keys/beta/regenerate`, { gracePeriod: { unit: "hours", duration: 1 } }, { as: "consumer" }), 200);
      const betaNew = regenerated.apiKey;
      const plan = await created(post("/subscription-plans", { planName: "Gold", throttleLimitCount: 100, throttleLimitUnit: "Min", stopOnQuotaReach: true }));
      const app = (await created(post("/applications", { name: "reading-app", extInfo: '{"tenant":"acme"}' }))).application;
      const subscription = await created(post("/subscriptions", { apiId: API, subscriptionToken: TOKEN, subscriptionPlanId: plan.id, applicationId: app.id, status: "ACTIVE" }));
      const pair2 = (await created(post(`/applications/${app.id}/key-pairs`, {}))).keyPair;
      const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
      await created(post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", expiresAt }));
      const plugin = (await created(post("/plugins", { name: "office-ips", type: "ipControl", params: { allow: ["10.0.0.0/8"], trustForwardedFor: true } }))).plugin;
      await created(post(`/plugins/${plugin.id}/bindings`, { apiIds: [API], stage: "RELEASE" }));

      const config = await caughtUp(RELEASE);
      await caughtUp(TEST);
      const release = await hgetall(RELEASE);
      const test = await hgetall(TEST);
      const pair1 = app.keyPairs[0];
      const keyFields = [`key:${sha256Hex(alpha)}`, `key:${sha256Hex(betaNew.apiKey)}`, `key:${sha256Hex(betaOld.apiKey)}`];
      expect(Object.keys(release).sort()).to.deep.equal(
        ["config", ...keyFields, `sub:${sha256Hex(TOKEN)}`, `app:${pair1.appKey}`, `app:${pair2.appKey}`, `code:${sha256Hex(app.appCode)}`].sort(),
      );
      // The application is authorized for RELEASE only.
      expect(Object.keys(test).sort()).to.deep.equal(["config", ...keyFields, `sub:${sha256Hex(TOKEN)}`].sort());

      expect(config).to.deep.equal({
        revision: await currentRevision(harness().database.knex),
        apiId: API,
        stage: "RELEASE",
        deployed: true,
        accepts: {
          apiKey: { in: "header", name: "X-API-Key" },
          subscriptionKey: { header: "Subscription-Key" },
          appAuth: { signature: true, signatureMethods: ["HmacSHA256"], appCode: "HEADER_QUERY", forceNonceCheck: false },
        },
        ipControl: { allow: ["10.0.0.0/8"], trustForwardedFor: true },
        operations: { "GET /books": { ipControl: { deny: ["192.0.2.0/24"] } } },
      } satisfies ScopeConfig);
      const testConfig = JSON.parse(test.config!) as ScopeConfig;
      expect(testConfig.stage).to.equal("TEST");
      expect(testConfig).to.not.have.property("ipControl"); // bound to RELEASE only

      expect(JSON.parse(release[`key:${sha256Hex(alpha)}`]!)).to.deep.equal({ name: "alpha", status: "active", expiresAt: null } satisfies ProjectedApiKey);
      expect(JSON.parse(release[`key:${sha256Hex(betaNew.apiKey)}`]!)).to.deep.equal({ name: "beta", status: "active", expiresAt: betaNew.expiresAt });
      expect(JSON.parse(release[`key:${sha256Hex(betaOld.apiKey)}`]!)).to.deep.equal({ name: "beta", status: "grace", expiresAt: regenerated.previousKeyValidUntil });
      expect(JSON.parse(release[`sub:${sha256Hex(TOKEN)}`]!)).to.deep.equal({
        id: subscription.id,
        status: "ACTIVE",
        applicationId: app.id,
        plan: { id: plan.id, name: "Gold", status: "ACTIVE", throttleLimitCount: 100, throttleLimitUnit: "Min", stopOnQuotaReach: true, expiryTime: null },
      } satisfies ProjectedSubscription);
      const common = { appId: app.id, name: "reading-app", status: "ENABLED", extInfo: '{"tenant":"acme"}', authorizationExpiresAt: expiresAt } as const;
      expect(JSON.parse(release[`code:${sha256Hex(app.appCode)}`]!)).to.deep.equal(common satisfies ProjectedApplication);
      for (const pair of [pair1, pair2]) {
        const projected = JSON.parse(release[`app:${pair.appKey}`]!) as ProjectedApplication;
        expect(projected).to.deep.include({ ...common, appKey: pair.appKey });
        expect(box.decrypt(projected.secretSealed!, pair.appKey)).to.equal(pair.appSecret);
      }

      // Exactly what projectScope makes of a fresh snapshot.
      const fresh = await loadCredentialData(harness().database.knex, API, "RELEASE");
      expect(release).to.deep.equal(projectScope(fresh!));

      const stored = (await everythingStored(reader.redis)).join("\n");
      for (const raw of [alpha, betaOld.apiKey, betaNew.apiKey, TOKEN, app.appCode, pair1.appSecret, pair2.appSecret]) {
        expect(stored).to.not.include(raw);
      }
      expect(await reader.getMeta("revision")).to.equal(String(config.revision));
      expect(projector!.status()).to.include({ lagging: false, lastError: null, revision: config.revision, scopes: 2, pendingApis: 0 });
      expect(await metricValue(registry, "apigw_projection_scopes")).to.equal(2);
    });

    it("removes a revoked key's field soon after the HTTP response", async () => {
      await created(post("/rest-apis", credentialApi()));
      const keep = (await created(post(`/rest-apis/${API}/api-keys`, { name: "keep" }))).apiKey.apiKey as string;
      const doomed = (await created(post(`/rest-apis/${API}/api-keys`, { name: "doomed" }))).apiKey.apiKey as string;
      await caughtUp(RELEASE);
      for (const scope of [RELEASE, TEST]) expect(await field(scope, `key:${sha256Hex(doomed)}`)).to.be.a("string");

      const reply = await del(`/rest-apis/${API}/api-keys/doomed`);
      const answeredAt = Date.now();
      expect(reply.status, reply.text).to.equal(200);
      await waitFor("the revoked key to disappear", async () => ((await field(RELEASE, `key:${sha256Hex(doomed)}`)) === null ? true : undefined), 5000, 1);
      latencies.push(Date.now() - answeredAt);
      await waitFor("the TEST scope too", async () => ((await field(TEST, `key:${sha256Hex(doomed)}`)) === null ? true : undefined), 5000, 1);
      expect(await field(RELEASE, `key:${sha256Hex(keep)}`)).to.be.a("string");
    });

    it("shows a disabled application as DISABLED in its app: and code: fields soon after", async () => {
      await created(post("/rest-apis", credentialApi()));
      const app = (await created(post("/applications", { name: "reading-app" }))).application;
      await created(post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE" }));
      await caughtUp(RELEASE);
      const fields = [`app:${app.keyPairs[0].appKey}`, `code:${sha256Hex(app.appCode)}`];
      for (const name of fields) expect(JSON.parse((await field(RELEASE, name))!).status).to.equal("ENABLED");

      const reply = await post(`/applications/${app.id}/disable`);
      const answeredAt = Date.now();
      expect(reply.status, reply.text).to.equal(200);
      await waitFor(
        "DISABLED in both fields",
        async () => {
          const values = await reader.readFields(RELEASE, fields);
          return values.every((v) => v && JSON.parse(v).status === "DISABLED") ? true : undefined;
        },
        5000,
        1,
      );
      latencies.push(Date.now() - answeredAt);

      await created(post(`/applications/${app.id}/enable`), 200);
      await waitFor("ENABLED again", async () => (JSON.parse((await field(RELEASE, fields[1]!))!).status === "ENABLED" ? true : undefined));
    });

    it("follows authorizations, subscriptions and plug-in bindings as they change", async () => {
      await created(post("/rest-apis", credentialApi()));
      const app = (await created(post("/applications", { name: "reading-app" }))).application;
      const authorization = (await created(post("/authorizations", { applicationId: app.id, apiId: API, stage: "TEST" }))).authorization;
      const subscription = await created(post("/subscriptions", { apiId: API, subscriptionToken: TOKEN }));
      await caughtUp(TEST);
      expect(await field(TEST, `code:${sha256Hex(app.appCode)}`)).to.be.a("string");
      expect(await field(RELEASE, `code:${sha256Hex(app.appCode)}`)).to.equal(null);

      await created(put(`/subscriptions/${subscription.id}`, { status: "REVOKED" }), 200);
      await created(del(`/authorizations/${authorization.id}`), 200);
      await caughtUp(TEST);
      expect(await field(TEST, `code:${sha256Hex(app.appCode)}`)).to.equal(null);
      expect(JSON.parse((await field(RELEASE, `sub:${sha256Hex(TOKEN)}`))!).status).to.equal("REVOKED");

      const plugin = (await created(post("/plugins", { name: "limits", type: "trafficControl", params: { unit: "MINUTE", apiLimit: 10 } }))).plugin;
      await created(post(`/plugins/${plugin.id}/bindings`, { apiIds: [API], stage: "TEST" }));
      expect((await caughtUp(TEST)).trafficControl).to.deep.equal({ unit: "MINUTE", apiLimit: 10 });
      await created(put(`/plugins/${plugin.id}`, { name: "limits", type: "trafficControl", params: { unit: "MINUTE", apiLimit: 20 } }), 200);
      expect((await caughtUp(TEST)).trafficControl).to.deep.equal({ unit: "MINUTE", apiLimit: 20 });
    });

    it("deletes both scopes of a deleted API, and the TEST scope when the sandbox goes", async () => {
      await created(post("/rest-apis", credentialApi()));
      await created(post("/rest-apis", otherApi(OTHER, { upstream: { main: { url: "http://pets:8080" }, sandbox: { url: "http://pets-sandbox:8080" } } })));
      await caughtUp(RELEASE);
      await caughtUp({ apiId: OTHER, stage: "TEST" });
      expect((await writer.listScopes()).map(scopeKey).sort()).to.have.length(4);

      await created(put(`/rest-apis/${OTHER}`, otherApi(OTHER, { upstream: { main: { url: "http://pets:8080" } } })), 200);
      await caughtUp({ apiId: OTHER, stage: "RELEASE" });
      expect(await hgetall({ apiId: OTHER, stage: "TEST" })).to.deep.equal({});

      await created(del(`/rest-apis/${API}`), 200);
      await waitFor("the API's scopes to go", async () => ((await writer.listScopes()).length === 1 ? true : undefined));
      expect(await writer.listScopes()).to.deep.equal([{ apiId: OTHER, stage: "RELEASE" }]);
      expect(projector!.status().scopes).to.equal(1);
    });

    it("writes no scope for a change that affects no API (only the directory for an application), and coalesces a burst into one batch", async () => {
      await created(post("/rest-apis", credentialApi("plain-api", { upstream: { main: { url: "http://plain:8080" } } })));
      await caughtUp({ apiId: "plain-api", stage: "RELEASE" });
      const writes = await metricValue(registry, "apigw_projection_scope_writes_total");
      const batches = await metricValue(registry, "apigw_projection_delay_seconds");

      await created(post("/subscription-plans", { planName: "Unused" })); // names no API: no batch at all
      const lonely = (await created(post("/applications", { name: "lonely-app" }))).application; // authorized nowhere
      const planRevision = await currentRevision(harness().database.knex);
      await waitFor("the revision to move", () => (projector!.status().revision === planRevision ? true : undefined));
      expect(await metricValue(registry, "apigw_projection_scope_writes_total")).to.equal(writes);
      // One batch, for the application's entries in the application directory only.
      expect(await metricValue(registry, "apigw_projection_delay_seconds")).to.equal(batches + 1);
      expect(await metricValue(registry, "apigw_projection_directory_writes_total", { op: "update" })).to.equal(1);
      expect(await field(DIRECTORY_SCOPE, `code:${sha256Hex(lonely.appCode)}`)).to.equal(JSON.stringify({ appId: lonely.id, enabled: true }));

      // 20 notifications committed together arrive together: one batch, one write.
      const revision = planRevision + 1;
      await harness().database.knex.raw(
        `SELECT pg_notify(?, json_build_object('revision', ?::int + n, 'changes', json_build_array(json_build_object('entity','api_key','id',n::text,'op','update','apiIds',json_build_array(?::text))))::text) FROM generate_series(0, 19) AS n`,
        [CHANGE_CHANNEL, revision, "plain-api"],
      );
      await waitFor("the burst", () => (projector!.status().revision === revision + 19 ? true : undefined));
      expect(await metricValue(registry, "apigw_projection_scope_writes_total")).to.equal(writes + 1);
      expect(await metricValue(registry, "apigw_projection_delay_seconds")).to.equal(batches + 2);
    });
  });

  describe("full rebuilds", () => {
    it("rebuilds everything on a truncated notification", async () => {
      await created(post("/rest-apis", credentialApi()));
      const app = (await created(post("/applications", { name: "reading-app" }))).application;
      await created(post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE" }));
      await caughtUp(RELEASE);
      const rebuiltAt = projector!.status().lastRebuildAt;
      // A change that was never announced, then a notification too long to list its changes.
      await harness().database.knex("applications").where({ id: app.id }).update({ status: "DISABLED" });
      await harness().database.knex.raw("SELECT pg_notify(?, ?)", [CHANGE_CHANNEL, JSON.stringify({ revision: 999, changes: [], truncated: true })]);
      await waitFor("the rebuild", () => (projector!.status().lastRebuildAt !== rebuiltAt ? true : undefined));
      expect(JSON.parse((await field(RELEASE, `code:${sha256Hex(app.appCode)}`))!).status).to.equal("DISABLED");
      expect(await metricValue(registry, "apigw_projection_rebuild_requests_total", { reason: "truncated notification" })).to.equal(1);
      await waitFor("revision 999", () => (projector!.status().revision === 999 ? true : undefined));
    });

    it("rebuilds everything when the change listener reconnects", async () => {
      await projector!.stop();
      let reconnected: (() => void) | undefined;
      const database: Pick<Database, "listen"> = {
        listen: (channel, handler, onReconnect) => {
          reconnected = onReconnect;
          return harness().database.listen(channel, handler, onReconnect);
        },
      };
      const store = new MemoryCredentialStore();
      ({ projector, registry } = newProjector(store, { database }));
      await projector.start();
      await created(post("/rest-apis", credentialApi()));
      await waitFor("the API", async () => ((await store.listScopes()).length === 2 ? true : undefined));
      await harness().database.knex("rest_apis").where({ handle: API }).delete(); // missed while disconnected
      reconnected!();
      await waitFor("the rebuild to drop the API", async () => ((await store.listScopes()).length === 0 ? true : undefined));
      expect(await metricValue(registry, "apigw_projection_rebuild_requests_total", { reason: "change listener reconnected" })).to.equal(1);
      await store.close();
    });

    it("removes scopes Postgres does not know and keeps the rest", async () => {
      await created(post("/rest-apis", credentialApi("plain-api", { upstream: { main: { url: "http://plain:8080" } } })));
      const key = (await created(post("/rest-apis/plain-api/api-keys", {}))).apiKey.apiKey as string;
      await caughtUp({ apiId: "plain-api", stage: "RELEASE" });
      await writer.replaceScope({ apiId: "ghost-api", stage: "RELEASE" }, { config: "{}" });
      await writer.replaceScope({ apiId: "plain-api", stage: "TEST" }, { config: "{}" }); // no sandbox: no TEST scope
      const result = await projector!.rebuildAll();
      expect(result).to.deep.equal({ revision: await currentRevision(harness().database.knex), scopes: 1, removed: 2 });
      expect(await writer.listScopes()).to.deep.equal([{ apiId: "plain-api", stage: "RELEASE" }]);
      expect(await field({ apiId: "plain-api", stage: "RELEASE" }, `key:${sha256Hex(key)}`)).to.be.a("string");
    });

    it("restores a projection the store lost (a Redis restarted empty)", async () => {
      await projector!.stop();
      ({ projector, registry } = newProjector(writer, { healthCheckMs: 20 }));
      await created(post("/rest-apis", credentialApi()));
      await projector.start();
      expect(await writer.listScopes()).to.have.length(2);
      await (reader.redis as any).flushdb();
      await waitFor("the projection to be back", async () => ((await reader.getMeta("revision")) !== null ? true : undefined));
      expect((await writer.listScopes()).map(scopeKey).sort()).to.deep.equal([scopeKey(RELEASE), scopeKey(TEST)].sort());
    });

    it("never lets a reader miss a valid key while rebuilding", async () => {
      await created(post("/rest-apis", credentialApi()));
      for (let i = 0; i < 15; i++) await created(post("/rest-apis", otherApi(`filler-${i}`, { displayName: `Filler-${i}`, context: `/filler-${i}/$version` })));
      const raw = (await created(post(`/rest-apis/${API}/api-keys`, {}))).apiKey.apiKey as string;
      for (let i = 0; i < 40; i++) await created(post("/subscriptions", { apiId: API, subscriptionToken: `${TOKEN}-${i}` }));
      await caughtUp(RELEASE);
      const name = `key:${sha256Hex(raw)}`;
      let reading = true;
      let reads = 0;
      let misses = 0;
      const readers = Array.from({ length: 4 }, async () => {
        while (reading) {
          const [value] = await (reader.redis as any).hmget(scopeKey(RELEASE), name, "config");
          reads++;
          if (value === null) misses++;
        }
      });
      for (let i = 0; i < 10; i++) await projector!.rebuildAll();
      reading = false;
      await Promise.all(readers);
      expect(reads).to.be.greaterThan(50);
      expect(misses).to.equal(0);
    });
  });

  describe("when Redis is down", () => {
    let port: number;
    let dir: string;
    let pidFile: string;
    let store: RedisCredentialStore;

    const startRedis = () => {
      execFileSync("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes", "--pidfile", pidFile, "--dir", dir]);
    };

    before(async function () {
      if (!existsSync("/usr/bin/redis-server") && !process.env.PATH?.split(":").some((p) => existsSync(join(p, "redis-server")))) this.skip();
      port = await new Promise<number>((resolve) => {
        const server = createServer().listen(0, "127.0.0.1", () => {
          const { port } = server.address() as { port: number };
          server.close(() => resolve(port));
        });
      });
      dir = join(tmpdir(), `apigw-projection-redis-${process.pid}`);
      execFileSync("mkdir", ["-p", dir]);
      pidFile = join(dir, "redis.pid");
      startRedis();
      store = new RedisCredentialStore(connectRedis({ url: `redis://127.0.0.1:${port}/0`, commandTimeoutMs: 300 }));
      store.redis.on("error", () => undefined);
      await redisReady(store.redis);
    });

    after(async () => {
      await store?.close();
      if (pidFile && existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, "utf8").trim());
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // already gone
        }
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("reports lagging while writes fail, then catches up with a full rebuild", async function () {
      this.timeout(30_000);
      await projector!.stop();
      ({ projector, registry } = newProjector(store, { retryInitialMs: 50, retryMaxMs: 400 }));
      await created(post("/rest-apis", credentialApi()));
      const doomed = (await created(post(`/rest-apis/${API}/api-keys`, { name: "doomed" }))).apiKey.apiKey as string;
      await projector.start();
      expect((await store.readFields(RELEASE, [`key:${sha256Hex(doomed)}`]))[0]).to.be.a("string");

      execFileSync("redis-cli", ["-p", String(port), "shutdown", "nosave"]);
      await created(del(`/rest-apis/${API}/api-keys/doomed`), 200);
      const fresh = (await created(post(`/rest-apis/${API}/api-keys`, { name: "fresh" }))).apiKey.apiKey as string;
      const lagging = await waitFor("lagging", () => (projector!.status().lagging ? projector!.status() : undefined), 5000);
      expect(lagging.lastError).to.be.a("string").and.not.equal("");
      expect(lagging.revision).to.be.below(await currentRevision(harness().database.knex));
      expect(await metricValue(registry, "apigw_projection_lagging")).to.equal(1);
      expect(await metricValue(registry, "apigw_projection_errors_total")).to.be.greaterThan(0);
      await sleep(300); // a few failed retries, none of which may crash anything

      startRedis();
      await waitFor("caught up", () => (projector!.status().lagging ? undefined : true), 10_000);
      const revision = await currentRevision(harness().database.knex);
      await waitFor("revision", () => (projector!.status().revision >= revision ? true : undefined));
      expect((await store.readFields(RELEASE, [`key:${sha256Hex(doomed)}`]))[0]).to.equal(null);
      expect((await store.readFields(RELEASE, [`key:${sha256Hex(fresh)}`]))[0]).to.be.a("string");
      expect((await store.listScopes()).map(scopeKey).sort()).to.deep.equal([scopeKey(RELEASE), scopeKey(TEST)].sort());
      expect(await store.getMeta("revision")).to.equal(String(revision));
      expect(await metricValue(registry, "apigw_projection_lagging")).to.equal(0);

      // And it keeps following changes afterwards.
      await created(del(`/rest-apis/${API}/api-keys/fresh`), 200);
      await waitFor("the next change", async () => ((await store.readFields(RELEASE, [`key:${sha256Hex(fresh)}`]))[0] === null ? true : undefined));
    });

    it("starts while Redis is down (lagging, no throw) and projects once it is up", async function () {
      this.timeout(30_000);
      await projector!.stop();
      await created(post("/rest-apis", credentialApi()));
      execFileSync("redis-cli", ["-p", String(port), "shutdown", "nosave"]);
      ({ projector, registry } = newProjector(store, { retryInitialMs: 50, retryMaxMs: 400 }));
      const status = await projector.start();
      expect(status).to.include({ lagging: true, revision: 0 });
      expect(status.lastError).to.be.a("string");
      startRedis();
      await waitFor("caught up", () => (projector!.status().lagging ? undefined : true), 10_000);
      expect((await store.listScopes()).map(scopeKey).sort()).to.deep.equal([scopeKey(RELEASE), scopeKey(TEST)].sort());
    });
  });
});

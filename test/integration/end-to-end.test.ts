import { expect } from "chai";
import { RedisCredentialStore, connectRedis, redisReady, CONTEXT_EXTENSIONS } from "@apigw/shared";
import { createExtAuthzServer, type ExtAuthzServer } from "../../packages/ext-authz/src";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/controlPlane";
import { XDS_TYPE_URLS } from "../../packages/control-plane/src/xds";
import { currentRevision } from "../../packages/control-plane/src/store/changes";
import { del, get, post, put } from "../support/client";
import { testConfig, TEST_MASTER_KEY } from "../support/environment";
import { ExtAuthzClient } from "../support/extAuthzClient";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { connectDelta, connectSotw, decodeDelta, decodeSotw, routePaths, type DeltaClient, type SotwClient } from "../support/xdsClient";
import type { DeltaDiscoveryResponse, DiscoveryResponse } from "../../packages/control-plane/src/xds/protocol";

const T = XDS_TYPE_URLS;
const ROUTES = "apigw-routes";
const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/15";

type Json = Record<string, any>;


/** Reads SotW responses, ACKing each, until `done` holds for the latest resources of each type. */
async function sotwUntil(client: SotwClient, state: Map<string, Map<string, Json>>, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    const response: DiscoveryResponse = await client.next(Math.max(1, deadline - Date.now()));
    const resources = new Map(decodeSotw(response).map((r) => [r.name, r.json]));
    state.set(response.typeUrl, resources);
    client.ack(response);
  }
}

async function deltaUntil(client: DeltaClient, state: Map<string, Map<string, Json>>, done: () => boolean, log: DeltaDiscoveryResponse[] = [], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    const response = await client.next(Math.max(1, deadline - Date.now()));
    log.push(response);
    const current = state.get(response.typeUrl) ?? new Map<string, Json>();
    for (const r of decodeDelta(response)) current.set(r.name, r.json);
    for (const name of response.removedResources) current.delete(name);
    state.set(response.typeUrl, current);
    client.ack(response);
  }
}

/** Waits until the gateway pipeline has published the newest committed revision. */
async function publishedUpToDate(timeoutMs = 5000): Promise<void> {
  const target = await currentRevision(harness().database.knex);
  const deadline = Date.now() + timeoutMs;
  while (harness().pipeline.publishedRevision < target) {
    if (Date.now() > deadline) throw new Error(`pipeline did not publish revision ${target}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await harness().pipeline.settled();
}

describe("end to end", () => {
  const open: { close(): void }[] = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });
  const address = () => `127.0.0.1:${harness().xdsPort}`;

  describe("management API → store → translator → ADS", () => {
    it("pushes an API's creation, change, undeployment and deletion to a connected SotW client", async () => {
      const client = connectSotw(address(), { id: "envoy-e2e", cluster: "e2e-gateway" });
      open.push(client);
      const state = new Map<string, Map<string, Json>>();
      client.request(T.cluster);
      client.request(T.listener);
      client.request(T.route, [ROUTES]);
      await sotwUntil(client, state, () => Boolean(state.get(T.listener)?.size && state.get(T.route)?.has(ROUTES)));
      expect([...state.get(T.listener)!.keys()]).to.deep.equal(["http-8080"]);
      const paths = () => routePaths(state.get(T.route)!.get(ROUTES)!);

      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      await sotwUntil(client, state, () => paths().includes("/reading-list/v1.0/books/{id}"));
      expect([...state.get(T.cluster)!.keys()]).to.include("https_apis.example.com_443");

      const changed = restApi(undefined, { operations: [{ method: "GET", path: "/shelves" }] });
      expect((await put("/rest-apis/reading-list-api-v1.0", changed)).status).to.equal(200);
      await sotwUntil(client, state, () => paths().includes("/reading-list/v1.0/shelves") && !paths().includes("/reading-list/v1.0/books/{id}"));

      expect((await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { deploymentState: "undeployed" }))).status).to.equal(200);
      await sotwUntil(client, state, () => paths().length === 0);
      // The API's cluster goes once no route refers to it.
      await sotwUntil(client, state, () => !state.get(T.cluster)!.has("https_apis.example.com_443"));

      expect((await put("/rest-apis/reading-list-api-v1.0", restApi())).status).to.equal(200);
      await sotwUntil(client, state, () => paths().includes("/reading-list/v1.0/books"));
      expect((await del("/rest-apis/reading-list-api-v1.0")).status).to.equal(200);
      await sotwUntil(client, state, () => paths().length === 0);
    });

    it("sends a reconnecting delta client only what changed while it was away", async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const first = connectDelta(address(), { id: "envoy-delta", cluster: "delta-gateway" });
      open.push(first);
      const state = new Map<string, Map<string, Json>>();
      first.subscribe(T.cluster);
      first.subscribe(T.listener);
      first.subscribe(T.route, [ROUTES]);
      await deltaUntil(first, state, () => Boolean(state.get(T.route)?.has(ROUTES) && state.get(T.listener)?.size && state.get(T.cluster)?.size));
      const clusterVersions = Object.fromEntries(first.versions.get(T.cluster)!);
      const listenerVersions = Object.fromEntries(first.versions.get(T.listener)!);
      const routeVersions = Object.fromEntries(first.versions.get(T.route)!);
      first.close();

      // A change while disconnected: only the route configuration changes.
      expect((await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { operations: [{ method: "GET", path: "/books" }] }))).status).to.equal(200);
      await publishedUpToDate();

      const again = connectDelta(address(), { id: "envoy-delta", cluster: "delta-gateway" });
      open.push(again);
      const log: DeltaDiscoveryResponse[] = [];
      const state2 = new Map<string, Map<string, Json>>();
      again.subscribe(T.cluster, [], clusterVersions);
      again.subscribe(T.listener, [], listenerVersions);
      again.subscribe(T.route, [ROUTES], routeVersions);
      await deltaUntil(again, state2, () => Boolean(state2.get(T.route)?.has(ROUTES)), log);
      await again.expectNone(300);
      const sent = log.flatMap((r) => r.resources.map((x) => `${r.typeUrl.split(".").pop()}/${x.name}`));
      expect(sent).to.deep.equal(["RouteConfiguration/" + ROUTES]);
      expect(routePaths(state2.get(T.route)!.get(ROUTES)!)).to.include("/reading-list/v1.0/books");
    });

    it("reports in the API's status whether every connected gateway has ACKed its latest change", async () => {
      const client = connectSotw(address(), { id: "envoy-sync", cluster: "sync-gateway" });
      open.push(client);
      const state = new Map<string, Map<string, Json>>();
      client.request(T.cluster);
      client.request(T.listener);
      client.request(T.route, [ROUTES]);
      await sotwUntil(client, state, () => Boolean(state.get(T.route)?.has(ROUTES)));

      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      // Receive the new configuration but do not ACK it yet: not synced.
      const pushed = await client.next(5000);
      const before = (await get("/rest-apis/reading-list-api-v1.0")).body.status.gateways;
      expect(before.revision).to.be.a("number").above(0);
      expect(before.synced).to.equal(false);
      expect(before.gateways.map((g: Json) => g.name)).to.include("sync-gateway");

      client.ack(pushed);
      const deadline = Date.now() + 5000;
      for (;;) {
        const r = await client.next(200).catch(() => undefined);
        if (r) client.ack(r);
        const status = (await get("/rest-apis/reading-list-api-v1.0")).body.status.gateways;
        const mine = status.gateways.find((g: Json) => g.name === "sync-gateway");
        if (mine && mine.ackedRevision >= status.revision) break;
        if (Date.now() > deadline) throw new Error(`gateway never reported synced: ${JSON.stringify(status)}`);
      }
    });

    it("serves two gateways different configuration, by the API's gateways label", async () => {
      const internal = restApi("internal-api", { displayName: "Internal", context: "/internal" });
      (internal.metadata as Json).labels = { gateways: "internal-gateway" };
      expect((await post("/rest-apis", internal)).status).to.equal(201);
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const pathsFor = async (cluster: string) => {
        const client = connectSotw(address(), { id: `envoy-${cluster}`, cluster });
        open.push(client);
        const state = new Map<string, Map<string, Json>>();
        client.request(T.cluster);
        client.request(T.listener);
        client.request(T.route, [ROUTES]);
        await sotwUntil(client, state, () => Boolean(state.get(T.route)?.has(ROUTES) && routePaths(state.get(T.route)!.get(ROUTES)!).length > 0));
        return routePaths(state.get(T.route)!.get(ROUTES)!);
      };
      const internalPaths = await pathsFor("internal-gateway");
      const edgePaths = await pathsFor("edge-gateway");
      expect(internalPaths.some((p) => p.startsWith("/internal"))).to.equal(true);
      expect(edgePaths.some((p) => p.startsWith("/internal"))).to.equal(false);
      expect(edgePaths.some((p) => p.startsWith("/reading-list"))).to.equal(true);
    });
  });

  describe("management API → store → Redis projection → ext_authz", () => {
    // A second control-plane replica on the same Postgres, projecting into a real Redis, and a
    // separate ext_authz service reading that Redis: the production topology.
    let replica: ControlPlane;
    let store: RedisCredentialStore;
    let extAuthz: ExtAuthzServer;
    let client: ExtAuthzClient;

    before(async function () {
      this.timeout(30_000);
      const flush = connectRedis({ url: TEST_REDIS_URL });
      await redisReady(flush);
      await flush.flushdb();
      flush.disconnect();
      replica = await startControlPlane(testConfig({ REDIS_URL: TEST_REDIS_URL, EXT_AUTHZ_EMBEDDED: "false" }));
      store = new RedisCredentialStore(connectRedis({ url: TEST_REDIS_URL }));
      await redisReady(store.redis);
      extAuthz = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
      client = new ExtAuthzClient(`127.0.0.1:${extAuthz.port}`);
    });

    after(async () => {
      client?.close?.();
      await extAuthz?.close();
      await store?.close();
      await replica?.stop();
    });

    const context = { [CONTEXT_EXTENSIONS.apiId]: "reading-list-api-v1.0", [CONTEXT_EXTENSIONS.stage]: "RELEASE", [CONTEXT_EXTENSIONS.operation]: "GET /books" };

    async function deniedWithin(ms: number, check: () => Promise<{ allowed: boolean }>): Promise<number> {
      const started = performance.now();
      for (;;) {
        if (!(await check()).allowed) return performance.now() - started;
        if (performance.now() - started > ms) throw new Error(`still allowed ${ms} ms after the change`);
        await new Promise((r) => setTimeout(r, 2));
      }
    }

    async function allowedWithin(ms: number, check: () => Promise<{ allowed: boolean }>): Promise<void> {
      const started = performance.now();
      while (!(await check()).allowed) {
        if (performance.now() - started > ms) throw new Error(`not allowed ${ms} ms after the change`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }

    it("refuses an API key soon after its revocation through the REST API (the delay is measured by bench:propagation)", async () => {
      expect((await post("/rest-apis", restApi(undefined, { policies: [{ name: "api-key-auth", params: {} }] }))).status).to.equal(201);
      const created = await post("/rest-apis/reading-list-api-v1.0/api-keys", { name: "e2e-key" });
      expect(created.status).to.equal(201);
      const key = created.body.apiKey.apiKey as string;
      const check = () => client.check({ method: "GET", path: "/reading-list/v1.0/books", headers: { "api-key": key }, contextExtensions: context });
      // The API's new policy has reached Redis once a request without a key is refused.
      await deniedWithin(2000, () => client.check({ method: "GET", path: "/reading-list/v1.0/books", contextExtensions: context }));
      await allowedWithin(2000, check);
      const allowed = await check();
      expect(allowed.allowed).to.equal(true);
      expect(allowed.headersToRemove).to.include("api-key");

      const revoked = await del("/rest-apis/reading-list-api-v1.0/api-keys/e2e-key");
      expect(revoked.status).to.equal(200);
      await deniedWithin(5000, check);
      const denied = await check();
      expect(denied.status).to.equal(401);
      expect(denied.json?.message).to.match(/API Key/i);
    });

    it("refuses a disabled application's AppCode soon after, and accepts it again once enabled", async () => {
      expect((await post("/rest-apis", restApi(undefined, { policies: [{ name: "app-auth", params: { appCode: "HEADER" } }] }))).status).to.equal(201);
      const app = await post("/applications", { name: "e2e-app" });
      expect(app.status).to.equal(201);
      const { id, appCode } = app.body.application;
      expect((await post("/authorizations", { applicationId: id, apiId: "reading-list-api-v1.0", stage: "RELEASE" })).status).to.equal(201);
      const check = () => client.check({ method: "GET", path: "/reading-list/v1.0/books", headers: { authorization: `APPCODE ${appCode}` }, contextExtensions: context });
      await deniedWithin(2000, () => client.check({ method: "GET", path: "/reading-list/v1.0/books", contextExtensions: context }));
      await allowedWithin(2000, check);

      expect((await post(`/applications/${id}/disable`)).status).to.equal(200);
      await deniedWithin(5000, check);
      const denied = await check();
      expect(denied.status).to.equal(403);
      expect(denied.json?.message).to.equal("App Disabled");

      expect((await post(`/applications/${id}/enable`)).status).to.equal(200);
      await allowedWithin(5000, check);
    });
  });
});

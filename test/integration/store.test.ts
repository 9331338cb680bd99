import { expect } from "chai";
import { CHANGE_CHANNEL, currentRevision, type ChangeNotification } from "../../packages/control-plane/src/store/changes";
import { loadCredentialData, listCredentialScopes } from "../../packages/control-plane/src/store/reads/credentials";
import { loadGatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { SecretBox, hashApiKey, sha256Hex } from "@apigw/shared";
import { del, post, put } from "../support/client";
import { TEST_MASTER_KEY } from "../support/environment";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

async function collectNotifications(run: () => Promise<void>, settleMs = 300): Promise<ChangeNotification[]> {
  const received: ChangeNotification[] = [];
  const stop = await harness().database.listen(CHANGE_CHANNEL, (payload) => received.push(JSON.parse(payload)));
  try {
    await run();
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    await stop();
  }
  return received;
}

describe("store", () => {
  describe("revisions and change notifications", () => {
    it("announces each committed write with a revision one higher than the last", async () => {
      const notifications = await collectNotifications(async () => {
        expect((await post("/rest-apis", restApi())).status).to.equal(201);
        expect((await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { displayName: "Renamed" }))).status).to.equal(200);
        expect((await del("/rest-apis/reading-list-api-v1.0")).status).to.equal(200);
      });
      const first = notifications[0]!.revision;
      expect(notifications.map((n) => n.revision)).to.deep.equal([first, first + 1, first + 2]);
      expect(notifications.map((n) => n.changes[0]!.op)).to.deep.equal(["create", "update", "delete"]);
      expect(notifications[0]!.changes[0]).to.deep.include({ entity: "rest_api", id: "reading-list-api-v1.0", apiIds: ["reading-list-api-v1.0"] });
      expect(await currentRevision(harness().database.knex)).to.equal(first + 2);
    });

    it("announces nothing and records no revision for a failed write", async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const before = await currentRevision(harness().database.knex);
      const notifications = await collectNotifications(async () => {
        expect((await post("/rest-apis", restApi())).status).to.equal(409);
        expect((await post("/rest-apis", restApi("x", { context: "bad" }))).status).to.equal(400);
      });
      expect(notifications).to.deep.equal([]);
      expect(await currentRevision(harness().database.knex)).to.equal(before);
    });

    it("assigns distinct, gap-free revisions to concurrent writes", async () => {
      const replies = await Promise.all(
        Array.from({ length: 12 }, (_, i) => post("/rest-apis", otherApi(`api-${i}`, { displayName: `Api ${i}`, context: `/api-${i}` }))),
      );
      expect(replies.map((r) => r.status)).to.deep.equal(Array(12).fill(201));
      const revisions = (await harness().database.knex("change_log").orderBy("revision").pluck("revision")).map(Number);
      expect(revisions).to.deep.equal(Array.from({ length: 12 }, (_, i) => revisions[0]! + i));
    });
  });

  describe("loadGatewayConfig", () => {
    it("returns deployed APIs only, per stage, at the current revision", async () => {
      await post(
        "/rest-apis",
        restApi(undefined, {
          upstream: { main: { url: "http://main.internal:8080" }, sandbox: { url: "http://sandbox.internal:8080", hostRewrite: "manual" } },
          operations: [{ method: "GET", path: "/books/{id}", policies: [{ name: "remove-headers", params: { request: { headers: ["x-debug"] } } }] }],
        }),
      );
      await post("/rest-apis", otherApi("hidden", { deploymentState: "undeployed" }));
      const config = await loadGatewayConfig(harness().database.knex);
      expect(config.revision).to.equal(await currentRevision(harness().database.knex));
      expect(config.apis.map((a) => a.handle)).to.deep.equal(["reading-list-api-v1.0"]);
      const api = config.apis[0]!;
      expect(api.resolvedContext).to.equal("/reading-list/v1.0");
      expect(api.stages.map((s) => [s.stage, s.vhost, s.upstream.hostRewrite])).to.deep.equal([
        ["RELEASE", "*", "auto"],
        ["TEST", "sandbox-*", "manual"],
      ]);
      const release = api.stages[0]!;
      expect(release.policies.map((p) => [p.type, p.version, p.source.kind])).to.deep.equal([["setHeaders", "v1", "inline"]]);
      expect(release.operations[0]!.policies[0]).to.deep.include({ type: "removeHeaders", enforcedBy: "envoy" });
    });

    it("lets a plug-in bound for a stage replace the inline policy of the same type in that stage only", async () => {
      await post("/rest-apis", restApi(undefined, { upstream: { main: { url: "http://m:1" }, sandbox: { url: "http://s:1" } } }));
      const plugin = await post("/plugins", {
        name: "release-headers",
        type: "setHeaders",
        params: { response: { headers: [{ name: "x-stage", value: "release" }] } },
      });
      expect(plugin.status, plugin.text).to.equal(201);
      const bind = await post(`/plugins/${plugin.body.plugin.id}/bindings`, { apiIds: ["reading-list-api-v1.0"], stage: "RELEASE" });
      expect(bind.status, bind.text).to.equal(201);
      const config = await loadGatewayConfig(harness().database.knex);
      const [release, test] = config.apis[0]!.stages;
      expect(release!.policies).to.have.length(1);
      expect(release!.policies[0]!.source).to.deep.equal({ kind: "plugin", pluginId: plugin.body.plugin.id, pluginName: "release-headers" });
      expect(release!.policies[0]!.params).to.deep.equal({ response: { headers: [{ name: "x-stage", value: "release" }] } });
      expect(test!.policies[0]!.source).to.deep.equal({ kind: "inline", scope: "api" });
    });

    it("is deterministic: two reads of the same revision are deep-equal", async () => {
      await post("/rest-apis", restApi());
      await post("/rest-apis", otherApi());
      const a = await loadGatewayConfig(harness().database.knex);
      const b = await loadGatewayConfig(harness().database.knex);
      expect(JSON.stringify(a)).to.equal(JSON.stringify(b));
    });
  });

  describe("loadCredentialData", () => {
    it("resolves accepted credentials, key hashes, subscriptions, authorized apps and IP rules for one API and stage", async () => {
      const created = await post(
        "/rest-apis",
        restApi(undefined, {
          policies: [
            { name: "api-key-auth", version: "v1", params: { key: "X-Key", in: "header" } },
            { name: "app-auth", params: { signatureMethods: ["HmacSHA256"], forceNonceCheck: true } },
            { name: "subscription-key-auth", params: {} },
          ],
          operations: [
            { method: "GET", path: "/books" },
            { method: "POST", path: "/books", policies: [{ name: "traffic-control", params: { unit: "MINUTE", apiLimit: 10 } }] },
          ],
        }),
      );
      expect(created.status, created.text).to.equal(201);
      const apiId = "reading-list-api-v1.0";

      const key = await post(`/rest-apis/${apiId}/api-keys`, { name: "first-key" });
      expect(key.status, key.text).to.equal(201);
      const regenerated = await post(`/rest-apis/${apiId}/api-keys/first-key/regenerate`, { gracePeriod: { unit: "hours", duration: 1 } });
      expect(regenerated.status, regenerated.text).to.equal(200);

      const plan = await post("/subscription-plans", { planName: "Gold", throttleLimitCount: 100, throttleLimitUnit: "Min", stopOnQuotaReach: false });
      expect(plan.status, plan.text).to.equal(201);
      const subscription = await post("/subscriptions", { apiId, subscriptionToken: "sub-token-abc123xyz", subscriptionPlanId: plan.body.id });
      expect(subscription.status, subscription.text).to.equal(201);

      const app = await post("/applications", { name: "mobile-app" });
      expect(app.status, app.text).to.equal(201);
      const application = app.body.application;
      const grant = await post("/authorizations", { applicationId: application.id, apiId, stage: "RELEASE", expiresAt: "2099-01-01T00:00:00Z" });
      expect(grant.status, grant.text).to.equal(201);

      const ip = await post("/plugins", { name: "office-only", type: "ipControl", params: { allow: ["10.0.0.0/8"] } });
      expect(ip.status, ip.text).to.equal(201);
      expect((await post(`/plugins/${ip.body.plugin.id}/bindings`, { apiIds: [apiId], stage: "RELEASE" })).status).to.equal(201);

      const data = (await loadCredentialData(harness().database.knex, apiId, "RELEASE"))!;
      expect(data.revision).to.equal(await currentRevision(harness().database.knex));
      expect(data.deployed).to.equal(true);
      expect(data.accepts).to.deep.equal({
        apiKey: { in: "header", name: "X-Key" },
        appAuth: { signature: true, signatureMethods: ["HmacSHA256"], appCode: "HEADER", forceNonceCheck: true },
        subscriptionKey: { header: "Subscription-Key" },
      });
      expect(data.apiKeys.map((k) => [k.name, k.status, k.hash])).to.deep.equal([
        ["first-key", "active", hashApiKey(regenerated.body.apiKey.apiKey)],
        ["first-key", "grace", hashApiKey(key.body.apiKey.apiKey)],
      ]);
      expect(data.subscriptions).to.have.length(1);
      expect(data.subscriptions[0]).to.deep.include({ tokenHash: sha256Hex("sub-token-abc123xyz"), status: "ACTIVE" });
      expect(data.subscriptions[0]!.plan).to.deep.include({ name: "Gold", throttleLimitCount: 100, throttleLimitUnit: "Min", stopOnQuotaReach: false });
      expect(data.applications).to.have.length(1);
      const authorized = data.applications[0]!;
      expect(authorized).to.deep.include({ id: application.id, status: "ENABLED", appCodeHash: sha256Hex(application.appCode) });
      expect(authorized.authorization.expiresAt).to.equal("2099-01-01T00:00:00.000Z");
      const pair = authorized.keyPairs[0]!;
      expect(pair.appKey).to.equal(application.keyPairs[0].appKey);
      expect(new SecretBox(TEST_MASTER_KEY).decrypt(pair.secretSealed, pair.appKey)).to.equal(application.keyPairs[0].appSecret);
      expect(data.ipControl).to.deep.equal({ allow: ["10.0.0.0/8"] });
      expect(data.operations).to.deep.equal({ "POST /books": { trafficControl: { unit: "MINUTE", apiLimit: 10 } } });

      // The sandbox stage has no authorization and no IP plug-in.
      const test = await loadCredentialData(harness().database.knex, apiId, "TEST");
      expect(test!.applications).to.deep.equal([]);
      expect(test!.ipControl).to.equal(undefined);
    });

    it("returns undefined for an unknown API and lists scopes per stage", async () => {
      expect(await loadCredentialData(harness().database.knex, "nope", "RELEASE")).to.equal(undefined);
      await post("/rest-apis", restApi(undefined, { upstream: { main: { url: "http://m:1" }, sandbox: { url: "http://s:1" } } }));
      await post("/rest-apis", otherApi());
      expect(await listCredentialScopes(harness().database.knex)).to.deep.equal([
        { apiId: "petstore-v1", stage: "RELEASE" },
        { apiId: "reading-list-api-v1.0", stage: "RELEASE" },
        { apiId: "reading-list-api-v1.0", stage: "TEST" },
      ]);
    });
  });
});

describe("store: partial gateway reads", () => {
  it("reads only the named APIs, leaving out undeployed and unknown ones, at the current revision", async () => {
    await post("/rest-apis", restApi());
    await post("/rest-apis", otherApi());
    await post("/rest-apis", otherApi("hidden", { displayName: "Hidden", context: "/hidden", deploymentState: "undeployed" }));
    const partial = await loadGatewayConfig(harness().database.knex, { handles: ["petstore-v1", "hidden", "missing"] });
    expect(partial.revision).to.equal(await currentRevision(harness().database.knex));
    expect(partial.apis.map((a) => a.handle)).to.deep.equal(["petstore-v1"]);
  });
});

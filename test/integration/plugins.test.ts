import { expect } from "chai";
import { harness } from "../support/hooks";
import { call, countRows, del, fields, get, post, put, type Reply } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";

const IP_PARAMS = { allow: ["10.0.0.0/8", "192.168.1.1"] };
const TRAFFIC_PARAMS = { unit: "MINUTE", apiLimit: 100 };
const READING = "reading-list-api-v1.0";
const PETSTORE = "petstore-v1";

async function createPlugin(name: string, type = "ipControl", params: Record<string, unknown> = IP_PARAMS, extra: Record<string, unknown> = {}) {
  const reply = await post("/plugins", { name, type, params, ...extra });
  expect(reply.status, reply.text).to.equal(201);
  return reply.body.plugin as { id: string; name: string; type: string; params: Record<string, unknown> };
}

async function createApis() {
  expect((await post("/rest-apis", restApi())).status).to.equal(201);
  expect((await post("/rest-apis", otherApi())).status).to.equal(201);
}

async function bind(pluginId: string, apiIds: string[], stage = "RELEASE"): Promise<Reply> {
  return post(`/plugins/${pluginId}/bindings`, { apiIds, stage });
}

/** Every change recorded in change_log, oldest first. */
async function changeLog(): Promise<{ entity: string; id: string; op: string; apiIds?: string[] }[]> {
  const rows = (await harness().database.knex("change_log").orderBy("revision").select("changes")) as { changes: unknown }[];
  return rows.flatMap((r) => (typeof r.changes === "string" ? JSON.parse(r.changes) : r.changes) as never[]);
}

function errorFor(reply: Reply, field: string): string | undefined {
  return (reply.body?.errors as { field: string; message: string }[] | undefined)?.find((e) => e.field === field)?.message;
}

const MISSING_ID = "00000000-0000-4000-8000-000000000000";

describe("plugins", () => {
  describe("POST /plugins (CreatePlugin)", () => {
    it("creates a plug-in and answers 201 with it", async () => {
      const reply = await post("/plugins", { name: "office-ips", type: "ipControl", description: "Office only", params: IP_PARAMS });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.status).to.equal("success");
      const plugin = reply.body.plugin;
      expect(Object.keys(plugin)).to.deep.equal(["id", "name", "type", "description", "params", "createdAt", "updatedAt"]);
      expect(plugin.id).to.match(/^[0-9a-f-]{36}$/);
      expect(plugin).to.include({ name: "office-ips", type: "ipControl", description: "Office only" });
      expect(plugin.params).to.deep.equal(IP_PARAMS);
      expect(Date.parse(plugin.createdAt)).to.not.be.NaN;
      expect(reply.headers.get("location")).to.equal(`/api/management/v0.9/plugins/${plugin.id}`);
      const log = await changeLog();
      expect(log).to.deep.equal([{ entity: "plugin", id: plugin.id, op: "create", apiIds: [] }]);
    });

    it("stores the canonical type when given an alias, and params default to {} with description null", async () => {
      const alias = await createPlugin("limits", "traffic-control", TRAFFIC_PARAMS);
      expect(alias.type).to.equal("trafficControl");
      const reply = await post("/plugins", { name: "key-auth", type: "api-key-auth" });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.plugin).to.include({ type: "apiKeyAuth", description: null });
      expect(reply.body.plugin.params).to.deep.equal({});
      const row = await harness().database.knex("plugins").where({ name: "limits" }).first();
      expect(row.type).to.equal("trafficControl");
    });

    it("keeps the key order of params (json column)", async () => {
      const params = { unit: "SECOND", userLimit: 5, apiLimit: 50, appLimit: 10 };
      const plugin = await createPlugin("ordered", "trafficControl", params);
      expect(Object.keys(plugin.params)).to.deep.equal(["unit", "userLimit", "apiLimit", "appLimit"]);
      const fetched = await get(`/plugins/${plugin.id}`);
      expect(Object.keys(fetched.body.plugin.params)).to.deep.equal(["unit", "userLimit", "apiLimit", "appLimit"]);
    });

    it("validates the name: required, 4-50 characters, starting with a letter", async () => {
      const cases: [unknown, string][] = [
        ["abc", "must be at least 4 characters"],
        ["a".repeat(51), "must be at most 50 characters"],
        ["1abc", "must start with a letter and contain only letters, digits, _ and -"],
        ["ab cd", "must start with a letter and contain only letters, digits, _ and -"],
        [42, "must be a string"],
      ];
      for (const [name, message] of cases) {
        const reply = await post("/plugins", { name, type: "cors", params: { allowOrigins: ["*"] } });
        expect(reply.status, String(name)).to.equal(400);
        expect(errorFor(reply, "name"), String(name)).to.equal(message);
      }
      const missing = await post("/plugins", { type: "cors" });
      expect(missing.status).to.equal(400);
      expect(errorFor(missing, "name")).to.equal("is required");
      expect(await countRows("plugins")).to.equal(0);
      expect(await countRows("change_log")).to.equal(0);
    });

    it("accepts names with digits, _ and - and exactly 4 or 50 characters", async () => {
      await createPlugin("a_1-");
      await createPlugin("B" + "x".repeat(49));
      expect(await countRows("plugins")).to.equal(2);
    });

    it("rejects an unknown type with a 400 listing the known types", async () => {
      const reply = await post("/plugins", { name: "mystery", type: "jwtAuth", params: {} });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["type"]);
      const message = errorFor(reply, "type")!;
      expect(message).to.contain("unknown plug-in type 'jwtAuth'");
      for (const known of ["ipControl", "trafficControl", "cors", "setHeaders", "removeHeaders", "appAuth", "apiKeyAuth", "subscriptionKeyAuth", "circuitBreaker"]) {
        expect(message).to.contain(known);
      }
      const missing = await post("/plugins", { name: "mystery" });
      expect(errorFor(missing, "type")).to.equal("is required");
      expect(await countRows("plugins")).to.equal(0);
    });

    it("reports an ipControl bad CIDR at params.allow[0]", async () => {
      const reply = await post("/plugins", { name: "bad-ips", type: "ipControl", params: { allow: ["10.0.0.0/33", "10.0.0.1"], deny: ["not-an-ip"] } });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["params.allow[0]", "params.deny[0]"]);
      expect(errorFor(reply, "params.allow[0]")).to.equal("must be an IPv4 or IPv6 address or CIDR block");
    });

    it("rejects trafficControl without any limit, and a bad unit", async () => {
      const noLimit = await post("/plugins", { name: "no-limit", type: "trafficControl", params: { unit: "MINUTE" } });
      expect(noLimit.status).to.equal(400);
      expect(fields(noLimit)).to.deep.equal(["params"]);
      expect(errorFor(noLimit, "params")).to.match(/at least one of apiLimit, appLimit, userLimit or specials/);
      const badUnit = await post("/plugins", { name: "bad-unit", type: "trafficControl", params: { unit: "WEEK", apiLimit: 0 } });
      expect(badUnit.status).to.equal(400);
      expect(fields(badUnit)).to.include.members(["params.unit", "params.apiLimit"]);
    });

    it("rejects appAuth with signature false and appCode DISABLE", async () => {
      const reply = await post("/plugins", { name: "no-auth", type: "app-auth", params: { signature: false, appCode: "DISABLE" } });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["params"]);
      expect(errorFor(reply, "params")).to.match(/at least one of signature or appCode must be enabled/);
      const ok = await post("/plugins", { name: "sig-only", type: "appAuth", params: { signature: true, appCode: "DISABLE" } });
      expect(ok.status, ok.text).to.equal(201);
    });

    it("rejects params that the type does not allow (unknown keys, nested fields, default {} when required)", async () => {
      const extra = await post("/plugins", { name: "headers", type: "set-headers", params: { request: { headers: [{ name: "bad header", value: "x" }] }, bogus: 1 } });
      expect(extra.status).to.equal(400);
      expect(fields(extra)).to.include.members(["params.bogus", "params.request.headers[0].name"]);
      expect(errorFor(extra, "params.bogus")).to.equal("unknown field");
      const empty = await post("/plugins", { name: "cors-none", type: "cors" });
      expect(empty.status).to.equal(400);
      expect(fields(empty)).to.deep.equal(["params.allowOrigins"]);
      const wrongShape = await post("/plugins", { name: "arrayed", type: "cors", params: ["*"] });
      expect(wrongShape.status).to.equal(400);
      expect(errorFor(wrongShape, "params")).to.equal("must be an object");
      expect(await countRows("plugins")).to.equal(0);
    });

    it("lists every failing field at once", async () => {
      const reply = await post("/plugins", { name: "x", type: "ipControl", description: "d".repeat(181), params: { allow: ["999.1.1.1"] } });
      expect(reply.status).to.equal(400);
      expect(reply.body.message).to.equal("Configuration validation failed");
      expect(fields(reply)).to.deep.equal(["name", "description", "params.allow[0]"]);
    });

    it("rejects unknown fields (strict body) and a missing body", async () => {
      const reply = await post("/plugins", { name: "strict", type: "ipControl", params: IP_PARAMS, id: MISSING_ID, stage: "RELEASE" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["id", "stage"]);
      expect(errorFor(reply, "id")).to.equal("unknown field");
      const empty = await call("POST", "/plugins", { contentType: "application/json" });
      expect(empty.status).to.equal(400);
      expect(fields(empty)).to.deep.equal(["body"]);
      expect(await countRows("plugins")).to.equal(0);
    });

    it("enforces the 50 KB metadata limit on valid params", async () => {
      const ipv6 = (i: number) => `2001:0db8:0000:0000:0000:0000:${i.toString(16).padStart(4, "0")}:0001/128`;
      const big = { allow: Array.from({ length: 1000 }, (_, i) => ipv6(i)), deny: Array.from({ length: 200 }, (_, i) => ipv6(i + 1000)) };
      expect(Buffer.byteLength(JSON.stringify(big))).to.be.above(51_200);
      const reply = await post("/plugins", { name: "huge-ips", type: "ipControl", params: big });
      expect(reply.status).to.equal(400);
      expect(reply.body.errors).to.deep.equal([{ field: "params", message: "plug-in metadata exceeds 50 KB" }]);
      expect(await countRows("plugins")).to.equal(0);
      // Just under the limit is fine.
      const small = { allow: big.allow };
      expect(Buffer.byteLength(JSON.stringify(small))).to.be.at.most(51_200);
      expect((await post("/plugins", { name: "many-ips", type: "ipControl", params: small })).status).to.equal(201);
    });

    it("answers 409 for a name that is taken, and stores nothing", async () => {
      await createPlugin("office-ips");
      const reply = await post("/plugins", { name: "office-ips", type: "cors", params: { allowOrigins: ["*"] } });
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.contain("office-ips");
      expect(fields(reply)).to.deep.equal(["name"]);
      expect(await countRows("plugins")).to.equal(1);
      expect(await countRows("change_log")).to.equal(1);
    });

    it("answers 409 once the plug-in limit is reached", async () => {
      const limit = harness().config.PLUGIN_LIMIT;
      const now = new Date();
      await harness()
        .database.knex("plugins")
        .insert(Array.from({ length: limit }, (_, i) => ({ name: `bulk${i}`, type: "cors", params: JSON.stringify({ allowOrigins: ["*"] }), created_at: now, updated_at: now })));
      const reply = await post("/plugins", { name: "one-more", type: "ipControl", params: IP_PARAMS });
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.equal(`plug-in limit of ${limit} reached`);
      expect(await countRows("plugins")).to.equal(limit);
      expect(await countRows("change_log")).to.equal(0);
      // Deleting one makes room again.
      const victim = await harness().database.knex("plugins").where({ name: "bulk0" }).first();
      expect((await del(`/plugins/${victim.id}`)).status).to.equal(200);
      expect((await post("/plugins", { name: "one-more", type: "ipControl", params: IP_PARAMS })).status).to.equal(201);
    });
  });

  describe("GET /plugins (DescribePlugins)", () => {
    beforeEach(async () => {
      await createPlugin("office-ips");
      await createPlugin("limits", "trafficControl", TRAFFIC_PARAMS);
      await createPlugin("admin-ips", "ip-control", { deny: ["0.0.0.0/0"] });
    });

    it("lists by name with a count", async () => {
      const reply = await get("/plugins");
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.count).to.equal(3);
      expect(reply.body.plugins.map((p: { name: string }) => p.name)).to.deep.equal(["admin-ips", "limits", "office-ips"]);
    });

    it("filters by type (canonical or alias) and by exact name", async () => {
      const names = async (query: string) => ((await get(`/plugins?${query}`)).body.plugins as { name: string }[]).map((p) => p.name);
      expect(await names("type=ipControl")).to.deep.equal(["admin-ips", "office-ips"]);
      expect(await names("type=ip-control")).to.deep.equal(["admin-ips", "office-ips"]);
      expect(await names("type=trafficControl&name=limits")).to.deep.equal(["limits"]);
      expect(await names("name=office")).to.deep.equal([]);
      expect(await names("type=cors")).to.deep.equal([]);
    });

    it("rejects an unknown type filter", async () => {
      const reply = await get("/plugins?type=nope");
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["type"]);
      expect(errorFor(reply, "type")).to.contain("known types");
    });

    it("answers an empty list as []", async () => {
      await harness().database.knex("plugins").delete();
      expect((await get("/plugins")).body).to.deep.equal({ status: "success", count: 0, plugins: [] });
    });
  });

  describe("GET /plugins/{pluginId}", () => {
    it("returns the plug-in", async () => {
      const plugin = await createPlugin("office-ips");
      const reply = await get(`/plugins/${plugin.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", plugin });
    });

    it("answers 404 for an unknown id and for a non-UUID", async () => {
      const unknown = await get(`/plugins/${MISSING_ID}`);
      expect(unknown.status).to.equal(404);
      expect(unknown.body).to.deep.equal({ status: "error", message: `Plug-in '${MISSING_ID}' not found` });
      const notUuid = await get("/plugins/office-ips");
      expect(notUuid.status).to.equal(404);
      expect(notUuid.body.message).to.equal("Plug-in 'office-ips' not found");
    });
  });

  describe("PUT /plugins/{pluginId} (ModifyPlugin)", () => {
    let plugin: { id: string; name: string; createdAt?: string };
    beforeEach(async () => {
      plugin = await createPlugin("office-ips", "ipControl", IP_PARAMS, { description: "Office" });
    });

    it("updates name, description and params partially and keeps createdAt", async () => {
      const before = (await get(`/plugins/${plugin.id}`)).body.plugin;
      const renamed = await put(`/plugins/${plugin.id}`, { name: "branch-ips" });
      expect(renamed.status, renamed.text).to.equal(200);
      expect(renamed.body.plugin).to.include({ name: "branch-ips", description: "Office", type: "ipControl", createdAt: before.createdAt });
      expect(renamed.body.plugin.params).to.deep.equal(IP_PARAMS);
      const reparam = await put(`/plugins/${plugin.id}`, { params: { deny: ["203.0.113.0/24"] }, description: null });
      expect(reparam.status, reparam.text).to.equal(200);
      expect(reparam.body.plugin.params).to.deep.equal({ deny: ["203.0.113.0/24"] });
      expect(reparam.body.plugin.description).to.equal(null);
      expect(reparam.body.plugin.name).to.equal("branch-ips");
      expect(Date.parse(reparam.body.plugin.updatedAt)).to.be.at.least(Date.parse(before.updatedAt));
      expect((await get(`/plugins/${plugin.id}`)).body.plugin).to.deep.equal(reparam.body.plugin);
    });

    it("validates params against the plug-in's type with field paths", async () => {
      const reply = await put(`/plugins/${plugin.id}`, { params: { allow: ["1.2.3.4", "10.0.0.0/99"] } });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["params.allow[1]"]);
      const wrongType = await put(`/plugins/${plugin.id}`, { params: TRAFFIC_PARAMS });
      expect(wrongType.status).to.equal(400);
      expect(fields(wrongType)).to.include("params");
      expect((await get(`/plugins/${plugin.id}`)).body.plugin.params).to.deep.equal(IP_PARAMS);
    });

    it("refuses to change the type, but accepts the current type or its alias", async () => {
      const reply = await put(`/plugins/${plugin.id}`, { type: "trafficControl", params: TRAFFIC_PARAMS });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include("type");
      expect(errorFor(reply, "type")).to.match(/cannot change/);
      const same = await put(`/plugins/${plugin.id}`, { type: "ip-control", description: "same type" });
      expect(same.status, same.text).to.equal(200);
      expect(same.body.plugin.type).to.equal("ipControl");
    });

    it("lists every failing field at once, including the type-dependent ones", async () => {
      const reply = await put(`/plugins/${plugin.id}`, { name: "1x", description: "d".repeat(200), params: { allow: ["nope"] }, type: "cors", extra: true });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.have.members(["name", "description", "extra", "type", "params.allow[0]"]);
    });

    it("answers 400 for an empty update and for a missing body", async () => {
      const empty = await put(`/plugins/${plugin.id}`, {});
      expect(empty.status).to.equal(400);
      expect(fields(empty)).to.deep.equal(["body"]);
      const none = await call("PUT", `/plugins/${plugin.id}`, { contentType: "application/json" });
      expect(none.status).to.equal(400);
      expect(fields(none)).to.deep.equal(["body"]);
    });

    it("enforces the 50 KB limit on update", async () => {
      const big = { request: { headers: Array.from({ length: 8 }, (_, i) => ({ name: `x-big-${i}`, value: "v".repeat(8000) })) } };
      const headers = await createPlugin("big-headers", "setHeaders", { request: { headers: [{ name: "x-a", value: "1" }] } });
      const reply = await put(`/plugins/${headers.id}`, { params: big });
      expect(reply.status).to.equal(400);
      expect(reply.body.errors).to.deep.equal([{ field: "params", message: "plug-in metadata exceeds 50 KB" }]);
    });

    it("answers 404 before validating, and 409 for a name taken by another plug-in", async () => {
      const missing = await put(`/plugins/${MISSING_ID}`, { name: "1" });
      expect(missing.status).to.equal(404);
      await createPlugin("other-ips");
      const taken = await put(`/plugins/${plugin.id}`, { name: "other-ips" });
      expect(taken.status).to.equal(409);
      expect(fields(taken)).to.deep.equal(["name"]);
      expect((await get(`/plugins/${plugin.id}`)).body.plugin.name).to.equal("office-ips");
      // Keeping its own name is not a conflict.
      expect((await put(`/plugins/${plugin.id}`, { name: "office-ips" })).status).to.equal(200);
    });

    it("records the change with the handles of every bound API", async () => {
      await createApis();
      expect((await bind(plugin.id, [READING], "RELEASE")).status).to.equal(201);
      expect((await bind(plugin.id, [PETSTORE, READING], "TEST")).status).to.equal(201);
      const revisionsBefore = await countRows("change_log");
      expect((await put(`/plugins/${plugin.id}`, { params: { allow: ["127.0.0.1"] } })).status).to.equal(200);
      expect(await countRows("change_log")).to.equal(revisionsBefore + 1);
      const last = (await changeLog()).at(-1);
      expect(last).to.deep.equal({ entity: "plugin", id: plugin.id, op: "update", apiIds: [PETSTORE, READING] });
    });
  });

  describe("DELETE /plugins/{pluginId} (DeletePlugin)", () => {
    it("deletes an unbound plug-in, then answers 404", async () => {
      const plugin = await createPlugin("office-ips");
      const reply = await del(`/plugins/${plugin.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "Plug-in deleted successfully", id: plugin.id });
      expect(await countRows("plugins")).to.equal(0);
      expect((await changeLog()).at(-1)).to.deep.equal({ entity: "plugin", id: plugin.id, op: "delete", apiIds: [] });
      expect((await del(`/plugins/${plugin.id}`)).status).to.equal(404);
      expect((await del("/plugins/not-a-uuid")).status).to.equal(404);
    });

    it("answers 409 naming the number of bindings while bound; detach then delete works", async () => {
      await createApis();
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING, PETSTORE], "RELEASE")).status).to.equal(201);
      expect((await bind(plugin.id, [READING], "TEST")).status).to.equal(201);
      const bound = await del(`/plugins/${plugin.id}`);
      expect(bound.status).to.equal(409);
      expect(bound.body.message).to.contain("3 binding(s)");
      expect(await countRows("plugins")).to.equal(1);
      expect(await countRows("plugin_bindings")).to.equal(3);
      for (const [stage, api] of [["RELEASE", READING], ["RELEASE", PETSTORE], ["TEST", READING]]) {
        expect((await del(`/plugins/${plugin.id}/bindings/${stage}/${api}`)).status).to.equal(200);
      }
      expect((await del(`/plugins/${plugin.id}`)).status).to.equal(200);
      expect(await countRows("plugins")).to.equal(0);
    });

    it("answers 409 while bound to an undeployed API", async () => {
      expect((await post("/rest-apis", restApi(READING, { deploymentState: "undeployed" }))).status).to.equal(201);
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING])).status).to.equal(201);
      expect((await del(`/plugins/${plugin.id}`)).status).to.equal(409);
    });
  });

  describe("POST /plugins/{pluginId}/bindings (AttachPlugin)", () => {
    let plugin: { id: string; name: string };
    beforeEach(async () => {
      await createApis();
      plugin = await createPlugin("office-ips");
    });

    it("binds to several APIs in one stage and answers 201 with the bindings", async () => {
      const reply = await bind(plugin.id, [READING, PETSTORE], "RELEASE");
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.bindings).to.have.length(2);
      expect(reply.body.bindings.map((b: { apiId: string }) => b.apiId)).to.deep.equal([READING, PETSTORE]);
      for (const binding of reply.body.bindings) {
        expect(binding).to.include({ pluginId: plugin.id, stage: "RELEASE" });
        expect(Date.parse(binding.boundAt)).to.not.be.NaN;
      }
      const rows = await harness().database.knex("plugin_bindings").select("plugin_type", "stage");
      expect(rows).to.have.length(2);
      expect(rows.every((r: { plugin_type: string }) => r.plugin_type === "ipControl")).to.equal(true);
      const log = (await changeLog()).filter((c) => c.entity === "plugin_binding");
      expect(log).to.deep.equal([
        { entity: "plugin_binding", id: `${plugin.id}/${READING}/RELEASE`, op: "create", apiIds: [READING] },
        { entity: "plugin_binding", id: `${plugin.id}/${PETSTORE}/RELEASE`, op: "create", apiIds: [PETSTORE] },
      ]);
    });

    it("is all or nothing: one unknown API binds none and is named in the 404", async () => {
      const reply = await bind(plugin.id, [READING, "ghost-api", PETSTORE]);
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.contain("ghost-api");
      const two = await bind(plugin.id, ["ghost-1", READING, "ghost-2"]);
      expect(two.status).to.equal(404);
      expect(two.body.message).to.contain("ghost-1").and.contain("ghost-2");
      expect(await countRows("plugin_bindings")).to.equal(0);
    });

    it("answers 409 when the same plug-in is already bound to the API in the stage, binding none", async () => {
      expect((await bind(plugin.id, [READING])).status).to.equal(201);
      const changesBefore = await countRows("change_log");
      const again = await bind(plugin.id, [PETSTORE, READING]);
      expect(again.status).to.equal(409);
      expect(again.body.message).to.contain("already bound").and.contain(READING);
      expect(await countRows("plugin_bindings")).to.equal(1);
      expect(await countRows("change_log")).to.equal(changesBefore);
    });

    it("allows one plug-in of a type per API and stage (409 naming the other), but the same type on the other stage", async () => {
      expect((await bind(plugin.id, [READING], "RELEASE")).status).to.equal(201);
      const rival = await createPlugin("partner-ips", "ip-control", { allow: ["198.51.100.0/24"] });
      const clash = await bind(rival.id, [READING], "RELEASE");
      expect(clash.status).to.equal(409);
      expect(clash.body.message).to.contain("office-ips").and.contain(READING);
      expect(await countRows("plugin_bindings")).to.equal(1);
      // The other stage is independent.
      const test = await bind(rival.id, [READING], "TEST");
      expect(test.status, test.text).to.equal(201);
      // A plug-in of another type may join on the same API and stage.
      const limits = await createPlugin("limits", "trafficControl", TRAFFIC_PARAMS);
      expect((await bind(limits.id, [READING], "RELEASE")).status).to.equal(201);
      expect(await countRows("plugin_bindings")).to.equal(3);
    });

    it("binds an undeployed API (the binding applies when it is deployed again)", async () => {
      expect((await post("/rest-apis", restApi("dormant", { displayName: "Dormant", context: "/dormant", deploymentState: "undeployed" }))).status).to.equal(201);
      const reply = await bind(plugin.id, ["dormant"], "TEST");
      expect(reply.status, reply.text).to.equal(201);
      const list = await get(`/plugins/${plugin.id}/bindings`);
      expect(list.body.bindings[0]).to.include({ apiId: "dormant", deploymentState: "undeployed", stage: "TEST" });
    });

    it("validates the body: apiIds 1-100 unique strings, stage RELEASE or TEST, no unknown fields", async () => {
      const bad = await post(`/plugins/${plugin.id}/bindings`, { apiIds: [READING, READING], stage: "PRE", force: true });
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.have.members(["apiIds[1]", "stage", "force"]);
      expect(errorFor(bad, "stage")).to.equal("must be one of: RELEASE, TEST");
      const empty = await post(`/plugins/${plugin.id}/bindings`, { apiIds: [], stage: "RELEASE" });
      expect(fields(empty)).to.deep.equal(["apiIds"]);
      const tooMany = await post(`/plugins/${plugin.id}/bindings`, { apiIds: Array.from({ length: 101 }, (_, i) => `api-${i}`), stage: "RELEASE" });
      expect(tooMany.status).to.equal(400);
      expect(errorFor(tooMany, "apiIds")).to.equal("must have at most 100 items");
      const wrongTypes = await post(`/plugins/${plugin.id}/bindings`, { apiIds: READING });
      expect(fields(wrongTypes)).to.have.members(["apiIds", "stage"]);
      expect(await countRows("plugin_bindings")).to.equal(0);
    });

    it("answers 404 for an unknown plug-in", async () => {
      const reply = await bind(MISSING_ID, [READING]);
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.equal(`Plug-in '${MISSING_ID}' not found`);
    });
  });

  describe("DELETE /plugins/{pluginId}/bindings/{stage}/{apiId} (DetachPlugin)", () => {
    let plugin: { id: string; name: string };
    beforeEach(async () => {
      await createApis();
      plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING, PETSTORE], "RELEASE")).status).to.equal(201);
    });

    it("unbinds one API in one stage and records the change", async () => {
      const reply = await del(`/plugins/${plugin.id}/bindings/RELEASE/${READING}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "Plug-in detached successfully", pluginId: plugin.id, apiId: READING, stage: "RELEASE" });
      expect(await countRows("plugin_bindings")).to.equal(1);
      expect((await changeLog()).at(-1)).to.deep.equal({ entity: "plugin_binding", id: `${plugin.id}/${READING}/RELEASE`, op: "delete", apiIds: [READING] });
    });

    it("answers 404 when not bound, for an unknown API or plug-in; 400 for a bad stage", async () => {
      const changesBefore = await countRows("change_log");
      const otherStage = await del(`/plugins/${plugin.id}/bindings/TEST/${READING}`);
      expect(otherStage.status).to.equal(404);
      expect(otherStage.body.message).to.contain("not bound");
      expect((await del(`/plugins/${plugin.id}/bindings/RELEASE/ghost`)).status).to.equal(404);
      expect((await del(`/plugins/${MISSING_ID}/bindings/RELEASE/${READING}`)).status).to.equal(404);
      const badStage = await del(`/plugins/${plugin.id}/bindings/PROD/${READING}`);
      expect(badStage.status).to.equal(400);
      expect(fields(badStage)).to.deep.equal(["stage"]);
      expect(await countRows("plugin_bindings")).to.equal(2);
      expect(await countRows("change_log")).to.equal(changesBefore);
    });
  });

  describe("GET /plugins/{pluginId}/bindings (DescribePluginApis)", () => {
    it("lists the bound APIs with stage and deployment state, optionally by stage", async () => {
      await createApis();
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING, PETSTORE], "RELEASE")).status).to.equal(201);
      expect((await bind(plugin.id, [READING], "TEST")).status).to.equal(201);
      const reply = await get(`/plugins/${plugin.id}/bindings`);
      expect(reply.status).to.equal(200);
      expect(reply.body.count).to.equal(3);
      expect(reply.body.bindings.map((b: { apiId: string; stage: string }) => `${b.apiId}/${b.stage}`)).to.deep.equal([
        `${PETSTORE}/RELEASE`,
        `${READING}/RELEASE`,
        `${READING}/TEST`,
      ]);
      expect(Object.keys(reply.body.bindings[0])).to.deep.equal(["apiId", "displayName", "stage", "deploymentState", "boundAt"]);
      expect(reply.body.bindings[0]).to.include({ displayName: "Petstore", deploymentState: "deployed" });
      const test = await get(`/plugins/${plugin.id}/bindings?stage=TEST`);
      expect(test.body.count).to.equal(1);
      expect(test.body.bindings[0].apiId).to.equal(READING);
    });

    it("answers 404 for an unknown plug-in and 400 for a bad stage", async () => {
      expect((await get(`/plugins/${MISSING_ID}/bindings`)).status).to.equal(404);
      const plugin = await createPlugin("office-ips");
      const bad = await get(`/plugins/${plugin.id}/bindings?stage=PRE`);
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.deep.equal(["stage"]);
      expect((await get(`/plugins/${plugin.id}/bindings`)).body).to.deep.equal({ status: "success", count: 0, bindings: [] });
    });
  });

  describe("GET /rest-apis/{id}/plugins (DescribePluginsByApi)", () => {
    it("lists the API's plug-ins with their stage, optionally by stage", async () => {
      await createApis();
      const ips = await createPlugin("office-ips");
      const limits = await createPlugin("limits", "trafficControl", TRAFFIC_PARAMS);
      expect((await bind(ips.id, [READING], "RELEASE")).status).to.equal(201);
      expect((await bind(limits.id, [READING], "RELEASE")).status).to.equal(201);
      expect((await bind(limits.id, [READING, PETSTORE], "TEST")).status).to.equal(201);
      const reply = await get(`/rest-apis/${READING}/plugins`);
      expect(reply.status).to.equal(200);
      expect(reply.body.count).to.equal(3);
      expect(reply.body.plugins.map((p: { name: string; stage: string }) => `${p.stage}/${p.name}`)).to.deep.equal([
        "RELEASE/limits",
        "RELEASE/office-ips",
        "TEST/limits",
      ]);
      const first = reply.body.plugins[0];
      expect(first).to.include({ id: limits.id, type: "trafficControl", stage: "RELEASE" });
      expect(first.params).to.deep.equal(TRAFFIC_PARAMS);
      expect(Date.parse(first.boundAt)).to.not.be.NaN;
      const test = await get(`/rest-apis/${PETSTORE}/plugins?stage=TEST`);
      expect(test.body.plugins.map((p: { name: string }) => p.name)).to.deep.equal(["limits"]);
      expect((await get(`/rest-apis/${PETSTORE}/plugins?stage=RELEASE`)).body).to.deep.equal({ status: "success", count: 0, plugins: [] });
    });

    it("answers 404 for an unknown API", async () => {
      const reply = await get("/rest-apis/ghost/plugins");
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.contain("ghost");
    });
  });

  describe("bindings and the API's life cycle", () => {
    it("undeploying an API keeps its bindings; redeploying shows them again as deployed", async () => {
      await createApis();
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING], "RELEASE")).status).to.equal(201);
      expect((await put(`/rest-apis/${READING}`, restApi(READING, { deploymentState: "undeployed" }))).status).to.equal(200);
      expect(await countRows("plugin_bindings")).to.equal(1);
      const listed = await get(`/plugins/${plugin.id}/bindings`);
      expect(listed.body.bindings[0]).to.include({ apiId: READING, deploymentState: "undeployed" });
      expect((await get(`/rest-apis/${READING}/plugins`)).body.count).to.equal(1);
      expect((await put(`/rest-apis/${READING}`, restApi(READING))).status).to.equal(200);
      expect((await get(`/plugins/${plugin.id}/bindings`)).body.bindings[0].deploymentState).to.equal("deployed");
    });

    it("deleting an API removes its bindings, after which the plug-in can be deleted", async () => {
      await createApis();
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING], "RELEASE")).status).to.equal(201);
      expect((await bind(plugin.id, [READING], "TEST")).status).to.equal(201);
      expect((await bind(plugin.id, [PETSTORE], "TEST")).status).to.equal(201);
      expect((await del(`/rest-apis/${READING}`)).status).to.equal(200);
      expect(await countRows("plugin_bindings")).to.equal(1);
      expect((await get(`/plugins/${plugin.id}/bindings`)).body.bindings.map((b: { apiId: string }) => b.apiId)).to.deep.equal([PETSTORE]);
      expect((await del(`/rest-apis/${PETSTORE}`)).status).to.equal(200);
      expect((await del(`/plugins/${plugin.id}`)).status).to.equal(200);
    });
  });

  describe("roles", () => {
    it("lets a developer manage plug-ins", async () => {
      await createApis();
      const created = await post("/plugins", { name: "dev-ips", type: "ipControl", params: IP_PARAMS }, { as: "developer" });
      expect(created.status).to.equal(201);
      const id = created.body.plugin.id;
      expect((await get("/plugins", { as: "developer" })).body.count).to.equal(1);
      expect((await put(`/plugins/${id}`, { description: "by dev" }, { as: "developer" })).status).to.equal(200);
      expect((await post(`/plugins/${id}/bindings`, { apiIds: [READING], stage: "RELEASE" }, { as: "developer" })).status).to.equal(201);
      expect((await get(`/rest-apis/${READING}/plugins`, { as: "developer" })).status).to.equal(200);
      expect((await del(`/plugins/${id}/bindings/RELEASE/${READING}`, { as: "developer" })).status).to.equal(200);
      expect((await del(`/plugins/${id}`, { as: "developer" })).status).to.equal(200);
    });

    it("answers 403 to a consumer on every endpoint and changes nothing", async () => {
      await createApis();
      const plugin = await createPlugin("office-ips");
      expect((await bind(plugin.id, [READING])).status).to.equal(201);
      const changesBefore = await countRows("change_log");
      const attempts: Reply[] = [
        await post("/plugins", { name: "sneaky", type: "cors", params: { allowOrigins: ["*"] } }, { as: "consumer" }),
        await get("/plugins", { as: "consumer" }),
        await get(`/plugins/${plugin.id}`, { as: "consumer" }),
        await put(`/plugins/${plugin.id}`, { name: "sneaky" }, { as: "consumer" }),
        await del(`/plugins/${plugin.id}`, { as: "consumer" }),
        await post(`/plugins/${plugin.id}/bindings`, { apiIds: [PETSTORE], stage: "RELEASE" }, { as: "consumer" }),
        await get(`/plugins/${plugin.id}/bindings`, { as: "consumer" }),
        await del(`/plugins/${plugin.id}/bindings/RELEASE/${READING}`, { as: "consumer" }),
        await get(`/rest-apis/${READING}/plugins`, { as: "consumer" }),
      ];
      for (const reply of attempts) expect(reply.status).to.equal(403);
      expect(await countRows("plugins")).to.equal(1);
      expect(await countRows("plugin_bindings")).to.equal(1);
      expect(await countRows("change_log")).to.equal(changesBefore);
      expect((await get(`/plugins/${plugin.id}`)).body.plugin.name).to.equal("office-ips");
    });

    it("answers 401 without credentials", async () => {
      expect((await get("/plugins", { as: null })).status).to.equal(401);
      expect((await post("/plugins", { name: "anon-ips", type: "ipControl", params: IP_PARAMS }, { as: null })).status).to.equal(401);
      expect(await countRows("plugins")).to.equal(0);
    });
  });
});

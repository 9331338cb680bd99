import { expect } from "chai";
import { SecretBox, sha256Hex } from "@apigw/shared";
import { call, countRows, del, fields, get, post, put, type Reply } from "../support/client";
import { TEST_MASTER_KEY } from "../support/environment";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

const box = new SecretBox(TEST_MASTER_KEY);
const MISSING = "00000000-0000-4000-8000-000000000000";

async function createApp(body: Record<string, unknown> = {}): Promise<Reply> {
  const reply = await post("/applications", { name: "reading-app", ...body });
  expect(reply.status, reply.text).to.equal(201);
  return reply;
}

async function keyPairRow(appKey: string): Promise<Record<string, any>> {
  return harness().database.knex("app_key_pairs").where({ app_key: appKey }).first();
}

async function appRow(id: string): Promise<Record<string, any>> {
  return harness().database.knex("applications").where({ id }).first();
}

async function lastChange(): Promise<{ revision: number; changes: { entity: string; id: string; op: string; apiIds?: string[] }[] }> {
  const row = await harness().database.knex("change_log").orderBy("revision", "desc").first();
  return { revision: Number(row.revision), changes: typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes };
}

/** An API and an authorization of the application for it, so that its changes name the API. */
async function authorize(appId: string, apiHandle = "reading-list-api-v1.0"): Promise<void> {
  expect((await post("/rest-apis", restApi(apiHandle))).status).to.equal(201);
  const reply = await post("/authorizations", { applicationId: appId, apiId: apiHandle, stage: "RELEASE" });
  expect(reply.status, reply.text).to.equal(201);
}

/** Counts of every table this resource writes, to prove that a failed request changed nothing. */
async function counts() {
  return {
    applications: await countRows("applications"),
    pairs: await countRows("app_key_pairs"),
    authorizations: await countRows("authorizations"),
    changes: await countRows("change_log"),
  };
}

describe("applications", () => {
  describe("POST /applications", () => {
    it("creates an application with a generated key pair and AppCode, shown raw only here", async () => {
      const reply = await post("/applications", { name: "reading-app" });
      expect(reply.status).to.equal(201);
      expect(reply.body.status).to.equal("success");
      const app = reply.body.application;
      expect(Object.keys(app)).to.deep.equal(["id", "name", "description", "tags", "extInfo", "status", "appCode", "keyPairs", "createdAt", "updatedAt"]);
      expect(app.id).to.match(/^[0-9a-f-]{36}$/);
      expect(app).to.include({ name: "reading-app", description: null, extInfo: null, status: "ENABLED" });
      expect(app.tags).to.deep.equal({});
      expect(app.appCode).to.match(/^[0-9a-f]{32}$/);
      expect(app.keyPairs).to.have.length(1);
      expect(Object.keys(app.keyPairs[0])).to.deep.equal(["appKey", "appSecret", "isDefault", "createdAt"]);
      expect(app.keyPairs[0].appKey).to.match(/^[a-z0-9]{24}$/);
      expect(app.keyPairs[0].appSecret).to.match(/^[0-9a-f]{32}$/);
      expect(app.keyPairs[0].isDefault).to.equal(true);
      expect(Number.isNaN(Date.parse(app.createdAt))).to.equal(false);
      expect(reply.headers.get("location")).to.equal(`/api/management/v0.9/applications/${app.id}`);
      const change = await lastChange();
      expect(change.changes).to.deep.equal([{ entity: "application", id: app.id, op: "create", apiIds: [] }]);
    });

    it("accepts a custom AppKey, AppSecret, AppCode, tags, description and extInfo", async () => {
      const body = {
        name: "Custom_App-1",
        description: "The reading list mobile app",
        tags: { team: "books", env: "prod" },
        extInfo: '{"tenant":"acme"}',
        appKey: "203753911",
        appSecret: "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6!#$%",
        appCode: "my_app-code_0123456789",
      };
      const reply = await post("/applications", body);
      expect(reply.status, reply.text).to.equal(201);
      const app = reply.body.application;
      expect(app).to.include({ name: body.name, description: body.description, extInfo: body.extInfo, appCode: body.appCode });
      expect(app.tags).to.deep.equal(body.tags);
      expect(app.keyPairs[0]).to.include({ appKey: body.appKey, appSecret: body.appSecret, isDefault: true });
    });

    it("stores the AppSecret only sealed with the master key and the AppKey as associated data", async () => {
      const app = (await createApp()).body.application;
      const { appKey, appSecret } = app.keyPairs[0];
      const row = await keyPairRow(appKey);
      expect(row.app_id).to.equal(app.id);
      expect(row.is_default).to.equal(true);
      expect(JSON.stringify(row)).to.not.contain(appSecret);
      expect(row.secret_sealed).to.match(/^v1\./);
      expect(box.decrypt(row.secret_sealed, appKey)).to.equal(appSecret);
      expect(() => box.decrypt(row.secret_sealed, "another-app-key")).to.throw();
      expect(() => box.decrypt(row.secret_sealed)).to.throw();
    });

    it("stores the AppCode only as a SHA-256 hash and its last five characters", async () => {
      const app = (await createApp()).body.application;
      const row = await appRow(app.id);
      expect(row.app_code_hash).to.equal(sha256Hex(app.appCode));
      expect(row.app_code_suffix).to.equal(app.appCode.slice(-5));
      expect(JSON.stringify(row)).to.not.contain(app.appCode);
    });

    it("lists every failing field at once and stores nothing", async () => {
      const tags: Record<string, string> = {};
      for (let i = 0; i < 21; i++) tags[`t${i}`] = "v";
      const reply = await post("/applications", {
        name: "1abc",
        description: "d".repeat(181),
        tags,
        extInfo: "e".repeat(1025),
        appKey: "short",
        appSecret: "has a space in the secret",
        appCode: "bad code with spaces",
      });
      expect(reply.status).to.equal(400);
      expect(reply.body.status).to.equal("error");
      expect(fields(reply)).to.have.members(["name", "description", "tags", "extInfo", "appKey", "appSecret", "appCode"]);
      expect(await counts()).to.deep.equal({ applications: 0, pairs: 0, authorizations: 0, changes: 0 });
    });

    it("checks name length and pattern, tag names and values, and credential lengths", async () => {
      const byField = async (body: Record<string, unknown>) => {
        const reply = await post("/applications", body);
        expect(reply.status).to.equal(400);
        return Object.fromEntries((reply.body.errors as { field: string; message: string }[]).map((e) => [e.field, e.message]));
      };
      expect((await byField({ name: "abc" })).name).to.equal("must be at least 4 characters");
      expect((await byField({ name: "a".repeat(65) })).name).to.equal("must be at most 64 characters");
      expect((await byField({ name: "has space" })).name).to.match(/must start with a letter/);
      expect((await byField({ name: "reading-app", tags: { "": "x" } })).tags).to.match(/must not be empty/);
      expect((await byField({ name: "reading-app", tags: { ["k".repeat(65)]: "x" } })).tags).to.match(/longer than 64/);
      expect((await byField({ name: "reading-app", tags: { team: "v".repeat(257) } }))["tags.team"]).to.equal("must be at most 256 characters");
      expect((await byField({ name: "reading-app", tags: { team: 1 } }))["tags.team"]).to.equal("must be a string");
      expect((await byField({ name: "reading-app", tags: ["a"] })).tags).to.match(/must be an object/);
      expect((await byField({ name: "reading-app", appKey: "k".repeat(65) })).appKey).to.equal("must be at most 64 characters");
      expect((await byField({ name: "reading-app", appKey: "bad.key.here" })).appKey).to.match(/letters, digits/);
      expect((await byField({ name: "reading-app", appSecret: "tooshort" })).appSecret).to.equal("must be at least 16 characters");
      expect((await byField({ name: "reading-app", appSecret: "s".repeat(129) })).appSecret).to.equal("must be at most 128 characters");
      expect((await byField({ name: "reading-app", appSecret: "sixteen-chars-é-x" })).appSecret).to.match(/printable ASCII/);
      expect((await byField({ name: "reading-app", appCode: "c".repeat(15) })).appCode).to.equal("must be at least 16 characters");
      expect(await countRows("applications")).to.equal(0);
    });

    it("accepts the boundary lengths", async () => {
      const tags: Record<string, string> = {};
      for (let i = 0; i < 20; i++) tags[`${"k".repeat(62)}${String(i).padStart(2, "0")}`] = "v".repeat(256);
      const reply = await post("/applications", {
        name: "a".repeat(64),
        description: "d".repeat(180),
        tags,
        extInfo: "e".repeat(1024),
        appKey: "k".repeat(8),
        appSecret: "~".repeat(128),
        appCode: "c".repeat(16),
      });
      expect(reply.status, reply.text).to.equal(201);
      expect(Object.keys(reply.body.application.tags)).to.have.length(20);
    });

    it("requires a name, rejects unknown fields and wrong types", async () => {
      const missing = await post("/applications", { description: "x" });
      expect(missing.status).to.equal(400);
      expect(missing.body.errors).to.deep.equal([{ field: "name", message: "is required" }]);
      const unknown = await post("/applications", { name: "reading-app", status: "DISABLED", keyPairs: [] });
      expect(unknown.status).to.equal(400);
      expect(fields(unknown)).to.have.members(["status", "keyPairs"]);
      expect(unknown.body.errors[0].message).to.equal("unknown field");
      const types = await post("/applications", { name: 42, description: false, extInfo: {} });
      expect(types.status).to.equal(400);
      expect(fields(types)).to.have.members(["name", "description", "extInfo"]);
      expect(await countRows("applications")).to.equal(0);
    });

    it("answers 400 for an empty or non-object body", async () => {
      const empty = await call("POST", "/applications", { contentType: "application/json" });
      expect(empty.status).to.equal(400);
      expect(fields(empty)).to.deep.equal(["body"]);
      const array = await post("/applications", ["reading-app"]);
      expect(array.status).to.equal(400);
      expect(await countRows("applications")).to.equal(0);
    });

    it("answers 409 for a taken name, AppKey or AppCode and stores nothing more", async () => {
      await createApp({ appKey: "taken-key-1", appCode: "taken-code-0123456789" });
      const before = await counts();
      const sameName = await post("/applications", { name: "reading-app" });
      expect(sameName.status).to.equal(409);
      expect(sameName.body.message).to.equal("Application with name 'reading-app' already exists");
      expect(fields(sameName)).to.deep.equal(["name"]);
      const sameKey = await post("/applications", { name: "other-app", appKey: "taken-key-1" });
      expect(sameKey.status).to.equal(409);
      expect(sameKey.body.message).to.contain("taken-key-1");
      expect(fields(sameKey)).to.deep.equal(["appKey"]);
      const sameCode = await post("/applications", { name: "other-app", appCode: "taken-code-0123456789" });
      expect(sameCode.status).to.equal(409);
      expect(fields(sameCode)).to.deep.equal(["appCode"]);
      expect(sameCode.text).to.not.contain("taken-code-0123456789");
      expect(await counts()).to.deep.equal(before);
    });

    it("answers 401 without credentials and 403 for a consumer; a developer may create", async () => {
      expect((await post("/applications", { name: "reading-app" }, { as: null })).status).to.equal(401);
      const consumer = await post("/applications", { name: "reading-app" }, { as: "consumer" });
      expect(consumer.status).to.equal(403);
      expect(consumer.body).to.include({ error: "forbidden" });
      expect(await countRows("applications")).to.equal(0);
      expect((await post("/applications", { name: "reading-app" }, { as: "developer" })).status).to.equal(201);
      expect((await appRow((await get("/applications")).body.applications[0].id)).created_by).to.equal("dev");
    });
  });

  describe("GET /applications", () => {
    let first: any;
    let second: any;
    beforeEach(async () => {
      first = (await createApp({ name: "first-app" })).body.application;
      second = (await createApp({ name: "second-app" })).body.application;
      expect((await post(`/applications/${first.id}/disable`)).status).to.equal(200);
    });

    it("lists newest first, without AppSecrets and with masked AppCodes", async () => {
      const reply = await get("/applications");
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.count).to.equal(2);
      expect(reply.body.applications.map((a: { name: string }) => a.name)).to.deep.equal(["second-app", "first-app"]);
      const shown = reply.body.applications[1];
      expect(shown.appCode).to.equal("***" + first.appCode.slice(-5));
      expect(shown.keyPairs).to.deep.equal([{ appKey: first.keyPairs[0].appKey, isDefault: true, createdAt: first.keyPairs[0].createdAt }]);
      for (const secret of [first.keyPairs[0].appSecret, second.keyPairs[0].appSecret, first.appCode, second.appCode]) {
        expect(reply.text).to.not.contain(secret);
      }
    });

    it("filters by exact name and by status", async () => {
      const names = async (query: string) => ((await get(`/applications?${query}`)).body.applications as { name: string }[]).map((a) => a.name);
      expect(await names("name=first-app")).to.deep.equal(["first-app"]);
      expect(await names("name=first")).to.deep.equal([]);
      expect(await names("status=DISABLED")).to.deep.equal(["first-app"]);
      expect(await names("status=ENABLED")).to.deep.equal(["second-app"]);
      expect(await names("status=ENABLED&name=first-app")).to.deep.equal([]);
    });

    it("answers 400 for a bad status filter", async () => {
      const reply = await get("/applications?status=PAUSED");
      expect(reply.status).to.equal(400);
      expect(reply.body.errors).to.deep.equal([{ field: "status", message: "must be one of: ENABLED, DISABLED" }]);
    });

    it("answers 403 for a consumer; a developer may list", async () => {
      expect((await get("/applications", { as: "consumer" })).status).to.equal(403);
      expect((await get("/applications", { as: "developer" })).body.count).to.equal(2);
    });
  });

  describe("GET /applications/{appId}", () => {
    it("shows the application without its AppSecret and with a masked AppCode", async () => {
      const app = (await createApp({ tags: { team: "books" } })).body.application;
      const reply = await get(`/applications/${app.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      const shown = reply.body.application;
      expect(shown).to.include({ id: app.id, name: "reading-app", status: "ENABLED", appCode: "***" + app.appCode.slice(-5) });
      expect(shown.tags).to.deep.equal({ team: "books" });
      expect(shown.keyPairs[0]).to.not.have.property("appSecret");
      expect(reply.text).to.not.contain(app.keyPairs[0].appSecret);
      expect(reply.text).to.not.contain(app.appCode);
    });

    it("answers 404 for an unknown id and for a non-UUID id", async () => {
      const unknown = await get(`/applications/${MISSING}`);
      expect(unknown.status).to.equal(404);
      expect(unknown.body).to.deep.include({ status: "error", message: `Application '${MISSING}' not found` });
      const notUuid = await get("/applications/reading-app");
      expect(notUuid.status).to.equal(404);
      expect(notUuid.body.message).to.equal("Application 'reading-app' not found");
    });

    it("answers 403 for a consumer", async () => {
      const app = (await createApp()).body.application;
      expect((await get(`/applications/${app.id}`, { as: "consumer" })).status).to.equal(403);
    });
  });

  describe("PUT /applications/{appId}", () => {
    it("updates only the fields given and records a change naming the authorized APIs", async () => {
      const app = (await createApp({ description: "old", tags: { a: "1" }, extInfo: "x" })).body.application;
      await authorize(app.id);
      const reply = await put(`/applications/${app.id}`, { name: "renamed-app", tags: { b: "2" } });
      expect(reply.status, reply.text).to.equal(200);
      const updated = reply.body.application;
      expect(updated).to.include({ id: app.id, name: "renamed-app", description: "old", extInfo: "x", status: "ENABLED" });
      expect(updated.tags).to.deep.equal({ b: "2" });
      expect(updated.appCode).to.equal("***" + app.appCode.slice(-5));
      expect(Date.parse(updated.updatedAt)).to.be.at.least(Date.parse(app.updatedAt));
      expect((await lastChange()).changes).to.deep.equal([{ entity: "application", id: app.id, op: "update", apiIds: ["reading-list-api-v1.0"] }]);
      const again = await get(`/applications/${app.id}`);
      expect(again.body.application.name).to.equal("renamed-app");
    });

    it("clears description and extInfo with null", async () => {
      const app = (await createApp({ description: "old", extInfo: "x" })).body.application;
      const reply = await put(`/applications/${app.id}`, { description: null, extInfo: null });
      expect(reply.status).to.equal(200);
      expect(reply.body.application).to.include({ description: null, extInfo: null });
    });

    it("answers 409 when the new name is taken and changes nothing", async () => {
      await createApp({ name: "taken-app" });
      const app = (await createApp()).body.application;
      const before = await counts();
      const reply = await put(`/applications/${app.id}`, { name: "taken-app", description: "new" });
      expect(reply.status).to.equal(409);
      expect(fields(reply)).to.deep.equal(["name"]);
      expect(await counts()).to.deep.equal(before);
      expect((await appRow(app.id)).description).to.equal(null);
    });

    it("answers 400 for invalid values and unknown fields and changes nothing", async () => {
      const app = (await createApp()).body.application;
      const before = await counts();
      const reply = await put(`/applications/${app.id}`, { name: "x", description: "d".repeat(181), appKey: "new-key-123", status: "DISABLED" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.have.members(["name", "description", "appKey", "status"]);
      expect(await counts()).to.deep.equal(before);
      expect((await appRow(app.id)).name).to.equal("reading-app");
    });

    it("answers 404 for an unknown application and 403 for a consumer", async () => {
      expect((await put(`/applications/${MISSING}`, { description: "x" })).status).to.equal(404);
      const app = (await createApp()).body.application;
      expect((await put(`/applications/${app.id}`, { description: "x" }, { as: "consumer" })).status).to.equal(403);
      expect((await put(`/applications/${app.id}`, { description: "x" }, { as: "developer" })).status).to.equal(200);
    });
  });

  describe("DELETE /applications/{appId}", () => {
    it("deletes the application with its key pairs and authorizations", async () => {
      const app = (await createApp()).body.application;
      expect((await post(`/applications/${app.id}/key-pairs`)).status).to.equal(201);
      await authorize(app.id);
      expect(await countRows("app_key_pairs")).to.equal(2);
      expect(await countRows("authorizations")).to.equal(1);
      const reply = await del(`/applications/${app.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "Application deleted successfully", id: app.id });
      expect(await countRows("applications")).to.equal(0);
      expect(await countRows("app_key_pairs")).to.equal(0);
      expect(await countRows("authorizations")).to.equal(0);
      expect(await countRows("rest_apis")).to.equal(1);
      expect((await lastChange()).changes).to.deep.equal([{ entity: "application", id: app.id, op: "delete", apiIds: ["reading-list-api-v1.0"] }]);
      expect((await get(`/applications/${app.id}`)).status).to.equal(404);
      expect((await del(`/applications/${app.id}`)).status).to.equal(404);
    });

    it("answers 404 for unknown and non-UUID ids and 403 for a consumer", async () => {
      expect((await del(`/applications/${MISSING}`)).status).to.equal(404);
      expect((await del("/applications/nope")).status).to.equal(404);
      const app = (await createApp()).body.application;
      expect((await del(`/applications/${app.id}`, { as: "consumer" })).status).to.equal(403);
      expect(await countRows("applications")).to.equal(1);
    });
  });

  describe("POST /applications/{appId}/disable and /enable", () => {
    it("disables and enables an application, idempotently", async () => {
      const app = (await createApp()).body.application;
      await authorize(app.id);
      const changesBefore = await countRows("change_log");
      const disabled = await post(`/applications/${app.id}/disable`);
      expect(disabled.status).to.equal(200);
      expect(disabled.body.status).to.equal("success");
      expect(disabled.body.application).to.include({ id: app.id, status: "DISABLED" });
      expect(disabled.body.application.keyPairs[0]).to.not.have.property("appSecret");
      expect((await lastChange()).changes).to.deep.equal([{ entity: "application", id: app.id, op: "update", apiIds: ["reading-list-api-v1.0"] }]);
      const again = await post(`/applications/${app.id}/disable`);
      expect(again.status).to.equal(200);
      expect(again.body.application.status).to.equal("DISABLED");
      expect(await countRows("change_log")).to.equal(changesBefore + 1);
      expect((await appRow(app.id)).status).to.equal("DISABLED");
      const enabled = await post(`/applications/${app.id}/enable`);
      expect(enabled.status).to.equal(200);
      expect(enabled.body.application.status).to.equal("ENABLED");
      expect((await post(`/applications/${app.id}/enable`)).body.application.status).to.equal("ENABLED");
      expect(await countRows("change_log")).to.equal(changesBefore + 2);
    });

    it("answers 404 for an unknown application and 403 for a consumer", async () => {
      expect((await post(`/applications/${MISSING}/disable`)).status).to.equal(404);
      expect((await post(`/applications/${MISSING}/enable`)).status).to.equal(404);
      const app = (await createApp()).body.application;
      expect((await post(`/applications/${app.id}/disable`, undefined, { as: "consumer" })).status).to.equal(403);
      expect((await appRow(app.id)).status).to.equal("ENABLED");
      expect((await post(`/applications/${app.id}/disable`, undefined, { as: "developer" })).status).to.equal(200);
    });
  });

  describe("POST /applications/{appId}/key-pairs", () => {
    it("adds a generated pair, sealed at rest, shown raw only in the answer", async () => {
      const app = (await createApp()).body.application;
      const reply = await post(`/applications/${app.id}/key-pairs`);
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.status).to.equal("success");
      const pair = reply.body.keyPair;
      expect(Object.keys(pair)).to.deep.equal(["appKey", "appSecret", "isDefault", "createdAt"]);
      expect(pair.appKey).to.match(/^[a-z0-9]{24}$/);
      expect(pair.appSecret).to.match(/^[0-9a-f]{32}$/);
      expect(pair.isDefault).to.equal(false);
      const row = await keyPairRow(pair.appKey);
      expect(row.secret_sealed).to.not.contain(pair.appSecret);
      expect(box.decrypt(row.secret_sealed, pair.appKey)).to.equal(pair.appSecret);
      expect(() => box.decrypt(row.secret_sealed, app.keyPairs[0].appKey)).to.throw();
      const shown = (await get(`/applications/${app.id}`)).body.application;
      expect(shown.keyPairs.map((p: { appKey: string; isDefault: boolean }) => [p.appKey, p.isDefault])).to.deep.equal([
        [app.keyPairs[0].appKey, true],
        [pair.appKey, false],
      ]);
      expect(JSON.stringify(shown)).to.not.contain(pair.appSecret);
      expect((await lastChange()).changes[0]).to.include({ entity: "application", id: app.id, op: "update" });
    });

    it("accepts a custom AppKey and AppSecret", async () => {
      const app = (await createApp()).body.application;
      const reply = await post(`/applications/${app.id}/key-pairs`, { appKey: "extra_key-01", appSecret: "extra-secret-0123456789" });
      expect(reply.status).to.equal(201);
      expect(reply.body.keyPair).to.include({ appKey: "extra_key-01", appSecret: "extra-secret-0123456789", isDefault: false });
      expect(box.decrypt((await keyPairRow("extra_key-01")).secret_sealed, "extra_key-01")).to.equal("extra-secret-0123456789");
    });

    it("answers 409 for an AppKey in use by any application", async () => {
      const other = (await createApp({ name: "other-app", appKey: "others-key" })).body.application;
      const app = (await createApp()).body.application;
      const before = await counts();
      const clash = await post(`/applications/${app.id}/key-pairs`, { appKey: "others-key" });
      expect(clash.status).to.equal(409);
      expect(fields(clash)).to.deep.equal(["appKey"]);
      const own = await post(`/applications/${app.id}/key-pairs`, { appKey: app.keyPairs[0].appKey });
      expect(own.status).to.equal(409);
      expect(await counts()).to.deep.equal(before);
      expect((await keyPairRow("others-key")).app_id).to.equal(other.id);
    });

    it("allows at most five pairs per application", async () => {
      const app = (await createApp()).body.application;
      for (let i = 0; i < 4; i++) expect((await post(`/applications/${app.id}/key-pairs`)).status).to.equal(201);
      const before = await counts();
      const sixth = await post(`/applications/${app.id}/key-pairs`);
      expect(sixth.status).to.equal(400);
      expect(sixth.body.message).to.match(/at most 5 key pairs/);
      expect(await counts()).to.deep.equal(before);
      expect(before.pairs).to.equal(5);
      // The limit is per application.
      const other = (await createApp({ name: "other-app" })).body.application;
      expect((await post(`/applications/${other.id}/key-pairs`)).status).to.equal(201);
    });

    it("answers 400 for invalid values and unknown fields, 404 for an unknown application, 403 for a consumer", async () => {
      const app = (await createApp()).body.application;
      const bad = await post(`/applications/${app.id}/key-pairs`, { appKey: "a b", appSecret: "short", isDefault: true });
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.have.members(["appKey", "appSecret", "isDefault"]);
      expect(await countRows("app_key_pairs")).to.equal(1);
      expect((await post(`/applications/${MISSING}/key-pairs`)).status).to.equal(404);
      expect((await post(`/applications/${app.id}/key-pairs`, undefined, { as: "consumer" })).status).to.equal(403);
      expect(await countRows("app_key_pairs")).to.equal(1);
    });
  });

  describe("DELETE /applications/{appId}/key-pairs/{appKey}", () => {
    it("deletes an added pair", async () => {
      const app = (await createApp()).body.application;
      const added = (await post(`/applications/${app.id}/key-pairs`)).body.keyPair;
      const reply = await del(`/applications/${app.id}/key-pairs/${added.appKey}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "Key pair deleted successfully", appKey: added.appKey });
      expect(await keyPairRow(added.appKey)).to.equal(undefined);
      expect((await get(`/applications/${app.id}`)).body.application.keyPairs).to.have.length(1);
      expect((await lastChange()).changes[0]).to.include({ entity: "application", id: app.id, op: "update" });
    });

    it("answers 409 for the default pair and keeps it", async () => {
      const app = (await createApp()).body.application;
      const before = await counts();
      const reply = await del(`/applications/${app.id}/key-pairs/${app.keyPairs[0].appKey}`);
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.equal("the default key pair cannot be deleted");
      expect(await counts()).to.deep.equal(before);
    });

    it("answers 404 for an unknown pair, another application's pair and an unknown application", async () => {
      const app = (await createApp()).body.application;
      const other = (await createApp({ name: "other-app" })).body.application;
      const otherPair = (await post(`/applications/${other.id}/key-pairs`)).body.keyPair;
      expect((await del(`/applications/${app.id}/key-pairs/no-such-key`)).status).to.equal(404);
      expect((await del(`/applications/${app.id}/key-pairs/${otherPair.appKey}`)).status).to.equal(404);
      expect((await del(`/applications/${MISSING}/key-pairs/${otherPair.appKey}`)).status).to.equal(404);
      expect(await keyPairRow(otherPair.appKey)).to.not.equal(undefined);
      expect((await del(`/applications/${other.id}/key-pairs/${otherPair.appKey}`, { as: "consumer" })).status).to.equal(403);
      expect(await keyPairRow(otherPair.appKey)).to.not.equal(undefined);
    });
  });

  describe("POST /applications/{appId}/key-pairs/{appKey}/reset-secret", () => {
    it("replaces the sealed secret; the old secret no longer matches", async () => {
      const app = (await createApp()).body.application;
      const { appKey, appSecret: oldSecret } = app.keyPairs[0];
      const sealedBefore = (await keyPairRow(appKey)).secret_sealed;
      const reply = await post(`/applications/${app.id}/key-pairs/${appKey}/reset-secret`);
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.keyPair).to.include({ appKey, isDefault: true });
      const newSecret = reply.body.keyPair.appSecret;
      expect(newSecret).to.match(/^[0-9a-f]{32}$/).and.not.equal(oldSecret);
      const sealedAfter = (await keyPairRow(appKey)).secret_sealed;
      expect(sealedAfter).to.not.equal(sealedBefore);
      expect(sealedAfter).to.not.contain(newSecret);
      expect(box.decrypt(sealedAfter, appKey)).to.equal(newSecret);
      expect(box.decrypt(sealedAfter, appKey)).to.not.equal(oldSecret);
      expect((await get(`/applications/${app.id}`)).text).to.not.contain(newSecret);
      expect((await lastChange()).changes[0]).to.include({ entity: "application", id: app.id, op: "update" });
    });

    it("accepts a custom secret (body optional) and works on added pairs", async () => {
      const app = (await createApp()).body.application;
      const added = (await post(`/applications/${app.id}/key-pairs`)).body.keyPair;
      const reply = await post(`/applications/${app.id}/key-pairs/${added.appKey}/reset-secret`, { appSecret: "my-new-secret-0123456789" });
      expect(reply.status).to.equal(200);
      expect(reply.body.keyPair).to.include({ appKey: added.appKey, appSecret: "my-new-secret-0123456789", isDefault: false });
      expect(box.decrypt((await keyPairRow(added.appKey)).secret_sealed, added.appKey)).to.equal("my-new-secret-0123456789");
    });

    it("answers 400 for a bad secret or unknown field, 404 for unknown pairs and applications, and changes nothing", async () => {
      const app = (await createApp()).body.application;
      const { appKey } = app.keyPairs[0];
      const sealed = (await keyPairRow(appKey)).secret_sealed;
      const before = await counts();
      const bad = await post(`/applications/${app.id}/key-pairs/${appKey}/reset-secret`, { appSecret: "with spaces in it!!", appKey: "x" });
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.have.members(["appSecret", "appKey"]);
      expect((await post(`/applications/${app.id}/key-pairs/nope-nope/reset-secret`)).status).to.equal(404);
      expect((await post(`/applications/${MISSING}/key-pairs/${appKey}/reset-secret`)).status).to.equal(404);
      expect((await post(`/applications/${app.id}/key-pairs/${appKey}/reset-secret`, undefined, { as: "consumer" })).status).to.equal(403);
      expect((await keyPairRow(appKey)).secret_sealed).to.equal(sealed);
      expect(await counts()).to.deep.equal(before);
    });
  });

  describe("POST /applications/{appId}/app-code/reset", () => {
    it("replaces the AppCode hash and shows the new code once", async () => {
      const app = (await createApp()).body.application;
      const reply = await post(`/applications/${app.id}/app-code/reset`);
      expect(reply.status, reply.text).to.equal(200);
      expect(Object.keys(reply.body)).to.deep.equal(["status", "appCode"]);
      const code = reply.body.appCode;
      expect(code).to.match(/^[0-9a-f]{32}$/).and.not.equal(app.appCode);
      const row = await appRow(app.id);
      expect(row.app_code_hash).to.equal(sha256Hex(code));
      expect(row.app_code_hash).to.not.equal(sha256Hex(app.appCode));
      expect((await get(`/applications/${app.id}`)).body.application.appCode).to.equal("***" + code.slice(-5));
      expect((await lastChange()).changes[0]).to.include({ entity: "application", id: app.id, op: "update" });
    });

    it("accepts a custom AppCode and answers 409 for one used by another application", async () => {
      await createApp({ name: "other-app", appCode: "other-apps-code-0001" });
      const app = (await createApp()).body.application;
      const custom = await post(`/applications/${app.id}/app-code/reset`, { appCode: "my-own-app-code-0001" });
      expect(custom.status).to.equal(200);
      expect(custom.body.appCode).to.equal("my-own-app-code-0001");
      const before = await counts();
      const clash = await post(`/applications/${app.id}/app-code/reset`, { appCode: "other-apps-code-0001" });
      expect(clash.status).to.equal(409);
      expect(fields(clash)).to.deep.equal(["appCode"]);
      expect(await counts()).to.deep.equal(before);
      expect((await appRow(app.id)).app_code_hash).to.equal(sha256Hex("my-own-app-code-0001"));
    });

    it("answers 400 for a bad AppCode, 404 for an unknown application, 403 for a consumer", async () => {
      const app = (await createApp()).body.application;
      const bad = await post(`/applications/${app.id}/app-code/reset`, { appCode: "short" });
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.deep.equal(["appCode"]);
      expect((await post(`/applications/${MISSING}/app-code/reset`)).status).to.equal(404);
      expect((await post(`/applications/${app.id}/app-code/reset`, undefined, { as: "consumer" })).status).to.equal(403);
      expect((await appRow(app.id)).app_code_hash).to.equal(sha256Hex(app.appCode));
    });
  });
});

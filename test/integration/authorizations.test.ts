import { expect } from "chai";
import { countRows, del, fields, get, post, put } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

const API = "reading-list-api-v1.0";
const OTHER_API = "petstore-v1";
const MISSING = "00000000-0000-4000-8000-000000000000";
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();

async function lastChange(): Promise<{ entity: string; id: string; op: string; apiIds?: string[] }[]> {
  const row = await harness().database.knex("change_log").orderBy("revision", "desc").first();
  return typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes;
}

async function counts() {
  return { authorizations: await countRows("authorizations"), changes: await countRows("change_log") };
}

async function authRow(id: string): Promise<Record<string, any>> {
  return harness().database.knex("authorizations").where({ id }).first();
}

describe("authorizations", () => {
  let app: { id: string; name: string };
  let other: { id: string; name: string };

  beforeEach(async () => {
    expect((await post("/rest-apis", restApi(API))).status).to.equal(201);
    expect((await post("/rest-apis", otherApi(OTHER_API, { upstream: { main: { url: "http://pets:8080" }, sandbox: { url: "http://pets-sandbox:8080" } } }))).status).to.equal(201);
    app = (await post("/applications", { name: "reading-app" })).body.application;
    other = (await post("/applications", { name: "other-app" })).body.application;
    expect(app.id).to.be.a("string");
    expect(other.id).to.be.a("string");
  });

  async function authorize(body: Record<string, unknown> = {}) {
    const reply = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", ...body });
    expect(reply.status, reply.text).to.equal(201);
    return reply.body.authorization;
  }

  describe("POST /authorizations", () => {
    it("authorizes an application for an API in a stage, without expiry", async () => {
      const reply = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", description: "mobile app" });
      expect(reply.status).to.equal(201);
      expect(reply.body.status).to.equal("success");
      const authorization = reply.body.authorization;
      expect(Object.keys(authorization)).to.deep.equal([
        "id",
        "applicationId",
        "applicationName",
        "apiId",
        "stage",
        "expiresAt",
        "expired",
        "description",
        "createdAt",
        "updatedAt",
      ]);
      expect(authorization).to.include({
        applicationId: app.id,
        applicationName: "reading-app",
        apiId: API,
        stage: "RELEASE",
        expiresAt: null,
        expired: false,
        description: "mobile app",
      });
      expect(authorization.id).to.match(/^[0-9a-f-]{36}$/);
      expect(reply.headers.get("location")).to.equal(`/api/management/v0.9/authorizations/${authorization.id}`);
      expect(await lastChange()).to.deep.equal([{ entity: "authorization", id: authorization.id, op: "create", apiIds: [API] }]);
    });

    it("stores a future expiry and accepts the TEST stage", async () => {
      const expiresAt = inDays(30);
      const authorization = await authorize({ apiId: OTHER_API, stage: "TEST", expiresAt });
      expect(authorization).to.include({ apiId: OTHER_API, stage: "TEST", expiresAt, expired: false, description: null });
      expect(new Date((await authRow(authorization.id)).expires_at).toISOString()).to.equal(expiresAt);
    });

    it("normalises an expiry with an offset to UTC", async () => {
      const authorization = await authorize({ expiresAt: "2999-01-01T10:00:00+02:00" });
      expect(authorization.expiresAt).to.equal("2999-01-01T08:00:00.000Z");
    });

    it("answers 400 for an expiry in the past or not in RFC 3339 and stores nothing", async () => {
      const past = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", expiresAt: "2020-01-01T00:00:00Z" });
      expect(past.status).to.equal(400);
      expect(past.body.errors).to.deep.equal([{ field: "expiresAt", message: "must be in the future" }]);
      const malformed = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", expiresAt: "next week" });
      expect(malformed.status).to.equal(400);
      expect(fields(malformed)).to.deep.equal(["expiresAt"]);
      const dateOnly = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", expiresAt: "2999-01-01" });
      expect(dateOnly.status).to.equal(400);
      expect(await countRows("authorizations")).to.equal(0);
    });

    it("lists every failing field at once, including unknown fields", async () => {
      const before = await counts();
      const reply = await post("/authorizations", { applicationId: "reading-app", apiId: "has space", stage: "PRE", description: "d".repeat(181), validity: 30 });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.have.members(["applicationId", "apiId", "stage", "description", "validity"]);
      const byField = Object.fromEntries((reply.body.errors as { field: string; message: string }[]).map((e) => [e.field, e.message]));
      expect(byField.applicationId).to.equal("must be a UUID");
      expect(byField.stage).to.equal("must be one of: RELEASE, TEST");
      expect(byField.validity).to.equal("unknown field");
      const missing = await post("/authorizations", {});
      expect(missing.status).to.equal(400);
      expect(fields(missing)).to.have.members(["applicationId", "apiId", "stage"]);
      expect(await counts()).to.deep.equal(before);
    });

    it("answers 404 naming an unknown application or API and stores nothing", async () => {
      const before = await counts();
      const noApp = await post("/authorizations", { applicationId: MISSING, apiId: API, stage: "RELEASE" });
      expect(noApp.status).to.equal(404);
      expect(noApp.body.message).to.equal(`Application '${MISSING}' not found`);
      const noApi = await post("/authorizations", { applicationId: app.id, apiId: "no-such-api", stage: "RELEASE" });
      expect(noApi.status).to.equal(404);
      expect(noApi.body.message).to.equal("RestAPI with handle 'no-such-api' not found");
      expect(await counts()).to.deep.equal(before);
    });

    it("answers 409 for the same application, API and stage, pointing to PUT", async () => {
      const first = await authorize();
      const before = await counts();
      const again = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", expiresAt: inDays(1) });
      expect(again.status).to.equal(409);
      expect(again.body.message).to.contain("already authorized");
      expect(again.body.message).to.contain(`PUT /authorizations/${first.id}`);
      expect(await counts()).to.deep.equal(before);
      // Another stage, API or application is a separate authorization.
      await authorize({ stage: "TEST" });
      await authorize({ apiId: OTHER_API });
      await authorize({ applicationId: other.id });
      expect(await countRows("authorizations")).to.equal(4);
    });

    it("answers 403 for a consumer; a developer may authorize", async () => {
      const consumer = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE" }, { as: "consumer" });
      expect(consumer.status).to.equal(403);
      expect(await countRows("authorizations")).to.equal(0);
      const developer = await post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE" }, { as: "developer" });
      expect(developer.status).to.equal(201);
    });
  });

  describe("GET /authorizations", () => {
    let a1: any;
    let a2: any;
    let a3: any;
    beforeEach(async () => {
      a1 = await authorize();
      a2 = await authorize({ apiId: OTHER_API, stage: "TEST", expiresAt: inDays(10) });
      a3 = await authorize({ applicationId: other.id });
    });

    it("lists newest first with a count and the expired flag", async () => {
      const reply = await get("/authorizations");
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.count).to.equal(3);
      expect(reply.body.authorizations.map((a: { id: string }) => a.id)).to.deep.equal([a3.id, a2.id, a1.id]);
      expect(reply.body.authorizations.map((a: { expired: boolean }) => a.expired)).to.deep.equal([false, false, false]);
      expect(reply.body.authorizations[2]).to.deep.equal(a1);
    });

    it("marks an authorization whose expiry has passed as expired", async () => {
      await harness().database.knex("authorizations").where({ id: a2.id }).update({ expires_at: new Date(Date.now() - 60_000) });
      const listed = (await get("/authorizations")).body.authorizations.find((a: { id: string }) => a.id === a2.id);
      expect(listed.expired).to.equal(true);
      expect((await get(`/authorizations/${a2.id}`)).body.authorization.expired).to.equal(true);
      expect((await get(`/authorizations/${a1.id}`)).body.authorization.expired).to.equal(false);
    });

    it("filters by apiId, applicationId and stage", async () => {
      const ids = async (query: string) => ((await get(`/authorizations?${query}`)).body.authorizations as { id: string }[]).map((a) => a.id);
      expect(await ids(`apiId=${API}`)).to.deep.equal([a3.id, a1.id]);
      expect(await ids(`apiId=${OTHER_API}`)).to.deep.equal([a2.id]);
      expect(await ids(`applicationId=${app.id}`)).to.deep.equal([a2.id, a1.id]);
      expect(await ids(`applicationId=${app.id.toUpperCase()}`)).to.deep.equal([a2.id, a1.id]);
      expect(await ids("stage=TEST")).to.deep.equal([a2.id]);
      expect(await ids(`stage=RELEASE&applicationId=${other.id}`)).to.deep.equal([a3.id]);
      expect(await ids("apiId=no-such-api")).to.deep.equal([]);
      expect(await ids(`applicationId=${MISSING}`)).to.deep.equal([]);
    });

    it("answers 400 for a bad stage or application id filter", async () => {
      const reply = await get("/authorizations?stage=PRE&applicationId=reading-app");
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.have.members(["stage", "applicationId"]);
    });

    it("answers 403 for a consumer", async () => {
      expect((await get("/authorizations", { as: "consumer" })).status).to.equal(403);
      expect((await get("/authorizations", { as: "developer" })).body.count).to.equal(3);
    });
  });

  describe("GET /authorizations/{authorizationId}", () => {
    it("shows one authorization", async () => {
      const created = await authorize({ description: "d" });
      const reply = await get(`/authorizations/${created.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", authorization: created });
    });

    it("answers 404 for unknown and non-UUID ids, 403 for a consumer", async () => {
      const unknown = await get(`/authorizations/${MISSING}`);
      expect(unknown.status).to.equal(404);
      expect(unknown.body.message).to.equal(`Authorization '${MISSING}' not found`);
      expect((await get("/authorizations/abc")).status).to.equal(404);
      const created = await authorize();
      expect((await get(`/authorizations/${created.id}`, { as: "consumer" })).status).to.equal(403);
    });
  });

  describe("PUT /authorizations/{authorizationId}", () => {
    it("changes the expiry and description; null removes them", async () => {
      const created = await authorize({ description: "old" });
      const expiresAt = inDays(7);
      const set = await put(`/authorizations/${created.id}`, { expiresAt });
      expect(set.status, set.text).to.equal(200);
      expect(set.body.authorization).to.include({ id: created.id, expiresAt, expired: false, description: "old", stage: "RELEASE", apiId: API });
      expect(await lastChange()).to.deep.equal([{ entity: "authorization", id: created.id, op: "update", apiIds: [API] }]);
      const cleared = await put(`/authorizations/${created.id}`, { expiresAt: null, description: null });
      expect(cleared.status).to.equal(200);
      expect(cleared.body.authorization).to.include({ expiresAt: null, description: null });
      expect((await authRow(created.id)).expires_at).to.equal(null);
      const described = await put(`/authorizations/${created.id}`, { description: "new" });
      expect(described.body.authorization).to.include({ expiresAt: null, description: "new" });
    });

    it("answers 400 for a past expiry, unknown or immutable fields, and changes nothing", async () => {
      const created = await authorize({ expiresAt: inDays(3) });
      const before = await counts();
      const reply = await put(`/authorizations/${created.id}`, { expiresAt: "2001-01-01T00:00:00Z", stage: "TEST", apiId: OTHER_API });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.have.members(["expiresAt", "stage", "apiId"]);
      const tooLong = await put(`/authorizations/${created.id}`, { description: "d".repeat(181) });
      expect(tooLong.status).to.equal(400);
      expect(fields(tooLong)).to.deep.equal(["description"]);
      expect(await counts()).to.deep.equal(before);
      expect((await get(`/authorizations/${created.id}`)).body.authorization).to.deep.equal(created);
    });

    it("answers 404 for an unknown authorization and 403 for a consumer", async () => {
      expect((await put(`/authorizations/${MISSING}`, { description: "x" })).status).to.equal(404);
      expect((await put("/authorizations/nope", { description: "x" })).status).to.equal(404);
      const created = await authorize();
      expect((await put(`/authorizations/${created.id}`, { description: "x" }, { as: "consumer" })).status).to.equal(403);
      expect((await authRow(created.id)).description).to.equal(null);
    });
  });

  describe("DELETE /authorizations/{authorizationId}", () => {
    it("withdraws an authorization", async () => {
      const created = await authorize();
      const kept = await authorize({ stage: "TEST" });
      const reply = await del(`/authorizations/${created.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "Authorization deleted successfully", id: created.id });
      expect(await authRow(created.id)).to.equal(undefined);
      expect(await authRow(kept.id)).to.not.equal(undefined);
      expect(await lastChange()).to.deep.equal([{ entity: "authorization", id: created.id, op: "delete", apiIds: [API] }]);
      expect((await get(`/authorizations/${created.id}`)).status).to.equal(404);
      expect((await del(`/authorizations/${created.id}`)).status).to.equal(404);
    });

    it("answers 404 for an unknown id and 403 for a consumer", async () => {
      expect((await del(`/authorizations/${MISSING}`)).status).to.equal(404);
      const created = await authorize();
      expect((await del(`/authorizations/${created.id}`, { as: "consumer" })).status).to.equal(403);
      expect(await countRows("authorizations")).to.equal(1);
      expect((await del(`/authorizations/${created.id}`, { as: "developer" })).status).to.equal(200);
    });
  });

  describe("cascades", () => {
    it("deleting an API removes its authorizations and nothing else", async () => {
      const onApi = await authorize();
      const onApiTest = await authorize({ stage: "TEST" });
      const onOther = await authorize({ apiId: OTHER_API });
      expect((await del(`/rest-apis/${API}`)).status).to.equal(200);
      expect(await authRow(onApi.id)).to.equal(undefined);
      expect(await authRow(onApiTest.id)).to.equal(undefined);
      expect(await authRow(onOther.id)).to.not.equal(undefined);
      expect(await countRows("applications")).to.equal(2);
      expect((await get(`/authorizations/${onApi.id}`)).status).to.equal(404);
      expect((await get("/authorizations")).body.count).to.equal(1);
    });

    it("deleting an application removes its authorizations and nothing else", async () => {
      const mine = await authorize();
      const theirs = await authorize({ applicationId: other.id });
      expect((await del(`/applications/${app.id}`)).status).to.equal(200);
      expect(await authRow(mine.id)).to.equal(undefined);
      expect(await authRow(theirs.id)).to.not.equal(undefined);
      expect(await countRows("rest_apis")).to.equal(2);
    });

    it("a renamed application shows its new name in its authorizations", async () => {
      const created = await authorize();
      expect((await put(`/applications/${app.id}`, { name: "renamed-app" })).status).to.equal(200);
      expect((await get(`/authorizations/${created.id}`)).body.authorization.applicationName).to.equal("renamed-app");
    });
  });
});

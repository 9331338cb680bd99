import { expect } from "chai";
import { sha256Hex } from "@apigw/shared";
import { call, countRows, del, fields, get, post, put } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UNKNOWN_ID = "7d3e1a52-5b1c-4c55-9d7e-2f0a6a1b9c01";
const API = "reading-list-api-v1.0";
const PETS = "petstore-v1";
const TOKEN = "sub-token-abc123xyz";

async function createApi(body: Record<string, unknown> = restApi()): Promise<void> {
  const reply = await post("/rest-apis", body);
  expect(reply.status, reply.text).to.equal(201);
}

async function createPlan(planName: string, extra: Record<string, unknown> = {}): Promise<string> {
  const reply = await post("/subscription-plans", { planName, throttleLimitCount: 100, throttleLimitUnit: "Min", ...extra });
  expect(reply.status, reply.text).to.equal(201);
  return reply.body.id;
}

async function subscribe(body: Record<string, unknown>): Promise<Record<string, any>> {
  const reply = await post("/subscriptions", body);
  expect(reply.status, reply.text).to.equal(201);
  return reply.body;
}

async function lastChange(): Promise<any> {
  const row = await harness().database.knex("change_log").orderBy("revision", "desc").first();
  return typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes;
}

async function internalId(handle: string): Promise<string> {
  const row = await harness().database.knex("rest_apis").where({ handle }).first("id");
  return row.id;
}

function byField(reply: { body: any }): Record<string, string> {
  return Object.fromEntries(((reply.body?.errors ?? []) as { field: string; message: string }[]).map((e) => [e.field, e.message]));
}

/** The id of an application with this name, created on first use in a test. */
let apps = new Map<string, string>();
async function appId(name: string): Promise<string> {
  let id = apps.get(name);
  if (!id) {
    const reply = await post("/applications", { name });
    expect(reply.status, reply.text).to.equal(201);
    apps.set(name, (id = reply.body.application.id as string));
  }
  return id;
}

describe("subscriptions", () => {
  beforeEach(async () => {
    apps = new Map();
    await createApi();
  });

  describe("POST /subscriptions", () => {
    it("creates a subscription and answers 201 with the token, once", async () => {
      const planId = await createPlan("Gold");
      const reply = await post("/subscriptions", {
        apiId: API,
        subscriptionToken: TOKEN,
        applicationId: await appId("app-42"),
        subscriptionPlanId: planId,
        billingCustomerId: "cus_123",
        billingSubscriptionId: "sub_456",
        status: "ACTIVE",
      });
      expect(reply.status).to.equal(201);
      expect(Object.keys(reply.body)).to.deep.equal([
        "id",
        "apiId",
        "applicationId",
        "subscriptionToken",
        "subscriptionPlanId",
        "billingCustomerId",
        "billingSubscriptionId",
        "status",
        "createdAt",
        "updatedAt",
      ]);
      expect(reply.body.id).to.match(UUID);
      expect(reply.body).to.include({
        apiId: API,
        applicationId: await appId("app-42"),
        subscriptionToken: TOKEN,
        subscriptionPlanId: planId,
        billingCustomerId: "cus_123",
        billingSubscriptionId: "sub_456",
        status: "ACTIVE",
      });
      expect(Number.isNaN(Date.parse(reply.body.createdAt))).to.equal(false);
      expect(reply.headers.get("location")).to.equal(`/api/management/v0.9/subscriptions/${reply.body.id}`);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription", id: reply.body.id, op: "create", apiIds: [API] }]);
    });

    it("applies defaults and answers null for unset optional fields", async () => {
      const subscription = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      expect(subscription).to.include({
        apiId: API,
        applicationId: null,
        subscriptionPlanId: null,
        billingCustomerId: null,
        billingSubscriptionId: null,
        status: "ACTIVE",
      });
    });

    it("accepts the API's internal id and answers with its handle", async () => {
      const id = await internalId(API);
      const subscription = await subscribe({ apiId: id, subscriptionToken: TOKEN });
      expect(subscription.apiId).to.equal(API);
      const upper = await subscribe({ apiId: id.toUpperCase(), subscriptionToken: "another-token" });
      expect(upper.apiId).to.equal(API);
    });

    it("stores the token only as its SHA-256 hash", async () => {
      const subscription = await subscribe({ apiId: API, subscriptionToken: TOKEN, status: "INACTIVE" });
      const row = await harness().database.knex("subscriptions").where({ id: subscription.id }).first();
      expect(row.token_hash).to.equal(sha256Hex(TOKEN));
      expect(JSON.stringify(row)).to.not.contain(TOKEN);
      expect(row.status).to.equal("INACTIVE");
      const log = await harness().database.knex("change_log").select("changes");
      expect(JSON.stringify(log)).to.not.contain(TOKEN);
    });

    it("answers 400 naming applicationId when no such application exists, and stores nothing", async () => {
      for (const applicationId of ["app-42", UNKNOWN_ID]) {
        const reply = await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN, applicationId });
        expect(reply.status, applicationId).to.equal(400);
        expect(fields(reply)).to.deep.equal(["applicationId"]);
      }
      expect(await countRows("subscriptions")).to.equal(0);
      const id = await appId("app-42");
      expect((await subscribe({ apiId: API, subscriptionToken: TOKEN, applicationId: id.toUpperCase() })).applicationId).to.equal(id);
    });

    it("ignores unknown fields (WSO2 resource)", async () => {
      const reply = await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN, gatewayId: "gw-1" });
      expect(reply.status).to.equal(201);
      expect(reply.body).to.not.have.property("gatewayId");
    });

    it("requires apiId and subscriptionToken", async () => {
      const reply = await post("/subscriptions", { applicationId: "app" });
      expect(reply.status).to.equal(400);
      expect(reply.body.message).to.equal("Configuration validation failed");
      expect(byField(reply)).to.deep.equal({ apiId: "is required", subscriptionToken: "is required" });
      expect(await countRows("subscriptions")).to.equal(0);
    });

    it("rejects a missing body", async () => {
      const reply = await call("POST", "/subscriptions", { contentType: "application/json" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["body"]);
    });

    for (const [label, token] of [
      ["empty", ""],
      ["with a space", "abc def"],
      ["with a tab", "abc\tdef"],
      ["with a control character", "abc\u0001def"],
      ["with DEL", "abc\u007f"],
      ["over 512 characters", "t".repeat(513)],
      ["a number", 12345],
    ] as const) {
      it(`rejects a token ${label}`, async () => {
        const reply = await post("/subscriptions", { apiId: API, subscriptionToken: token });
        expect(reply.status).to.equal(400);
        expect(fields(reply)).to.deep.equal(["subscriptionToken"]);
        expect(await countRows("subscriptions")).to.equal(0);
      });
    }

    it("accepts a 512-character token with punctuation", async () => {
      const token = ("Ab9-._~+/=:!" + "x".repeat(600)).slice(0, 512);
      const subscription = await subscribe({ apiId: API, subscriptionToken: token });
      expect(subscription.subscriptionToken).to.equal(token);
    });

    it("lists every failing field at once and stores nothing", async () => {
      const reply = await post("/subscriptions", {
        apiId: "",
        subscriptionToken: "has space",
        applicationId: "a".repeat(129),
        subscriptionPlanId: "Gold",
        billingCustomerId: "c".repeat(129),
        billingSubscriptionId: 7,
        status: "PAUSED",
      });
      expect(reply.status).to.equal(400);
      const errors = byField(reply);
      expect(Object.keys(errors).sort()).to.deep.equal(
        ["apiId", "applicationId", "billingCustomerId", "billingSubscriptionId", "status", "subscriptionPlanId", "subscriptionToken"].sort(),
      );
      expect(errors.status).to.equal("must be one of: ACTIVE, INACTIVE, REVOKED");
      expect(errors.subscriptionPlanId).to.equal("must be a UUID");
      expect(await countRows("subscriptions")).to.equal(0);
      expect(await countRows("change_log")).to.equal(1); // the API's creation only
    });

    it("answers 404 for an unknown API and stores nothing", async () => {
      for (const apiId of ["no-such-api", UNKNOWN_ID]) {
        const reply = await post("/subscriptions", { apiId, subscriptionToken: TOKEN });
        expect(reply.status, apiId).to.equal(404);
        expect(reply.body).to.deep.include({ status: "error", message: `RestAPI with handle '${apiId}' not found` });
      }
      expect(await countRows("subscriptions")).to.equal(0);
    });

    it("answers 409 for the same token twice on one API, and accepts it on another API", async () => {
      await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const other = await appId("other");
      const changes = await countRows("change_log");
      const again = await post("/subscriptions", { apiId: await internalId(API), subscriptionToken: TOKEN, applicationId: other });
      expect(again.status).to.equal(409);
      expect(again.body.status).to.equal("error");
      expect(again.body.message).to.contain(API);
      expect(again.text).to.not.contain(TOKEN);
      expect(await countRows("subscriptions")).to.equal(1);
      expect(await countRows("change_log")).to.equal(changes);
      await createApi(otherApi());
      const elsewhere = await subscribe({ apiId: PETS, subscriptionToken: TOKEN });
      expect(elsewhere.apiId).to.equal(PETS);
    });

    it("answers 400 on subscriptionPlanId for a plan that does not exist", async () => {
      const reply = await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN, subscriptionPlanId: UNKNOWN_ID });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["subscriptionPlanId"]);
      expect(await countRows("subscriptions")).to.equal(0);
    });

    it("answers 400 on subscriptionPlanId for a plan that is not ACTIVE", async () => {
      const planId = await createPlan("Legacy", { status: "INACTIVE" });
      const reply = await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN, subscriptionPlanId: planId });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["subscriptionPlanId"]);
      expect(byField(reply).subscriptionPlanId).to.contain("not ACTIVE");
      expect(await countRows("subscriptions")).to.equal(0);
    });

    it("accepts only the plans an API lists in spec.subscriptionPlans", async () => {
      await createApi(otherApi(PETS, { subscriptionPlans: ["Gold", "Platinum"] }));
      const gold = await createPlan("Gold");
      const silver = await createPlan("Silver");
      const refused = await post("/subscriptions", { apiId: PETS, subscriptionToken: TOKEN, subscriptionPlanId: silver });
      expect(refused.status).to.equal(400);
      expect(fields(refused)).to.deep.equal(["subscriptionPlanId"]);
      expect(byField(refused).subscriptionPlanId).to.contain("Silver").and.contain(PETS);
      expect(await countRows("subscriptions")).to.equal(0);
      expect((await subscribe({ apiId: PETS, subscriptionToken: TOKEN, subscriptionPlanId: gold })).subscriptionPlanId).to.equal(gold);
      // An API that lists no plans accepts any ACTIVE plan.
      expect((await subscribe({ apiId: API, subscriptionToken: TOKEN, subscriptionPlanId: silver })).subscriptionPlanId).to.equal(silver);
    });
  });

  describe("GET /subscriptions", () => {
    let ids: Record<string, string>;

    beforeEach(async () => {
      await createApi(otherApi());
      ids = {
        first: (await subscribe({ apiId: API, subscriptionToken: "tok-first", applicationId: await appId("app-1") })).id,
        second: (await subscribe({ apiId: PETS, subscriptionToken: "tok-second", applicationId: await appId("app-1"), status: "INACTIVE" })).id,
        third: (await subscribe({ apiId: API, subscriptionToken: "tok-third", applicationId: await appId("app-2"), status: "REVOKED" })).id,
      };
      // Distinct creation times, so that "newest first" is deterministic.
      const knex = harness().database.knex;
      await knex("subscriptions").where({ id: ids.first }).update({ created_at: new Date("2030-01-01T00:00:00Z") });
      await knex("subscriptions").where({ id: ids.second }).update({ created_at: new Date("2030-01-02T00:00:00Z") });
      await knex("subscriptions").where({ id: ids.third }).update({ created_at: new Date("2030-01-03T00:00:00Z") });
    });

    it("lists every subscription newest first, without tokens", async () => {
      const reply = await get("/subscriptions");
      expect(reply.status).to.equal(200);
      expect(reply.body.count).to.equal(3);
      expect(reply.body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.third, ids.second, ids.first]);
      for (const subscription of reply.body.subscriptions) expect(subscription).to.not.have.property("subscriptionToken");
      expect(reply.text).to.not.contain("tok-");
      expect(reply.body.subscriptions[1]).to.include({ apiId: PETS, applicationId: await appId("app-1"), status: "INACTIVE" });
    });

    it("filters by API handle or internal id", async () => {
      const byHandle = await get(`/subscriptions?apiId=${API}`);
      expect(byHandle.body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.third, ids.first]);
      expect(byHandle.body.count).to.equal(2);
      const byId = await get(`/subscriptions?apiId=${await internalId(PETS)}`);
      expect(byId.body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.second]);
    });

    it("answers an empty list for an unknown API", async () => {
      for (const apiId of ["no-such-api", UNKNOWN_ID]) {
        const reply = await get(`/subscriptions?apiId=${apiId}`);
        expect(reply.status).to.equal(200);
        expect(reply.body).to.deep.equal({ subscriptions: [], count: 0 });
      }
    });

    it("filters by applicationId and status, together or apart", async () => {
      expect((await get(`/subscriptions?applicationId=${await appId("app-1")}`)).body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.second, ids.first]);
      expect((await get("/subscriptions?status=REVOKED")).body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.third]);
      expect((await get(`/subscriptions?applicationId=${await appId("app-1")}&status=ACTIVE`)).body.subscriptions.map((s: any) => s.id)).to.deep.equal([ids.first]);
      expect((await get(`/subscriptions?apiId=${PETS}&status=ACTIVE`)).body).to.deep.equal({ subscriptions: [], count: 0 });
    });

    it("answers 400 for a status that is not in the enum", async () => {
      const reply = await get("/subscriptions?status=active");
      expect(reply.status).to.equal(400);
      expect(byField(reply)).to.deep.equal({ status: "must be one of: ACTIVE, INACTIVE, REVOKED" });
    });

    it("answers an empty list when there are no subscriptions", async () => {
      await harness().database.knex("subscriptions").delete();
      expect((await get("/subscriptions")).body).to.deep.equal({ subscriptions: [], count: 0 });
    });
  });

  describe("GET /subscriptions/{subscriptionId}", () => {
    it("answers the subscription without its token", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN, applicationId: await appId("app-1") });
      const reply = await get(`/subscriptions/${created.id}`);
      expect(reply.status).to.equal(200);
      const { subscriptionToken, ...rest } = created;
      expect(subscriptionToken).to.equal(TOKEN);
      expect(reply.body).to.deep.equal(rest);
      expect(reply.text).to.not.contain(TOKEN);
    });

    it("answers 404 for an unknown id and for a non-UUID id", async () => {
      for (const id of [UNKNOWN_ID, "not-a-uuid", TOKEN]) {
        const reply = await get(`/subscriptions/${id}`);
        expect(reply.status, id).to.equal(404);
        expect(reply.body).to.deep.include({ status: "error", message: "Subscription not found" });
      }
    });
  });

  describe("PUT /subscriptions/{subscriptionId}", () => {
    it("changes the status", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN, applicationId: await appId("app-1"), billingCustomerId: "cus_1" });
      const reply = await put(`/subscriptions/${created.id}`, { status: "REVOKED" });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({ id: created.id, apiId: API, status: "REVOKED", applicationId: await appId("app-1"), billingCustomerId: "cus_1", createdAt: created.createdAt });
      expect(reply.body).to.not.have.property("subscriptionToken");
      expect((await get(`/subscriptions/${created.id}`)).body.status).to.equal("REVOKED");
      expect(await lastChange()).to.deep.equal([{ entity: "subscription", id: created.id, op: "update", apiIds: [API] }]);
      const row = await harness().database.knex("subscriptions").where({ id: created.id }).first();
      expect(row.token_hash).to.equal(sha256Hex(TOKEN));
    });

    it("sets, changes and removes the plan", async () => {
      const gold = await createPlan("Gold");
      const silver = await createPlan("Silver");
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const set = await put(`/subscriptions/${created.id}`, { subscriptionPlanId: gold });
      expect(set.status).to.equal(200);
      expect(set.body.subscriptionPlanId).to.equal(gold);
      const both = await put(`/subscriptions/${created.id}`, { subscriptionPlanId: silver, status: "INACTIVE" });
      expect(both.body).to.include({ subscriptionPlanId: silver, status: "INACTIVE" });
      const removed = await put(`/subscriptions/${created.id}`, { subscriptionPlanId: null });
      expect(removed.status).to.equal(200);
      expect(removed.body).to.include({ subscriptionPlanId: null, status: "INACTIVE" });
    });

    it("accepts an empty body and changes nothing", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const changes = await countRows("change_log");
      const reply = await put(`/subscriptions/${created.id}`, {});
      expect(reply.status).to.equal(200);
      expect(reply.body.updatedAt).to.equal(created.updatedAt);
      expect(await countRows("change_log")).to.equal(changes);
    });

    it("rejects fields other than status and subscriptionPlanId, and changes nothing", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const reply = await put(`/subscriptions/${created.id}`, { status: "REVOKED", applicationId: "app-9", subscriptionToken: "new-token", apiId: "x" });
      expect(reply.status).to.equal(400);
      expect(byField(reply)).to.deep.equal({ applicationId: "unknown field", subscriptionToken: "unknown field", apiId: "unknown field" });
      expect((await get(`/subscriptions/${created.id}`)).body.status).to.equal("ACTIVE");
    });

    it("rejects a bad status and a non-UUID plan id", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const reply = await put(`/subscriptions/${created.id}`, { status: "DELETED", subscriptionPlanId: "Gold" });
      expect(reply.status).to.equal(400);
      expect(byField(reply)).to.deep.equal({ status: "must be one of: ACTIVE, INACTIVE, REVOKED", subscriptionPlanId: "must be a UUID" });
    });

    it("checks a new plan like create does, and changes nothing on failure", async () => {
      await createApi(otherApi(PETS, { subscriptionPlans: ["Gold"] }));
      const gold = await createPlan("Gold");
      const silver = await createPlan("Silver");
      const legacy = await createPlan("Legacy", { status: "INACTIVE" });
      const created = await subscribe({ apiId: PETS, subscriptionToken: TOKEN, subscriptionPlanId: gold });
      const changes = await countRows("change_log");
      for (const planId of [UNKNOWN_ID, legacy, silver]) {
        const reply = await put(`/subscriptions/${created.id}`, { subscriptionPlanId: planId, status: "INACTIVE" });
        expect(reply.status, planId).to.equal(400);
        expect(fields(reply)).to.deep.equal(["subscriptionPlanId"]);
      }
      expect((await get(`/subscriptions/${created.id}`)).body).to.include({ subscriptionPlanId: gold, status: "ACTIVE" });
      expect(await countRows("change_log")).to.equal(changes);
    });

    it("lets the status change when the current plan, sent back unchanged, has become INACTIVE", async () => {
      const gold = await createPlan("Gold");
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN, subscriptionPlanId: gold });
      expect((await put(`/subscription-plans/${gold}`, { status: "INACTIVE" })).status).to.equal(200);
      const reply = await put(`/subscriptions/${created.id}`, { subscriptionPlanId: gold, status: "REVOKED" });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({ subscriptionPlanId: gold, status: "REVOKED" });
    });

    it("answers 404 for an unknown or non-UUID id, before validating the body", async () => {
      for (const id of [UNKNOWN_ID, "nope"]) {
        const reply = await put(`/subscriptions/${id}`, { status: "BAD" });
        expect(reply.status, id).to.equal(404);
        expect(reply.body.message).to.equal("Subscription not found");
      }
    });
  });

  describe("DELETE /subscriptions/{subscriptionId}", () => {
    it("deletes a subscription: 204, then 404", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const reply = await del(`/subscriptions/${created.id}`);
      expect(reply.status).to.equal(204);
      expect(reply.text).to.equal("");
      expect(await countRows("subscriptions")).to.equal(0);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription", id: created.id, op: "delete", apiIds: [API] }]);
      expect((await get(`/subscriptions/${created.id}`)).status).to.equal(404);
      const again = await del(`/subscriptions/${created.id}`);
      expect(again.status).to.equal(404);
      expect(again.body.message).to.equal("Subscription not found");
    });

    it("answers 404 for a non-UUID id", async () => {
      const reply = await del("/subscriptions/not-a-uuid");
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.equal("Subscription not found");
    });

    it("frees the token for a new subscription", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      expect((await del(`/subscriptions/${created.id}`)).status).to.equal(204);
      await subscribe({ apiId: API, subscriptionToken: TOKEN });
    });

    it("goes with its API when the API is deleted", async () => {
      await subscribe({ apiId: API, subscriptionToken: TOKEN });
      expect((await del(`/rest-apis/${API}`)).status).to.equal(200);
      expect(await countRows("subscriptions")).to.equal(0);
    });
  });

  describe("roles", () => {
    it("answers 403 to a consumer on every route", async () => {
      const created = await subscribe({ apiId: API, subscriptionToken: TOKEN });
      const replies = [
        await post("/subscriptions", { apiId: API, subscriptionToken: "other" }, { as: "consumer" }),
        await get("/subscriptions", { as: "consumer" }),
        await get(`/subscriptions/${created.id}`, { as: "consumer" }),
        await put(`/subscriptions/${created.id}`, { status: "REVOKED" }, { as: "consumer" }),
        await del(`/subscriptions/${created.id}`, { as: "consumer" }),
      ];
      for (const reply of replies) {
        expect(reply.status).to.equal(403);
        expect(reply.body).to.include({ error: "forbidden" });
      }
      expect(await countRows("subscriptions")).to.equal(1);
      expect((await get(`/subscriptions/${created.id}`)).body.status).to.equal("ACTIVE");
    });

    it("answers 401 without credentials", async () => {
      expect((await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN }, { as: null })).status).to.equal(401);
      expect(await countRows("subscriptions")).to.equal(0);
    });

    it("lets a developer manage subscriptions", async () => {
      const created = await post("/subscriptions", { apiId: API, subscriptionToken: TOKEN }, { as: "developer" });
      expect(created.status).to.equal(201);
      expect((await get("/subscriptions", { as: "developer" })).body.count).to.equal(1);
      expect((await get(`/subscriptions/${created.body.id}`, { as: "developer" })).status).to.equal(200);
      expect((await put(`/subscriptions/${created.body.id}`, { status: "INACTIVE" }, { as: "developer" })).status).to.equal(200);
      expect((await del(`/subscriptions/${created.body.id}`, { as: "developer" })).status).to.equal(204);
    });
  });
});

import { expect } from "chai";
import YAML from "yaml";
import { call, countRows, del, fields, get, post, put } from "../support/client";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UNKNOWN_ID = "7d3e1a52-5b1c-4c55-9d7e-2f0a6a1b9c01";

const GOLD = {
  planName: "Gold",
  billingPlan: "COMMERCIAL",
  stopOnQuotaReach: false,
  throttleLimitCount: 1000,
  throttleLimitUnit: "Hour",
  expiryTime: "2030-12-31T23:59:59Z",
  status: "ACTIVE",
};

async function createPlan(body: Record<string, unknown>): Promise<Record<string, any>> {
  const reply = await post("/subscription-plans", body);
  expect(reply.status, reply.text).to.equal(201);
  return reply.body;
}

async function lastChange(): Promise<any> {
  const row = await harness().database.knex("change_log").orderBy("revision", "desc").first();
  return typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes;
}

function byField(reply: { body: any }): Record<string, string> {
  return Object.fromEntries(((reply.body?.errors ?? []) as { field: string; message: string }[]).map((e) => [e.field, e.message]));
}

describe("subscription-plans", () => {
  describe("POST /subscription-plans", () => {
    it("creates a plan and answers 201 with every field", async () => {
      const reply = await post("/subscription-plans", GOLD);
      expect(reply.status).to.equal(201);
      expect(Object.keys(reply.body).sort()).to.deep.equal(
        ["billingPlan", "createdAt", "expiryTime", "id", "planName", "status", "stopOnQuotaReach", "throttleLimitCount", "throttleLimitUnit", "updatedAt"].sort(),
      );
      expect(reply.body.id).to.match(UUID);
      expect(reply.body).to.include({
        planName: "Gold",
        billingPlan: "COMMERCIAL",
        stopOnQuotaReach: false,
        throttleLimitCount: 1000,
        throttleLimitUnit: "Hour",
        expiryTime: "2030-12-31T23:59:59.000Z",
        status: "ACTIVE",
      });
      expect(Number.isNaN(Date.parse(reply.body.createdAt))).to.equal(false);
      expect(reply.body.updatedAt).to.equal(reply.body.createdAt);
      expect(reply.headers.get("location")).to.equal(`/api/management/v0.9/subscription-plans/${reply.body.id}`);
      expect(await countRows("subscription_plans")).to.equal(1);
    });

    it("records a subscription_plan change", async () => {
      const plan = await createPlan(GOLD);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription_plan", id: plan.id, op: "create", apiIds: [] }]);
    });

    it("applies defaults and answers null for unset optional fields", async () => {
      const plan = await createPlan({ planName: "Free" });
      expect(plan).to.include({
        planName: "Free",
        billingPlan: null,
        stopOnQuotaReach: true,
        throttleLimitCount: null,
        throttleLimitUnit: null,
        expiryTime: null,
        status: "ACTIVE",
      });
    });

    it("accepts null for optional fields, an INACTIVE status and a YAML body", async () => {
      const reply = await post("/subscription-plans", YAML.stringify({ planName: "Bronze 1.0_b-c", billingPlan: null, status: "INACTIVE" }), {
        contentType: "application/yaml",
      });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body).to.include({ planName: "Bronze 1.0_b-c", billingPlan: null, status: "INACTIVE" });
    });

    it("ignores unknown fields (WSO2 resource)", async () => {
      const reply = await post("/subscription-plans", { ...GOLD, gatewayId: "gw-1", somethingNew: true });
      expect(reply.status).to.equal(201);
      expect(reply.body).to.not.have.property("gatewayId");
      expect(reply.body).to.not.have.property("somethingNew");
    });

    it("requires planName", async () => {
      const reply = await post("/subscription-plans", { billingPlan: "FREE" });
      expect(reply.status).to.equal(400);
      expect(reply.body.message).to.equal("Configuration validation failed");
      expect(byField(reply)).to.deep.equal({ planName: "is required" });
    });

    it("rejects a missing body", async () => {
      const reply = await call("POST", "/subscription-plans", { contentType: "application/json" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["body"]);
    });

    for (const bad of ["", " Gold", "-gold", "Gold/1", "Gold\n", "x".repeat(65), "Gölد"]) {
      it(`rejects the plan name ${JSON.stringify(bad.length > 20 ? bad.slice(0, 10) + "…" : bad)}`, async () => {
        const reply = await post("/subscription-plans", { planName: bad });
        expect(reply.status).to.equal(400);
        expect(fields(reply)).to.deep.equal(["planName"]);
      });
    }

    it("accepts a 64-character plan name", async () => {
      const plan = await createPlan({ planName: "P".repeat(64) });
      expect(plan.planName).to.have.length(64);
    });

    it("lists every failing field at once and stores nothing", async () => {
      const reply = await post("/subscription-plans", {
        planName: "Gold!",
        billingPlan: "b".repeat(65),
        stopOnQuotaReach: "yes",
        throttleLimitCount: 0,
        throttleLimitUnit: "Week",
        expiryTime: "next tuesday",
        status: "ENABLED",
      });
      expect(reply.status).to.equal(400);
      const errors = byField(reply);
      expect(Object.keys(errors)).to.include.members([
        "planName",
        "billingPlan",
        "stopOnQuotaReach",
        "throttleLimitCount",
        "throttleLimitUnit",
        "expiryTime",
        "status",
      ]);
      expect(errors.throttleLimitUnit).to.equal("must be one of: Min, Hour, Day, Month");
      expect(errors.status).to.equal("must be one of: ACTIVE, INACTIVE");
      expect(errors.stopOnQuotaReach).to.equal("must be a boolean");
      expect(await countRows("subscription_plans")).to.equal(0);
      expect(await countRows("change_log")).to.equal(0);
    });

    it("rejects a throttle count that is not a positive integer", async () => {
      for (const count of [-5, 1.5, "100", 2 ** 31]) {
        const reply = await post("/subscription-plans", { planName: "Gold", throttleLimitCount: count, throttleLimitUnit: "Min" });
        expect(reply.status, String(count)).to.equal(400);
        expect(fields(reply)).to.deep.equal(["throttleLimitCount"]);
      }
      expect(await countRows("subscription_plans")).to.equal(0);
    });

    it("requires throttleLimitUnit when throttleLimitCount is given", async () => {
      const reply = await post("/subscription-plans", { planName: "Gold", throttleLimitCount: 10 });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["throttleLimitUnit"]);
      expect(await countRows("subscription_plans")).to.equal(0);
    });

    it("requires throttleLimitCount when throttleLimitUnit is given", async () => {
      const reply = await post("/subscription-plans", { planName: "Gold", throttleLimitUnit: "Day" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["throttleLimitCount"]);
      expect(await countRows("subscription_plans")).to.equal(0);
    });

    it("accepts every throttle unit", async () => {
      for (const unit of ["Min", "Hour", "Day", "Month"]) {
        const plan = await createPlan({ planName: `plan-${unit}`, throttleLimitCount: 5, throttleLimitUnit: unit });
        expect(plan.throttleLimitUnit).to.equal(unit);
      }
    });

    it("answers 409 for an existing plan name and stores nothing", async () => {
      await createPlan(GOLD);
      const changes = await countRows("change_log");
      const reply = await post("/subscription-plans", { planName: "Gold" });
      expect(reply.status).to.equal(409);
      expect(reply.body.status).to.equal("error");
      expect(reply.body.message).to.equal("Subscription plan already exists");
      expect(await countRows("subscription_plans")).to.equal(1);
      expect(await countRows("change_log")).to.equal(changes);
    });
  });

  describe("GET /subscription-plans", () => {
    it("answers an empty list", async () => {
      const reply = await get("/subscription-plans");
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ subscriptionPlans: [], count: 0 });
    });

    it("lists the plans ordered by name", async () => {
      await createPlan({ planName: "Silver" });
      await createPlan(GOLD);
      await createPlan({ planName: "Bronze" });
      const reply = await get("/subscription-plans");
      expect(reply.status).to.equal(200);
      expect(reply.body.count).to.equal(3);
      expect(reply.body.subscriptionPlans.map((p: any) => p.planName)).to.deep.equal(["Bronze", "Gold", "Silver"]);
      expect(reply.body.subscriptionPlans[1]).to.include({ throttleLimitCount: 1000, throttleLimitUnit: "Hour" });
    });
  });

  describe("GET /subscription-plans/{planId}", () => {
    it("answers the plan", async () => {
      const plan = await createPlan(GOLD);
      const reply = await get(`/subscription-plans/${plan.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal(plan);
    });

    it("finds the plan by an upper-case id", async () => {
      const plan = await createPlan(GOLD);
      const reply = await get(`/subscription-plans/${plan.id.toUpperCase()}`);
      expect(reply.status).to.equal(200);
      expect(reply.body.id).to.equal(plan.id);
    });

    it("answers 404 for an unknown id and for a non-UUID id", async () => {
      for (const id of [UNKNOWN_ID, "Gold", "not-a-uuid"]) {
        const reply = await get(`/subscription-plans/${id}`);
        expect(reply.status, id).to.equal(404);
        expect(reply.body).to.deep.include({ status: "error", message: "Subscription plan not found" });
      }
    });
  });

  describe("PUT /subscription-plans/{planId}", () => {
    it("changes only the fields given", async () => {
      const plan = await createPlan(GOLD);
      const reply = await put(`/subscription-plans/${plan.id}`, { billingPlan: "FREE", status: "INACTIVE" });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({
        id: plan.id,
        planName: "Gold",
        billingPlan: "FREE",
        stopOnQuotaReach: false,
        throttleLimitCount: 1000,
        throttleLimitUnit: "Hour",
        expiryTime: "2030-12-31T23:59:59.000Z",
        status: "INACTIVE",
        createdAt: plan.createdAt,
      });
      expect((await get(`/subscription-plans/${plan.id}`)).body).to.deep.equal(reply.body);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription_plan", id: plan.id, op: "update", apiIds: [] }]);
    });

    it("renames a plan, and keeping its own name is not a conflict", async () => {
      const plan = await createPlan(GOLD);
      expect((await put(`/subscription-plans/${plan.id}`, { planName: "Gold" })).status).to.equal(200);
      const reply = await put(`/subscription-plans/${plan.id}`, { planName: "Platinum" });
      expect(reply.status).to.equal(200);
      expect(reply.body.planName).to.equal("Platinum");
    });

    it("clears optional fields with null, and the throttle limit as a pair", async () => {
      const plan = await createPlan(GOLD);
      const reply = await put(`/subscription-plans/${plan.id}`, { billingPlan: null, expiryTime: null, throttleLimitCount: null, throttleLimitUnit: null });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({ billingPlan: null, expiryTime: null, throttleLimitCount: null, throttleLimitUnit: null, planName: "Gold" });
    });

    it("changes only the count when the plan already has a unit", async () => {
      const plan = await createPlan(GOLD);
      const reply = await put(`/subscription-plans/${plan.id}`, { throttleLimitCount: 5 });
      expect(reply.status).to.equal(200);
      expect(reply.body).to.include({ throttleLimitCount: 5, throttleLimitUnit: "Hour" });
    });

    it("applies the pairing rule to the resulting plan", async () => {
      const limited = await createPlan(GOLD);
      const unlimited = await createPlan({ planName: "Free" });
      const clearCount = await put(`/subscription-plans/${limited.id}`, { throttleLimitCount: null });
      expect(clearCount.status).to.equal(400);
      expect(fields(clearCount)).to.deep.equal(["throttleLimitCount"]);
      const unitOnly = await put(`/subscription-plans/${unlimited.id}`, { throttleLimitUnit: "Day" });
      expect(unitOnly.status).to.equal(400);
      expect(fields(unitOnly)).to.deep.equal(["throttleLimitCount"]);
      const countOnly = await put(`/subscription-plans/${unlimited.id}`, { throttleLimitCount: 3 });
      expect(countOnly.status).to.equal(400);
      expect(fields(countOnly)).to.deep.equal(["throttleLimitUnit"]);
      expect((await get(`/subscription-plans/${limited.id}`)).body).to.deep.equal(limited);
      expect((await get(`/subscription-plans/${unlimited.id}`)).body).to.deep.equal(unlimited);
    });

    it("validates every field given and changes nothing", async () => {
      const plan = await createPlan(GOLD);
      const changes = await countRows("change_log");
      const reply = await put(`/subscription-plans/${plan.id}`, {
        planName: "",
        stopOnQuotaReach: null,
        throttleLimitCount: -1,
        throttleLimitUnit: "Year",
        expiryTime: "2030-13-01",
        status: "REVOKED",
      });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["planName", "stopOnQuotaReach", "throttleLimitCount", "throttleLimitUnit", "expiryTime", "status"]);
      expect((await get(`/subscription-plans/${plan.id}`)).body).to.deep.equal(plan);
      expect(await countRows("change_log")).to.equal(changes);
    });

    it("answers 409 when renaming to another plan's name", async () => {
      await createPlan(GOLD);
      const silver = await createPlan({ planName: "Silver" });
      const reply = await put(`/subscription-plans/${silver.id}`, { planName: "Gold" });
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.equal("Subscription plan already exists");
      expect((await get(`/subscription-plans/${silver.id}`)).body.planName).to.equal("Silver");
    });

    it("answers 404 for an unknown or non-UUID id, before validating the body", async () => {
      for (const id of [UNKNOWN_ID, "gold"]) {
        const reply = await put(`/subscription-plans/${id}`, { status: "NOPE" });
        expect(reply.status, id).to.equal(404);
        expect(reply.body.message).to.equal("Subscription plan not found");
      }
    });

    it("names the APIs whose subscriptions use the plan in the change record", async () => {
      const plan = await createPlan(GOLD);
      for (const [name, context] of [["api-b", "/b"], ["api-a", "/a"]] as const) {
        expect((await post("/rest-apis", restApi(name, { displayName: name, context }))).status).to.equal(201);
        expect((await post("/subscriptions", { apiId: name, subscriptionToken: `token-${name}`, subscriptionPlanId: plan.id })).status).to.equal(201);
      }
      expect((await post("/subscriptions", { apiId: "api-a", subscriptionToken: "token-2", subscriptionPlanId: plan.id })).status).to.equal(201);
      expect((await put(`/subscription-plans/${plan.id}`, { throttleLimitCount: 10 })).status).to.equal(200);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription_plan", id: plan.id, op: "update", apiIds: ["api-a", "api-b"] }]);
    });
  });

  describe("DELETE /subscription-plans/{planId}", () => {
    it("deletes a plan: 204, then 404", async () => {
      const plan = await createPlan(GOLD);
      const reply = await del(`/subscription-plans/${plan.id}`);
      expect(reply.status).to.equal(204);
      expect(reply.text).to.equal("");
      expect(await countRows("subscription_plans")).to.equal(0);
      expect(await lastChange()).to.deep.equal([{ entity: "subscription_plan", id: plan.id, op: "delete", apiIds: [] }]);
      expect((await get(`/subscription-plans/${plan.id}`)).status).to.equal(404);
      const again = await del(`/subscription-plans/${plan.id}`);
      expect(again.status).to.equal(404);
      expect(again.body.message).to.equal("Subscription plan not found");
    });

    it("answers 404 for a non-UUID id", async () => {
      const reply = await del("/subscription-plans/Gold");
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.equal("Subscription plan not found");
    });

    it("answers 409 while subscriptions use the plan, and deletes it once they are gone", async () => {
      const plan = await createPlan(GOLD);
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const subscription = await post("/subscriptions", { apiId: "reading-list-api-v1.0", subscriptionToken: "tok-1", subscriptionPlanId: plan.id });
      expect(subscription.status).to.equal(201);
      const changes = await countRows("change_log");
      const reply = await del(`/subscription-plans/${plan.id}`);
      expect(reply.status).to.equal(409);
      expect(reply.body.status).to.equal("error");
      expect(reply.body.message).to.contain("Gold").and.contain("1 subscription");
      expect(await countRows("subscription_plans")).to.equal(1);
      expect(await countRows("change_log")).to.equal(changes);
      expect((await del(`/subscriptions/${subscription.body.id}`)).status).to.equal(204);
      expect((await del(`/subscription-plans/${plan.id}`)).status).to.equal(204);
    });

    it("counts REVOKED subscriptions as using the plan", async () => {
      const plan = await createPlan(GOLD);
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const subscription = await post("/subscriptions", { apiId: "reading-list-api-v1.0", subscriptionToken: "tok-1", subscriptionPlanId: plan.id, status: "REVOKED" });
      expect(subscription.status).to.equal(201);
      expect((await del(`/subscription-plans/${plan.id}`)).status).to.equal(409);
    });
  });

  describe("roles", () => {
    it("answers 403 to a consumer on every route", async () => {
      const plan = await createPlan(GOLD);
      const replies = [
        await post("/subscription-plans", { planName: "Silver" }, { as: "consumer" }),
        await get("/subscription-plans", { as: "consumer" }),
        await get(`/subscription-plans/${plan.id}`, { as: "consumer" }),
        await put(`/subscription-plans/${plan.id}`, { status: "INACTIVE" }, { as: "consumer" }),
        await del(`/subscription-plans/${plan.id}`, { as: "consumer" }),
      ];
      for (const reply of replies) {
        expect(reply.status).to.equal(403);
        expect(reply.body).to.include({ error: "forbidden" });
      }
      expect(await countRows("subscription_plans")).to.equal(1);
      expect((await get(`/subscription-plans/${plan.id}`)).body).to.deep.equal(plan);
    });

    it("answers 401 without credentials", async () => {
      const reply = await get("/subscription-plans", { as: null });
      expect(reply.status).to.equal(401);
    });

    it("lets a developer manage plans", async () => {
      const created = await post("/subscription-plans", GOLD, { as: "developer" });
      expect(created.status).to.equal(201);
      expect((await get("/subscription-plans", { as: "developer" })).body.count).to.equal(1);
      expect((await put(`/subscription-plans/${created.body.id}`, { status: "INACTIVE" }, { as: "developer" })).status).to.equal(200);
      expect((await del(`/subscription-plans/${created.body.id}`, { as: "developer" })).status).to.equal(204);
    });
  });
});

import { z } from "zod";
import { writeTransaction } from "../../store/changes";
import {
  createPlan,
  deletePlan,
  getPlanOr404,
  listPlans,
  planToResponse,
  updatePlan,
} from "../../store/repositories/subscriptionPlans";
import { defineRoute, type RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";
import {
  subscriptionPlanCreateSchema,
  subscriptionPlanListSchema,
  subscriptionPlanResponseSchema,
  subscriptionPlanUpdateSchema,
} from "../schemas/subscription";

const TAG = "SubscriptionPlans";
const ROLES = ["admin", "developer"] as const;
// Not validated as a UUID here: anything that is not a known plan id is a 404.
const idParams = z.object({ planId: z.string().describe("The plan's id (a UUID)") });

export const subscriptionPlanRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/subscription-plans",
    operationId: "createSubscriptionPlan",
    summary: "Create a subscription plan",
    description:
      "`throttleLimitCount` and `throttleLimitUnit` come together or not at all. `stopOnQuotaReach` defaults to true and `status` to ACTIVE. Unknown fields are ignored.",
    tag: TAG,
    roles: ROLES,
    body: subscriptionPlanCreateSchema,
    responses: {
      201: { description: "Created", schema: subscriptionPlanResponseSchema },
      409: { description: "A plan with this name already exists" },
    },
    async handler({ body, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) => createPlan(tx, changes, body));
      return { status: 201, body: planToResponse(value), headers: { Location: `${BASE_PATH}/subscription-plans/${value.id}` } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscription-plans",
    operationId: "listSubscriptionPlans",
    summary: "List subscription plans, ordered by name",
    tag: TAG,
    roles: ROLES,
    responses: { 200: { description: "The plans", schema: subscriptionPlanListSchema } },
    async handler({ services }) {
      const rows = await listPlans(services.database.knex);
      return { status: 200, body: { subscriptionPlans: rows.map(planToResponse), count: rows.length } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscription-plans/{planId}",
    operationId: "getSubscriptionPlan",
    summary: "Get a subscription plan",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: { 200: { description: "The plan", schema: subscriptionPlanResponseSchema }, 404: { description: "No such plan" } },
    async handler({ params, services }) {
      return { status: 200, body: planToResponse(await getPlanOr404(services.database.knex, params.planId)) };
    },
  }),
  defineRoute({
    method: "put",
    path: "/subscription-plans/{planId}",
    operationId: "updateSubscriptionPlan",
    summary: "Update a subscription plan (partial)",
    description:
      "Fields that are given are changed, the others are kept; `null` clears an optional field. The count/unit pairing applies to the resulting plan. Checks, in order: the plan exists (404), validation (400), name taken (409).",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    body: subscriptionPlanUpdateSchema,
    async precheck({ req, services }) {
      await getPlanOr404(services.database.knex, req.params.planId as string);
    },
    responses: {
      200: { description: "Updated", schema: subscriptionPlanResponseSchema },
      404: { description: "No such plan" },
      409: { description: "Another plan has this name" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        updatePlan(tx, changes, await getPlanOr404(tx, params.planId), body),
      );
      return { status: 200, body: planToResponse(value) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/subscription-plans/{planId}",
    operationId: "deleteSubscriptionPlan",
    summary: "Delete a subscription plan that no subscription uses",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: {
      204: { description: "Deleted" },
      404: { description: "No such plan" },
      409: { description: "Subscriptions still use the plan" },
    },
    async handler({ params, services }) {
      await writeTransaction(services.database.knex, async (tx, changes) => deletePlan(tx, changes, await getPlanOr404(tx, params.planId)));
      return { status: 204 };
    },
  }),
];

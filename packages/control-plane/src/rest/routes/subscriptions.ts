import { z } from "zod";
import { writeTransaction } from "../../store/changes";
import {
  createSubscription,
  deleteSubscription,
  getSubscriptionOr404,
  listSubscriptions,
  subscriptionToResponse,
  updateSubscription,
} from "../../store/repositories/subscriptions";
import { defineRoute, type RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";
import {
  subscriptionCreateSchema,
  subscriptionListQuerySchema,
  subscriptionListSchema,
  subscriptionResponseSchema,
  subscriptionUpdateSchema,
} from "../schemas/subscription";

const TAG = "Subscriptions";
const ROLES = ["admin", "developer"] as const;
// Not validated as a UUID here: anything that is not a known subscription id is a 404.
const idParams = z.object({ subscriptionId: z.string().describe("The subscription's id (a UUID)") });

export const subscriptionRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/subscriptions",
    operationId: "createSubscription",
    summary: "Subscribe to a RestAPI",
    description:
      "`apiId` is the API's handle or internal id. The token is stored only as its SHA-256 hash and appears only in this response. A plan, when given, must exist, be ACTIVE and, if the API lists `spec.subscriptionPlans`, be one of them. An `applicationId`, when given, must be the id of an existing application (400 naming the field otherwise). Unknown fields are ignored.",
    tag: TAG,
    roles: ROLES,
    body: subscriptionCreateSchema,
    responses: {
      201: { description: "Created; the only answer that carries the token", schema: subscriptionResponseSchema },
      404: { description: "No such API" },
      409: { description: "The API already has a subscription with this token" },
    },
    async handler({ body, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) => createSubscription(tx, changes, body));
      return {
        status: 201,
        body: subscriptionToResponse(value, body.subscriptionToken),
        headers: { Location: `${BASE_PATH}/subscriptions/${value.id}` },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscriptions",
    operationId: "listSubscriptions",
    summary: "List subscriptions, newest first",
    description: "Filters are exact matches. Tokens are never returned.",
    tag: TAG,
    roles: ROLES,
    query: subscriptionListQuerySchema,
    responses: { 200: { description: "The subscriptions", schema: subscriptionListSchema } },
    async handler({ query, services }) {
      const rows = await listSubscriptions(services.database.knex, query);
      return { status: 200, body: { subscriptions: rows.map((row) => subscriptionToResponse(row)), count: rows.length } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscriptions/{subscriptionId}",
    operationId: "getSubscription",
    summary: "Get a subscription (without its token)",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: { 200: { description: "The subscription", schema: subscriptionResponseSchema }, 404: { description: "No such subscription" } },
    async handler({ params, services }) {
      return { status: 200, body: subscriptionToResponse(await getSubscriptionOr404(services.database.knex, params.subscriptionId)) };
    },
  }),
  defineRoute({
    method: "put",
    path: "/subscriptions/{subscriptionId}",
    operationId: "updateSubscription",
    summary: "Change a subscription's status or plan",
    description:
      "Only `status` and `subscriptionPlanId` may be sent (`null` removes the plan); other fields are a 400. A new plan gets the same checks as on create. Checks, in order: the subscription exists (404), validation (400).",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    body: subscriptionUpdateSchema,
    async precheck({ req, services }) {
      await getSubscriptionOr404(services.database.knex, req.params.subscriptionId as string);
    },
    responses: {
      200: { description: "Updated", schema: subscriptionResponseSchema },
      404: { description: "No such subscription" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        updateSubscription(tx, changes, await getSubscriptionOr404(tx, params.subscriptionId), body),
      );
      return { status: 200, body: subscriptionToResponse(value) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/subscriptions/{subscriptionId}",
    operationId: "deleteSubscription",
    summary: "Delete a subscription",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: { 204: { description: "Deleted" }, 404: { description: "No such subscription" } },
    async handler({ params, services }) {
      await writeTransaction(services.database.knex, async (tx, changes) =>
        deleteSubscription(tx, changes, await getSubscriptionOr404(tx, params.subscriptionId)),
      );
      return { status: 204 };
    },
  }),
];

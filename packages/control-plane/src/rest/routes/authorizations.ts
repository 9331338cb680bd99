import { z } from "zod";
import { writeTransaction } from "../../store/changes";
import {
  authorizationToResponse,
  createAuthorization,
  deleteAuthorization,
  getAuthorizationOr404,
  listAuthorizations,
  updateAuthorization,
} from "../../store/repositories/authorizations";
import { defineRoute, type RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";
import {
  authorizationCreateSchema,
  authorizationIdParam,
  authorizationListQuery,
  authorizationListSchema,
  authorizationResponseSchema,
  authorizationUpdateSchema,
} from "../schemas/application";
import { statusMessage } from "../schemas/common";

const TAG = "Authorizations";
const ROLES = ["admin", "developer"] as const;
const idParams = z.object({ authorizationId: authorizationIdParam });
const notFound = { description: "No such authorization" };

export const authorizationRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/authorizations",
    operationId: "createAuthorization",
    summary: "Authorize an application to call an API in a stage",
    description:
      "Until `expiresAt` (if given, in the future), the application's key pairs and AppCode are accepted by the API in the stage: RELEASE is the API's main vhost, TEST its sandbox vhost. One authorization per application, API and stage: a second one is a 409 (change the existing one with PUT).",
    tag: TAG,
    roles: ROLES,
    body: authorizationCreateSchema,
    responses: {
      201: { description: "Created", schema: authorizationResponseSchema },
      404: { description: "No such application or API (the message says which)" },
      409: { description: "The application is already authorized for this API and stage" },
    },
    async handler({ body, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) => createAuthorization(tx, changes, body));
      return {
        status: 201,
        body: { status: "success", authorization: authorizationToResponse(value) },
        headers: { Location: `${BASE_PATH}/authorizations/${value.id}` },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/authorizations",
    operationId: "listAuthorizations",
    summary: "List authorizations, newest first",
    description: "Filters are exact matches. `expired` tells whether `expiresAt` has passed.",
    tag: TAG,
    roles: ROLES,
    query: authorizationListQuery,
    responses: { 200: { description: "The authorizations", schema: authorizationListSchema } },
    async handler({ query, services }) {
      const rows = await listAuthorizations(services.database.knex, query);
      const now = new Date();
      return {
        status: 200,
        body: { status: "success", count: rows.length, authorizations: rows.map((row) => authorizationToResponse(row, now)) },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/authorizations/{authorizationId}",
    operationId: "getAuthorization",
    summary: "Get an authorization",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: { 200: { description: "The authorization", schema: authorizationResponseSchema }, 404: notFound },
    async handler({ params, services }) {
      const row = await getAuthorizationOr404(services.database.knex, params.authorizationId);
      return { status: 200, body: { status: "success", authorization: authorizationToResponse(row) } };
    },
  }),
  defineRoute({
    method: "put",
    path: "/authorizations/{authorizationId}",
    operationId: "updateAuthorization",
    summary: "Change an authorization's expiry or description",
    description: "Partial update: absent fields keep their value; `expiresAt: null` removes the expiry, `description: null` clears it.",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    body: authorizationUpdateSchema,
    responses: { 200: { description: "Updated", schema: authorizationResponseSchema }, 404: notFound },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        updateAuthorization(tx, changes, await getAuthorizationOr404(tx, params.authorizationId), body),
      );
      return { status: 200, body: { status: "success", authorization: authorizationToResponse(value) } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/authorizations/{authorizationId}",
    operationId: "deleteAuthorization",
    summary: "Withdraw an authorization",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: { 200: { description: "Deleted", schema: statusMessage.extend({ id: z.string() }) }, 404: notFound },
    async handler({ params, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const existing = await getAuthorizationOr404(tx, params.authorizationId);
        await deleteAuthorization(tx, changes, existing);
        return existing;
      });
      return { status: 200, body: { status: "success", message: "Authorization deleted successfully", id: value.id } };
    },
  }),
];

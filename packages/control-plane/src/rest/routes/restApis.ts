import { z } from "zod";
import { DEPLOYMENT_STATES } from "@apigw/shared";
import { ApiError } from "../../errors";
import { writeTransaction } from "../../store/changes";
import {
  createApi,
  deleteApi,
  getApiOr404,
  listApis,
  toResponse,
  updateApi,
} from "../../store/repositories/restApis";
import { apiStatusReport } from "../apiStatus";
import { defineRoute } from "../framework";
import { BASE_PATH } from "../paths";
import { handle, statusMessage } from "../schemas/common";
import { restApiListSchema, restApiRequestSchema, restApiResponseSchema } from "../schemas/restApi";

const TAG = "RestAPIs";
const ROLES = ["admin", "developer"] as const;
const idParams = z.object({ id: handle.describe("The API's handle (metadata.name)") });

export const restApiRoutes = [
  defineRoute({
    method: "post",
    path: "/rest-apis",
    operationId: "createRestAPI",
    summary: "Create a RestAPI",
    description:
      "Validates and stores the API. `spec.deploymentState: undeployed` stores it without serving it. A route (method and path) that another deployed API already serves on the same vhost is a 409.",
    tag: TAG,
    roles: ROLES,
    body: restApiRequestSchema,
    responses: {
      201: { description: "Created", schema: restApiResponseSchema },
      409: { description: "Handle, displayName+version or a route already taken" },
    },
    async handler({ body, user, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) => createApi(tx, changes, body, user.name));
      return { status: 201, body: toResponse(value), headers: { Location: `${BASE_PATH}/rest-apis/${encodeURIComponent(value.handle)}` } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/rest-apis",
    operationId: "listRestAPIs",
    summary: "List RestAPIs, newest first",
    description: "Filters are exact matches; `context` matches the context with `$version` resolved.",
    tag: TAG,
    roles: ROLES,
    query: z.object({
      displayName: z.string().max(100).optional(),
      version: z.string().max(32).optional(),
      context: z.string().max(200).optional(),
      status: z.enum(DEPLOYMENT_STATES).optional(),
    }),
    responses: { 200: { description: "The APIs", schema: restApiListSchema } },
    async handler({ query, services }) {
      const rows = await listApis(services.database.knex, query);
      return { status: 200, body: { status: "success", count: rows.length, apis: rows.map(toResponse) } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/rest-apis/{id}",
    operationId: "getRestAPI",
    summary: "Get a RestAPI",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    description:
      "Besides the WSO2 fields, `status.gateways` tells whether every connected gateway that serves the API has acknowledged (ACKed over xDS) the store revision of its latest change: `synced` (false when no connected gateway serves it), that `revision`, and per gateway its connected nodes and the revision they have all ACKed. `status.conditions` (type, status, reason, message, observedRevision) says whether the stored API builds into a configuration Envoy accepts (`Accepted`; False/Invalid when a gateway group holds it back, naming why), whether the gateways serve it (`Programmed`: Undeployed, Invalid, NoGateways, Pending or Programmed) and whether they serve less than declared (`Degraded`: operations left out, policies not honoured exactly, each named).",
    responses: { 200: { description: "The API", schema: restApiResponseSchema }, 404: { description: "No such API" } },
    async handler({ params, services }) {
      const row = await getApiOr404(services.database.knex, params.id);
      const response = toResponse(row);
      const report = await apiStatusReport(services, row.handle, response.metadata.labels ?? {}, row.deployment_state === "deployed");
      return { status: 200, body: { ...response, status: { ...response.status, ...report } } };
    },
  }),
  defineRoute({
    method: "put",
    path: "/rest-apis/{id}",
    operationId: "updateRestAPI",
    summary: "Replace a RestAPI",
    description:
      "Checks, in order: body parses (400), metadata.name equals the id (400: an API cannot be renamed), the API exists (404), validation (400), conflicts (409).",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    body: restApiRequestSchema,
    async precheck({ req, services }) {
      const id = req.params.id as string;
      const body = req.body as { metadata?: { name?: unknown } } | undefined;
      const name = body?.metadata?.name;
      if (typeof name === "string" && name !== id) {
        throw ApiError.badRequest(`handle mismatch: metadata.name '${name.slice(0, 64)}' differs from '${id}'; an API cannot be renamed`, "metadata.name");
      }
      await getApiOr404(services.database.knex, id);
    },
    responses: {
      200: { description: "Updated", schema: restApiResponseSchema },
      404: { description: "No such API" },
      409: { description: "displayName+version or a route already taken" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const existing = await getApiOr404(tx, params.id);
        return updateApi(tx, changes, existing, body);
      });
      return { status: 200, body: toResponse(value) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/rest-apis/{id}",
    operationId: "deleteRestAPI",
    summary: "Delete a RestAPI with its keys, subscriptions, authorizations and plug-in bindings",
    tag: TAG,
    roles: ROLES,
    params: idParams,
    responses: {
      200: { description: "Deleted", schema: statusMessage.extend({ id: z.string() }) },
      404: { description: "No such API" },
    },
    async handler({ params, services }) {
      await writeTransaction(services.database.knex, async (tx, changes) => deleteApi(tx, changes, await getApiOr404(tx, params.id)));
      return { status: 200, body: { status: "success", message: "RestAPI deleted successfully", id: params.id } };
    },
  }),
];

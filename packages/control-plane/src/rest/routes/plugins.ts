import { z } from "zod";
import { STAGES, findPolicyType } from "@apigw/shared";
import { ApiError, type FieldError } from "../../errors";
import { writeTransaction } from "../../store/changes";
import {
  apiPluginToResponse,
  attachPlugin,
  createPlugin,
  deletePlugin,
  detachPlugin,
  getPluginOr404,
  listApiPlugins,
  listPluginApis,
  listPlugins,
  pluginApiToResponse,
  pluginToResponse,
  updatePlugin,
} from "../../store/repositories/plugins";
import { getApiOr404 } from "../../store/repositories/restApis";
import { defineRoute, zodIssuesToFieldErrors, type RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";
import { handle, statusMessage } from "../schemas/common";
import {
  apiPluginsSchema,
  bindingCreatedSchema,
  bindingRequestSchema,
  paramsFieldErrors,
  pluginApisSchema,
  pluginCreateSchema,
  pluginListSchema,
  pluginResponseSchema,
  pluginUpdateSchema,
  unknownTypeMessage,
} from "../schemas/plugin";

const TAG = "Plugins";
const ROLES = ["admin", "developer"] as const;
const pluginIdParams = z.object({ pluginId: z.string().describe("The plug-in's id (a UUID)") });
const stageQuery = z.object({ stage: z.enum(STAGES).optional() });

export const pluginRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/plugins",
    operationId: "createPlugin",
    summary: "Create a plug-in (CreatePlugin)",
    description:
      "A plug-in is a named policy of one registry type (the same types and params as a RestApi's inline policies). `type` may be a canonical name or an alias; the canonical name is stored. The JSON of `params` may be at most 50 KB. The number of plug-ins is limited (PLUGIN_LIMIT, 1000 by default). A plug-in takes effect only once it is bound to an API in a stage.",
    tag: TAG,
    roles: ROLES,
    body: pluginCreateSchema,
    responses: {
      201: { description: "Created", schema: pluginResponseSchema },
      409: { description: "Name taken, or the plug-in limit is reached" },
    },
    async handler({ body, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) =>
        createPlugin(tx, changes, body, services.config.PLUGIN_LIMIT),
      );
      return {
        status: 201,
        body: { status: "success", plugin: pluginToResponse(value) },
        headers: { Location: `${BASE_PATH}/plugins/${value.id}` },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/plugins",
    operationId: "listPlugins",
    summary: "List plug-ins by name (DescribePlugins)",
    description: "Filters are exact matches; `type` may be a canonical type name or an alias.",
    tag: TAG,
    roles: ROLES,
    query: z.object({
      type: z
        .string()
        .max(64)
        .superRefine((t, ctx) => {
          if (!findPolicyType(t)) ctx.addIssue({ code: "custom", message: unknownTypeMessage(t) });
        })
        .optional(),
      name: z.string().max(50).optional(),
    }),
    responses: { 200: { description: "The plug-ins", schema: pluginListSchema } },
    async handler({ query, services }) {
      const type = query.type === undefined ? undefined : findPolicyType(query.type)!.type;
      const rows = await listPlugins(services.database.knex, { type, name: query.name });
      return { status: 200, body: { status: "success", count: rows.length, plugins: rows.map(pluginToResponse) } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/plugins/{pluginId}",
    operationId: "getPlugin",
    summary: "Get a plug-in",
    tag: TAG,
    roles: ROLES,
    params: pluginIdParams,
    responses: { 200: { description: "The plug-in", schema: pluginResponseSchema }, 404: { description: "No such plug-in" } },
    async handler({ params, services }) {
      return { status: 200, body: { status: "success", plugin: pluginToResponse(await getPluginOr404(services.database.knex, params.pluginId)) } };
    },
  }),
  defineRoute({
    method: "put",
    path: "/plugins/{pluginId}",
    operationId: "updatePlugin",
    summary: "Modify a plug-in (ModifyPlugin)",
    description:
      "Partial update of name, description and params (params are replaced as a whole and checked against the plug-in's type). The type cannot change. The change applies at once to every API the plug-in is bound to. Checks, in order: the plug-in exists (404), validation (400), name taken (409).",
    tag: TAG,
    roles: ROLES,
    params: pluginIdParams,
    body: pluginUpdateSchema,
    async precheck({ req, services }) {
      const existing = await getPluginOr404(services.database.knex, req.params.pluginId as string);
      if (req.body === undefined) return; // the framework answers "body is required"
      const errors = updateErrors(req.body, existing.type);
      if (errors.length > 0) throw ApiError.validation(errors);
    },
    responses: {
      200: { description: "Updated", schema: pluginResponseSchema },
      404: { description: "No such plug-in" },
      409: { description: "Name taken" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        updatePlugin(tx, changes, await getPluginOr404(tx, params.pluginId), body),
      );
      return { status: 200, body: { status: "success", plugin: pluginToResponse(value) } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/plugins/{pluginId}",
    operationId: "deletePlugin",
    summary: "Delete a plug-in (DeletePlugin)",
    description: "A plug-in still bound to an API in any stage, deployed or not, cannot be deleted (409): detach it first.",
    tag: TAG,
    roles: ROLES,
    params: pluginIdParams,
    responses: {
      200: { description: "Deleted", schema: statusMessage.extend({ id: z.string() }) },
      404: { description: "No such plug-in" },
      409: { description: "The plug-in is still bound" },
    },
    async handler({ params, services }) {
      const { value: id } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const existing = await getPluginOr404(tx, params.pluginId);
        await deletePlugin(tx, changes, existing);
        return existing.id;
      });
      return { status: 200, body: { status: "success", message: "Plug-in deleted successfully", id } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/plugins/{pluginId}/bindings",
    operationId: "attachPlugin",
    summary: "Bind a plug-in to APIs in a stage (AttachPlugin)",
    description:
      "All or nothing: an unknown API (404), the plug-in already bound to an API in the stage (409), or another plug-in of the same type bound to an API in the stage (409; one plug-in of a type per API and stage) binds none. The binding takes effect at once, with no redeployment. An undeployed API may be bound: the binding waits and applies when the API is deployed again, just as undeploying an API keeps its bindings.",
    tag: TAG,
    roles: ROLES,
    params: pluginIdParams,
    body: bindingRequestSchema,
    responses: {
      201: { description: "Bound", schema: bindingCreatedSchema },
      404: { description: "No such plug-in or API" },
      409: { description: "Already bound, or another plug-in of the type is bound" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        attachPlugin(tx, changes, await getPluginOr404(tx, params.pluginId), body),
      );
      return { status: 201, body: { status: "success", bindings: value } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/plugins/{pluginId}/bindings/{stage}/{apiId}",
    operationId: "detachPlugin",
    summary: "Unbind a plug-in from an API in a stage (DetachPlugin)",
    description: "Takes effect at once.",
    tag: TAG,
    roles: ROLES,
    params: z.object({
      pluginId: z.string().describe("The plug-in's id (a UUID)"),
      stage: z.enum(STAGES),
      apiId: handle.describe("The API's handle"),
    }),
    responses: {
      200: {
        description: "Unbound",
        schema: statusMessage.extend({ pluginId: z.string(), apiId: z.string(), stage: z.enum(STAGES) }),
      },
      404: { description: "No such plug-in or API, or the plug-in is not bound to the API in the stage" },
    },
    async handler({ params, services }) {
      const { value: pluginId } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const plugin = await getPluginOr404(tx, params.pluginId);
        await detachPlugin(tx, changes, plugin, await getApiOr404(tx, params.apiId), params.stage);
        return plugin.id;
      });
      return {
        status: 200,
        body: { status: "success", message: "Plug-in detached successfully", pluginId, apiId: params.apiId, stage: params.stage },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/plugins/{pluginId}/bindings",
    operationId: "listPluginBindings",
    summary: "APIs a plug-in is bound to (DescribePluginApis)",
    description: "Ordered by API handle, then stage. `deploymentState` shows whether a binding is currently in effect.",
    tag: TAG,
    roles: ROLES,
    params: pluginIdParams,
    query: stageQuery,
    responses: { 200: { description: "The bindings", schema: pluginApisSchema }, 404: { description: "No such plug-in" } },
    async handler({ params, query, services }) {
      const db = services.database.knex;
      const plugin = await getPluginOr404(db, params.pluginId);
      const rows = await listPluginApis(db, plugin.id, query.stage);
      return { status: 200, body: { status: "success", count: rows.length, bindings: rows.map(pluginApiToResponse) } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/rest-apis/{id}/plugins",
    operationId: "listRestAPIPlugins",
    summary: "Plug-ins bound to an API (DescribePluginsByApi)",
    description: "Ordered by stage, then plug-in name.",
    tag: TAG,
    roles: ROLES,
    params: z.object({ id: handle.describe("The API's handle (metadata.name)") }),
    query: stageQuery,
    responses: { 200: { description: "The plug-ins with their stage", schema: apiPluginsSchema }, 404: { description: "No such API" } },
    async handler({ params, query, services }) {
      const db = services.database.knex;
      const api = await getApiOr404(db, params.id);
      const rows = await listApiPlugins(db, api.id, query.stage);
      return { status: 200, body: { status: "success", count: rows.length, plugins: rows.map(apiPluginToResponse) } };
    },
  }),
];

/** Every problem with a ModifyPlugin body, including those that depend on the plug-in's type. */
function updateErrors(body: unknown, type: string): FieldError[] {
  const result = pluginUpdateSchema.safeParse(body);
  const errors = result.success ? [] : zodIssuesToFieldErrors(result.error.issues);
  const raw = (typeof body === "object" && body !== null && !Array.isArray(body) ? body : {}) as Record<string, unknown>;
  if (typeof raw.type === "string" && raw.type.length <= 64 && findPolicyType(raw.type)?.type !== type) {
    errors.push({ field: "type", message: `the type of a plug-in cannot change (it is '${type}'); create a new plug-in instead` });
  }
  const paramsOk = !errors.some((e) => e.field === "params");
  if (paramsOk && typeof raw.params === "object" && raw.params !== null && !Array.isArray(raw.params)) {
    errors.push(...paramsFieldErrors(type, raw.params));
  }
  if (result.success && errors.length === 0 && result.data.name === undefined && result.data.description === undefined && result.data.params === undefined) {
    errors.push({ field: "body", message: "give at least one of name, description or params" });
  }
  return errors;
}

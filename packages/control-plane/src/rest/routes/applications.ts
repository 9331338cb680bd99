import { z } from "zod";
import { writeTransaction } from "../../store/changes";
import {
  addKeyPair,
  applicationToResponse,
  createApplication,
  deleteApplication,
  deleteKeyPair,
  getApplicationOr404,
  keyPairToResponse,
  keyPairsOf,
  listApplications,
  resetAppCode,
  resetSecret,
  setApplicationStatus,
  updateApplication,
  type ApplicationRow,
} from "../../store/repositories/applications";
import type { Db } from "../../store/repositories/util";
import { defineRoute, type RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";
import {
  MAX_KEY_PAIRS,
  appCodeResetSchema,
  appCodeResponseSchema,
  appIdParam,
  appKeyParam,
  applicationCreateSchema,
  applicationListQuery,
  applicationListSchema,
  applicationResponseSchema,
  applicationUpdateSchema,
  keyPairCreateSchema,
  keyPairResponseSchema,
  secretResetSchema,
  type ApplicationStatus,
} from "../schemas/application";
import { statusMessage } from "../schemas/common";

const TAG = "Applications";
const ROLES = ["admin", "developer"] as const;
const appParams = z.object({ appId: appIdParam });
const keyPairParams = z.object({ appId: appIdParam, appKey: appKeyParam });
const notFound = { description: "No such application" };

/** The application as GET shows it: no AppSecret, the AppCode masked. */
async function shown(db: Db, row: ApplicationRow) {
  return { status: "success", application: applicationToResponse(row, await keyPairsOf(db, [row.id])) };
}

function statusRoute(action: "enable" | "disable", status: ApplicationStatus) {
  return defineRoute({
    method: "post",
    path: `/applications/{appId}/${action}`,
    operationId: `${action}Application`,
    summary: action === "disable" ? "Disable an application" : "Enable an application",
    description:
      action === "disable"
        ? "A disabled application's calls are refused (403 `App Disabled`) by every API it is authorized for, until it is enabled again. Idempotent."
        : "Lets a disabled application call the APIs it is authorized for again. Idempotent.",
    tag: TAG,
    roles: ROLES,
    params: appParams,
    responses: { 200: { description: "The application", schema: applicationResponseSchema }, 404: notFound },
    async handler({ params, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        setApplicationStatus(tx, changes, await getApplicationOr404(tx, params.appId), status),
      );
      return { status: 200, body: await shown(services.database.knex, value) };
    },
  });
}

export const applicationRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/applications",
    operationId: "createApplication",
    summary: "Create an application with its default AppKey/AppSecret pair and AppCode",
    description:
      "The answer is the only one that shows the AppSecret and the AppCode: the AppSecret is stored encrypted with the master key (the AppKey as associated data), the AppCode only as a SHA-256 hash. Name, AppKey and AppCode are unique (409).",
    tag: TAG,
    roles: ROLES,
    body: applicationCreateSchema,
    responses: {
      201: { description: "Created; carries the raw AppSecret and AppCode", schema: applicationResponseSchema },
      409: { description: "Name, AppKey or AppCode already taken" },
    },
    async handler({ body, user, services }) {
      const { value } = await writeTransaction(services.database.knex, (tx, changes) => createApplication(tx, changes, services.secretBox, body, user.name));
      return {
        status: 201,
        body: { status: "success", application: applicationToResponse(value.row, value.pairs, value.revealed) },
        headers: { Location: `${BASE_PATH}/applications/${value.row.id}` },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/applications",
    operationId: "listApplications",
    summary: "List applications, newest first",
    description: "Filters are exact matches. AppSecrets are never shown; AppCodes are masked.",
    tag: TAG,
    roles: ROLES,
    query: applicationListQuery,
    responses: { 200: { description: "The applications", schema: applicationListSchema } },
    async handler({ query, services }) {
      const db = services.database.knex;
      const rows = await listApplications(db, query);
      const pairs = await keyPairsOf(db, rows.map((r) => r.id));
      const applications = rows.map((row) => applicationToResponse(row, pairs.filter((p) => p.app_id === row.id)));
      return { status: 200, body: { status: "success", count: applications.length, applications } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/applications/{appId}",
    operationId: "getApplication",
    summary: "Get an application",
    description: "Shows the AppKeys, not the AppSecrets; the AppCode is masked.",
    tag: TAG,
    roles: ROLES,
    params: appParams,
    responses: { 200: { description: "The application", schema: applicationResponseSchema }, 404: notFound },
    async handler({ params, services }) {
      const db = services.database.knex;
      return { status: 200, body: await shown(db, await getApplicationOr404(db, params.appId)) };
    },
  }),
  defineRoute({
    method: "put",
    path: "/applications/{appId}",
    operationId: "updateApplication",
    summary: "Update an application's name, description, tags or extInfo",
    description: "Partial update: absent fields keep their value, `null` clears description or extInfo, `tags` replaces all tags.",
    tag: TAG,
    roles: ROLES,
    params: appParams,
    body: applicationUpdateSchema,
    responses: {
      200: { description: "Updated", schema: applicationResponseSchema },
      404: notFound,
      409: { description: "Name already taken" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) => updateApplication(tx, changes, await getApplicationOr404(tx, params.appId), body));
      return { status: 200, body: await shown(services.database.knex, value) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/applications/{appId}",
    operationId: "deleteApplication",
    summary: "Delete an application with its key pairs and authorizations",
    tag: TAG,
    roles: ROLES,
    params: appParams,
    responses: { 200: { description: "Deleted", schema: statusMessage.extend({ id: z.string() }) }, 404: notFound },
    async handler({ params, services }) {
      const { value: app } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const existing = await getApplicationOr404(tx, params.appId);
        await deleteApplication(tx, changes, existing);
        return existing;
      });
      return { status: 200, body: { status: "success", message: "Application deleted successfully", id: app.id } };
    },
  }),
  statusRoute("disable", "DISABLED"),
  statusRoute("enable", "ENABLED"),
  defineRoute({
    method: "post",
    path: "/applications/{appId}/key-pairs",
    operationId: "createApplicationKeyPair",
    summary: "Add an AppKey/AppSecret pair to an application",
    description: `Every pair has all the application's rights. At most ${MAX_KEY_PAIRS} pairs per application (400 beyond). The body is optional; the answer is the only one that shows the AppSecret.`,
    tag: TAG,
    roles: ROLES,
    params: appParams,
    body: keyPairCreateSchema,
    bodyRequired: false,
    responses: {
      201: { description: "Created; carries the raw AppSecret", schema: keyPairResponseSchema },
      400: { description: `Validation failure, or the application already has ${MAX_KEY_PAIRS} pairs` },
      404: notFound,
      409: { description: "AppKey already in use" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        addKeyPair(tx, changes, services.secretBox, await getApplicationOr404(tx, params.appId), body),
      );
      return { status: 201, body: { status: "success", keyPair: keyPairToResponse(value.pair, value.secret) } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/applications/{appId}/key-pairs/{appKey}",
    operationId: "deleteApplicationKeyPair",
    summary: "Delete an added key pair",
    description: "The default pair (created with the application) cannot be deleted (409); reset its secret instead.",
    tag: TAG,
    roles: ROLES,
    params: keyPairParams,
    responses: {
      200: { description: "Deleted", schema: statusMessage.extend({ appKey: z.string() }) },
      404: { description: "No such application or key pair" },
      409: { description: "The default key pair" },
    },
    async handler({ params, services }) {
      await writeTransaction(services.database.knex, async (tx, changes) => deleteKeyPair(tx, changes, await getApplicationOr404(tx, params.appId), params.appKey));
      return { status: 200, body: { status: "success", message: "Key pair deleted successfully", appKey: params.appKey } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/applications/{appId}/key-pairs/{appKey}/reset-secret",
    operationId: "resetApplicationSecret",
    summary: "Replace the AppSecret of a key pair",
    description: "The old AppSecret stops working at once. The body is optional; the answer is the only one that shows the new AppSecret.",
    tag: TAG,
    roles: ROLES,
    params: keyPairParams,
    body: secretResetSchema,
    bodyRequired: false,
    responses: {
      200: { description: "The key pair with its new raw AppSecret", schema: keyPairResponseSchema },
      404: { description: "No such application or key pair" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        resetSecret(tx, changes, services.secretBox, await getApplicationOr404(tx, params.appId), params.appKey, body.appSecret),
      );
      return { status: 200, body: { status: "success", keyPair: keyPairToResponse(value.pair, value.secret) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/applications/{appId}/app-code/reset",
    operationId: "resetApplicationAppCode",
    summary: "Replace an application's AppCode",
    description: "The old AppCode stops working at once. The body is optional; the answer is the only one that shows the new AppCode.",
    tag: TAG,
    roles: ROLES,
    params: appParams,
    body: appCodeResetSchema,
    bodyRequired: false,
    responses: {
      200: { description: "The new raw AppCode", schema: appCodeResponseSchema },
      404: notFound,
      409: { description: "AppCode already used by another application" },
    },
    async handler({ params, body, services }) {
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) =>
        resetAppCode(tx, changes, await getApplicationOr404(tx, params.appId), body.appCode),
      );
      return { status: 200, body: { status: "success", appCode: value } };
    },
  }),
];

import type { Knex } from "knex";
import { writeTransaction, type ChangeRecorder } from "../../store/changes";
import type { Services } from "../services";
import {
  assertMayModify,
  createKey,
  findActiveKey,
  getActiveKeyOr404,
  listKeys,
  regenerateKey,
  remainingQuota,
  revokeKey,
  toResponse,
  updateKeyValue,
  type Actor,
} from "../../store/repositories/apiKeys";
import { getApiOr404 } from "../../store/repositories/restApis";
import type { AuthenticatedUser } from "../auth";
import { defineRoute, type RouteDefinition } from "../framework";
import {
  apiKeyCreateSchema,
  apiKeyIssueResponseSchema,
  apiKeyListSchema,
  apiKeyNameParams,
  apiKeyParams,
  apiKeyRegenerateSchema,
  apiKeyUpdateSchema,
} from "../schemas/apiKey";
import { statusMessage } from "../schemas/common";

const TAG = "APIKeys";
const ROLES = ["admin", "consumer"] as const;
const OWNER_RULE = "Only the key's creator or an admin may call this (403 otherwise).";

const actorOf = (user: AuthenticatedUser): Actor => ({ name: user.name, admin: user.role === "admin" });

type ApiRow = Awaited<ReturnType<typeof getApiOr404>>;
type KeyRow = Awaited<ReturnType<typeof getActiveKeyOr404>>;

/** Regenerate and set-value share this: find the API and key, check the caller may change it, then apply `change` in one transaction. */
async function modifyKey<T>(
  services: Services,
  params: { id: string; apiKeyName: string },
  user: AuthenticatedUser,
  change: (tx: Knex.Transaction, changes: ChangeRecorder, api: ApiRow, existing: KeyRow, quota: number) => Promise<T>,
): Promise<{ api: ApiRow; issued: T; remaining: number }> {
  const quota = services.config.API_KEY_QUOTA;
  const { value } = await writeTransaction(services.database.knex, async (tx, changes) => {
    const api = await getApiOr404(tx, params.id);
    const existing = await getActiveKeyOr404(tx, api, params.apiKeyName);
    assertMayModify(existing, actorOf(user));
    const issued = await change(tx, changes, api, existing, quota);
    return { api, issued, remaining: await remainingQuota(tx, api, user.name, quota) };
  });
  return value;
}

export const apiKeyRoutes: RouteDefinition[] = [
  defineRoute({
    method: "post",
    path: "/rest-apis/{id}/api-keys",
    operationId: "createAPIKey",
    summary: "Generate an API key, or register an external one",
    description: [
      "The body is optional. A generated key is `apip_` and 64 hex characters; it is shown in full only in this answer and stored as a SHA-256 hash.",
      "With `apiKey` an externally generated value is registered instead (`source: external`) and is not echoed.",
      "Quota: each user may hold at most `API_KEY_QUOTA` (default 10) active, unexpired keys per API; beyond it the answer is **400** `API key quota exceeded: at most N active keys per API and user`.",
      "A name already used by an active key of the API is a 409 (it is not replaced); a value already registered anywhere is a 409.",
    ].join("\n\n"),
    tag: TAG,
    roles: ROLES,
    params: apiKeyParams,
    body: apiKeyCreateSchema,
    bodyRequired: false,
    responses: {
      201: { description: "Created", schema: apiKeyIssueResponseSchema },
      400: { description: "Validation failure, or the user's key quota for this API is used up" },
      404: { description: "No such API" },
      409: { description: "An active key with this name exists, or the value is already registered" },
    },
    async handler({ params, body, user, services }) {
      const quota = services.config.API_KEY_QUOTA;
      const { value } = await writeTransaction(services.database.knex, async (tx, changes) => {
        const api = await getApiOr404(tx, params.id);
        const issued = await createKey(tx, changes, api, body, user.name, quota);
        return { api, issued, remaining: await remainingQuota(tx, api, user.name, quota) };
      });
      const { api, issued, remaining } = value;
      return {
        status: 201,
        body: {
          status: "success",
          message: "API key generated successfully",
          remainingApiKeyQuota: remaining,
          apiKey: toResponse(issued.row, api, issued.rawKey ? { rawKey: issued.rawKey } : "omit"),
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/rest-apis/{id}/api-keys",
    operationId: "listAPIKeys",
    summary: "List an API's keys, masked, newest first",
    description:
      "Revoked keys are left out; a key past its expiry is listed with `status: expired`. Values are masked as `***` and their last 5 characters. An admin sees every key of the API, a consumer only the keys they created.",
    tag: TAG,
    roles: ROLES,
    params: apiKeyParams,
    responses: { 200: { description: "The keys", schema: apiKeyListSchema }, 404: { description: "No such API" } },
    async handler({ params, user, services }) {
      const db = services.database.knex;
      const api = await getApiOr404(db, params.id);
      const rows = await listKeys(db, api, actorOf(user));
      return { status: 200, body: { apiKeys: rows.map((row) => toResponse(row, api, "masked")), totalCount: rows.length, status: "success" } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/rest-apis/{id}/api-keys/{apiKeyName}/regenerate",
    operationId: "regenerateAPIKey",
    summary: "Replace a key's value with a newly generated one",
    description: [
      "The body is optional. Without `gracePeriod` the old value stops working at once; with it the old value keeps working until now + gracePeriod (at most 30 days, and never beyond the old value's own expiry), reported as `previousKeyValidUntil`.",
      "`expiresAt`/`expiresIn` set a new expiry; without them the current one is kept (400 if it has already passed).",
      OWNER_RULE,
    ].join("\n\n"),
    tag: TAG,
    roles: ROLES,
    params: apiKeyNameParams,
    body: apiKeyRegenerateSchema,
    bodyRequired: false,
    responses: {
      200: { description: "Regenerated; the new value is shown once", schema: apiKeyIssueResponseSchema },
      404: { description: "No such API or key" },
    },
    async handler({ params, body, user, services }) {
      const { api, issued, remaining } = await modifyKey(services, params, user, (tx, changes, api, existing, quota) =>
        regenerateKey(tx, changes, api, existing, body, quota),
      );
      return {
        status: 200,
        body: {
          status: "success",
          message: "API key regenerated successfully",
          remainingApiKeyQuota: remaining,
          apiKey: toResponse(issued.row, api, { rawKey: issued.rawKey! }),
          ...(issued.previousValidUntil ? { previousKeyValidUntil: issued.previousValidUntil.toISOString() } : {}),
        },
      };
    },
  }),
  defineRoute({
    method: "put",
    path: "/rest-apis/{id}/api-keys/{apiKeyName}",
    operationId: "updateAPIKey",
    summary: "Set a key to a custom value",
    description: [
      "`apiKey` is required (16-512 printable ASCII characters without whitespace) and is not echoed; the key's source becomes `external` and its previous value stops working at once.",
      "`expiresAt`/`expiresIn` set a new expiry; without them the current one is kept (400 if it has already passed). A value already registered is a 409.",
      OWNER_RULE,
    ].join("\n\n"),
    tag: TAG,
    roles: ROLES,
    params: apiKeyNameParams,
    body: apiKeyUpdateSchema,
    responses: {
      200: { description: "Updated", schema: apiKeyIssueResponseSchema },
      404: { description: "No such API or key" },
      409: { description: "The value is already registered" },
    },
    async handler({ params, body, user, services }) {
      const { api, issued, remaining } = await modifyKey(services, params, user, (tx, changes, api, existing, quota) =>
        updateKeyValue(tx, changes, api, existing, body, quota),
      );
      return {
        status: 200,
        body: {
          status: "success",
          message: "API key updated successfully",
          remainingApiKeyQuota: remaining,
          apiKey: toResponse(issued.row, api, "omit"),
        },
      };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/rest-apis/{id}/api-keys/{apiKeyName}",
    operationId: "revokeAPIKey",
    summary: "Revoke a key",
    description: `A revoked key stops working at once, including a previous value still in its grace period. Revoking a key name that has no active key is a 200 as well (idempotent). ${OWNER_RULE}`,
    tag: TAG,
    roles: ROLES,
    params: apiKeyNameParams,
    responses: { 200: { description: "Revoked (or nothing to revoke)", schema: statusMessage }, 404: { description: "No such API" } },
    async handler({ params, user, services }) {
      await writeTransaction(services.database.knex, async (tx, changes) => {
        const api = await getApiOr404(tx, params.id);
        const existing = await findActiveKey(tx, api, params.apiKeyName);
        if (!existing) return;
        assertMayModify(existing, actorOf(user));
        await revokeKey(tx, changes, api, existing);
      });
      return { status: 200, body: { status: "success", message: "API key revoked successfully" } };
    },
  }),
];

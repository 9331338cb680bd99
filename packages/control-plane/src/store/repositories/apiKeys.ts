import { generateApiKey, hashApiKey, maskSecret, randomAlphanumeric } from "@apigw/shared";
import { ApiError } from "../../errors";
import { addRelative } from "../../rest/schemas/common";
import type { ApiKeyCreateRequest, ApiKeyRegenerateRequest, ApiKeyUpdateRequest } from "../../rest/schemas/apiKey";
import type { ChangeRecorder } from "../changes";
import { iso, isoOrNull, uniqueViolation, type Db } from "./util";
import type { RestApiRow } from "./restApis";

export interface ApiKeyRow {
  id: string;
  api_id: string;
  name: string;
  display_name: string | null;
  key_hash: string;
  key_suffix: string;
  status: "active" | "revoked";
  source: "local" | "external";
  created_by: string;
  created_at: Date;
  updated_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  previous_key_hash: string | null;
  previous_valid_until: Date | null;
}

/** Who is asking, and whether they may act on keys other users created. */
export interface Actor {
  name: string;
  admin: boolean;
}

/** The quota of active, unexpired keys per API and creating user. */
export const quotaMessage = (quota: number) => `API key quota exceeded: at most ${quota} active keys per API and user`;

function isExpired(row: Pick<ApiKeyRow, "expires_at">, now = new Date()): boolean {
  return row.expires_at !== null && new Date(row.expires_at).getTime() <= now.getTime();
}

/**
 * The key as the API shows it. `rawKey` is the full value, given only where the contract shows it
 * (a generated key in the create/regenerate answer); `masked` shows `***` and the last 5
 * characters; otherwise the value is left out.
 */
export function toResponse(row: ApiKeyRow, api: Pick<RestApiRow, "handle">, show: { rawKey: string } | "masked" | "omit") {
  return {
    name: row.name,
    displayName: row.display_name ?? row.name,
    ...(show === "omit" ? {} : { apiKey: show === "masked" ? maskSecret(row.key_suffix) : show.rawKey }),
    apiId: api.handle,
    status: isExpired(row) ? ("expired" as const) : ("active" as const),
    createdAt: iso(row.created_at)!,
    createdBy: row.created_by,
    expiresAt: isoOrNull(row.expires_at),
    source: row.source,
  };
}

/** Keys that are not revoked, newest first; a non-admin sees only the keys they created. */
export async function listKeys(db: Db, api: RestApiRow, actor: Actor): Promise<ApiKeyRow[]> {
  const query = db<ApiKeyRow>("api_keys")
    .where({ api_id: api.id, status: "active" })
    .orderBy([
      { column: "created_at", order: "desc" },
      { column: "name", order: "asc" },
    ]);
  if (!actor.admin) query.where({ created_by: actor.name });
  return query;
}

export async function findActiveKey(db: Db, api: RestApiRow, name: string): Promise<ApiKeyRow | undefined> {
  return db<ApiKeyRow>("api_keys").where({ api_id: api.id, name, status: "active" }).first();
}

export async function getActiveKeyOr404(db: Db, api: RestApiRow, name: string): Promise<ApiKeyRow> {
  const row = await findActiveKey(db, api, name);
  if (!row) throw ApiError.notFound(`API key '${name}' not found for RestAPI '${api.handle}'`);
  return row;
}

/** Only the key's creator or an admin may change or revoke it. */
export function assertMayModify(row: ApiKeyRow, actor: Actor): void {
  if (!actor.admin && row.created_by !== actor.name) {
    throw new ApiError(403, `Only the creator of API key '${row.name}' or an admin may modify it`);
  }
}

/** Active, unexpired keys that `user` created for the API. */
export async function countActiveKeys(db: Db, api: RestApiRow, user: string, now = new Date()): Promise<number> {
  const row = await db("api_keys")
    .where({ api_id: api.id, created_by: user, status: "active" })
    .andWhere((q) => q.whereNull("expires_at").orWhere("expires_at", ">", now))
    .count({ n: "*" })
    .first();
  return Number(row?.n ?? 0);
}

export async function remainingQuota(db: Db, api: RestApiRow, user: string, quota: number): Promise<number> {
  return Math.max(0, quota - (await countActiveKeys(db, api, user)));
}

/**
 * A value may identify one key only: neither a stored key (revoked ones included, so a leaked
 * key cannot come back) nor the still-valid previous value of a regenerated key. The message does
 * not say where the value is used.
 */
async function assertValueFree(tx: Db, hash: string, exceptKeyId?: string): Promise<void> {
  const now = new Date();
  const query = tx("api_keys")
    .where((q) =>
      q.where({ key_hash: hash }).orWhere((p) => p.where({ previous_key_hash: hash }).andWhere("previous_valid_until", ">", now)),
    )
    .first("id");
  if (exceptKeyId) query.whereNot({ id: exceptKeyId });
  if (await query) throw ApiError.conflict("API key already registered", "apiKey");
}

function conflictFromUnique(error: unknown, name: string, apiHandle: string): never {
  const constraint = uniqueViolation(error);
  if (constraint === undefined) throw error;
  if (constraint.includes("key_hash")) throw ApiError.conflict("API key already registered", "apiKey");
  throw ApiError.conflict(`API key '${name}' already exists for RestAPI '${apiHandle}'`, "name");
}

/** The expiry fields of a create/regenerate/update body. */
type ExpiryRequest = { expiresAt?: string; expiresIn?: Parameters<typeof addRelative>[1] };

function expiryFrom(body: ExpiryRequest, now: Date): Date | null | undefined {
  if (body.expiresAt !== undefined) return new Date(body.expiresAt);
  if (body.expiresIn !== undefined) return addRelative(now, body.expiresIn);
  return undefined;
}

/** The expiry after regenerate/update: the new one if given, else the current one, which must not have passed. */
function nextExpiry(row: ApiKeyRow, body: ExpiryRequest, now: Date): Date | null {
  const given = expiryFrom(body, now);
  if (given !== undefined) return given;
  if (isExpired(row, now)) {
    throw ApiError.badRequest(`API key '${row.name}' has expired; give a new expiresAt or expiresIn`, "expiresAt");
  }
  return row.expires_at;
}

/** Turning an expired key back into a live one counts against its creator's quota. */
async function assertQuotaOnRevival(tx: Db, api: RestApiRow, row: ApiKeyRow, expiry: Date | null, now: Date, quota: number): Promise<void> {
  const revived = isExpired(row, now) && (expiry === null || expiry.getTime() > now.getTime());
  if (revived && (await countActiveKeys(tx, api, row.created_by, now)) >= quota) throw ApiError.badRequest(quotaMessage(quota));
}

function change(changes: ChangeRecorder, api: RestApiRow, name: string, op: "create" | "update" | "delete"): void {
  changes.record({ entity: "api_key", id: `${api.handle}/${name}`, op, apiIds: [api.handle] });
}

/**
 * `<handle>-key-<8 random [a-z0-9]>`, with the handle reduced to what a key name may contain
 * (lower case, runs of other characters become `-`) and cut so that the name stays within 63
 * characters: a generated name always satisfies the rule that a chosen one must.
 */
export function generatedKeyName(apiHandle: string): string {
  const base = apiHandle
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, 50)
    .replace(/^-+|-+$/g, "");
  return `${base || "api"}-key-${randomAlphanumeric(8)}`;
}

export interface IssuedKey {
  row: ApiKeyRow;
  /** The full value, when we generated it (never for an external key). */
  rawKey?: string;
}

export async function createKey(
  tx: Db,
  changes: ChangeRecorder,
  api: RestApiRow,
  body: ApiKeyCreateRequest,
  user: string,
  quota: number,
): Promise<IssuedKey> {
  const now = new Date();
  const name = body.name ?? generatedKeyName(api.handle);
  if (await findActiveKey(tx, api, name)) {
    throw ApiError.conflict(`API key '${name}' already exists for RestAPI '${api.handle}'`, "name");
  }
  if ((await countActiveKeys(tx, api, user, now)) >= quota) throw ApiError.badRequest(quotaMessage(quota));
  const external = body.apiKey !== undefined;
  const rawKey = body.apiKey ?? generateApiKey();
  const hash = hashApiKey(rawKey);
  await assertValueFree(tx, hash);
  let row: ApiKeyRow;
  try {
    [row] = (await tx("api_keys")
      .insert({
        api_id: api.id,
        name,
        display_name: body.displayName ?? name,
        key_hash: hash,
        key_suffix: rawKey.slice(-5),
        status: "active",
        source: external ? "external" : "local",
        created_by: user,
        created_at: now,
        updated_at: now,
        expires_at: expiryFrom(body, now) ?? null,
      })
      .returning("*")) as ApiKeyRow[];
  } catch (error) {
    conflictFromUnique(error, name, api.handle);
  }
  change(changes, api, name, "create");
  return external ? { row: row! } : { row: row!, rawKey };
}

/** Writes a new value into an existing key (a unique violation becomes a 409) and records the change. */
async function updateKeyRow(
  tx: Db,
  changes: ChangeRecorder,
  api: RestApiRow,
  existing: ApiKeyRow,
  values: Partial<ApiKeyRow>,
): Promise<ApiKeyRow> {
  let row: ApiKeyRow;
  try {
    [row] = (await tx("api_keys").where({ id: existing.id }).update(values).returning("*")) as ApiKeyRow[];
  } catch (error) {
    conflictFromUnique(error, existing.name, api.handle);
  }
  change(changes, api, existing.name, "update");
  return row!;
}

export async function regenerateKey(
  tx: Db,
  changes: ChangeRecorder,
  api: RestApiRow,
  existing: ApiKeyRow,
  body: ApiKeyRegenerateRequest,
  quota: number,
): Promise<IssuedKey & { previousValidUntil?: Date }> {
  const now = new Date();
  const expiresAt = nextExpiry(existing, body, now);
  await assertQuotaOnRevival(tx, api, existing, expiresAt, now, quota);
  // The old value keeps working for the grace period, but never beyond its own expiry.
  let previousValidUntil: Date | undefined;
  if (body.gracePeriod) {
    const graceEnd = addRelative(now, body.gracePeriod);
    const until = existing.expires_at && new Date(existing.expires_at) < graceEnd ? new Date(existing.expires_at) : graceEnd;
    if (until.getTime() > now.getTime()) previousValidUntil = until;
  }
  const rawKey = generateApiKey();
  const hash = hashApiKey(rawKey);
  await assertValueFree(tx, hash);
  const row = await updateKeyRow(tx, changes, api, existing, {
    key_hash: hash,
    key_suffix: rawKey.slice(-5),
    source: "local",
    updated_at: now,
    expires_at: expiresAt,
    previous_key_hash: previousValidUntil ? existing.key_hash : null,
    previous_valid_until: previousValidUntil ?? null,
  });
  return { row, rawKey, previousValidUntil };
}

export async function updateKeyValue(
  tx: Db,
  changes: ChangeRecorder,
  api: RestApiRow,
  existing: ApiKeyRow,
  body: ApiKeyUpdateRequest,
  quota: number,
): Promise<IssuedKey> {
  const now = new Date();
  const expiresAt = nextExpiry(existing, body, now);
  await assertQuotaOnRevival(tx, api, existing, expiresAt, now, quota);
  const hash = hashApiKey(body.apiKey);
  // Setting a key to the value it already has is allowed.
  await assertValueFree(tx, hash, existing.id);
  const row = await updateKeyRow(tx, changes, api, existing, {
    key_hash: hash,
    key_suffix: body.apiKey.slice(-5),
    source: "external",
    display_name: body.displayName ?? existing.display_name,
    updated_at: now,
    expires_at: expiresAt,
    // A replaced value stops at once.
    previous_key_hash: null,
    previous_valid_until: null,
  });
  return { row };
}

export async function revokeKey(tx: Db, changes: ChangeRecorder, api: RestApiRow, existing: ApiKeyRow): Promise<void> {
  const now = new Date();
  await tx("api_keys").where({ id: existing.id }).update({
    status: "revoked",
    revoked_at: now,
    updated_at: now,
    previous_key_hash: null,
    previous_valid_until: null,
  });
  change(changes, api, existing.name, "delete");
}

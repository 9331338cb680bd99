import { isUuid } from "../../rest/schemas/common";
import { maskSecret, randomAlphanumeric, randomHex, sha256Hex, type SecretBox } from "@apigw/shared";
import { ApiError } from "../../errors";
import {
  MAX_KEY_PAIRS,
  type ApplicationCreate,
  type ApplicationStatus,
  type ApplicationUpdate,
  type KeyPairCreate,
} from "../../rest/schemas/application";
import type { ChangeRecorder } from "../changes";
import { iso, json, uniqueViolation, type Db } from "./util";

export interface ApplicationRow {
  id: string;
  name: string;
  description: string | null;
  tags: unknown;
  ext_info: string | null;
  status: ApplicationStatus;
  app_code_hash: string;
  app_code_suffix: string;
  created_by: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface KeyPairRow {
  app_key: string;
  app_id: string;
  /** AES-256-GCM with the master key, the AppKey as associated data; never the raw secret. */
  secret_sealed: string;
  is_default: boolean;
  created_at: Date;
  updated_at: Date;
}

/** Raw secrets, present only in the answers that create or reset them. */
export interface Revealed {
  appCode?: string;
  secrets?: Record<string, string>;
}

export const generateAppKey = () => randomAlphanumeric(24);
export const generateAppSecret = () => randomHex(16);
export const generateAppCode = () => randomHex(16);

export function keyPairToResponse(pair: KeyPairRow, appSecret?: string) {
  return {
    appKey: pair.app_key,
    ...(appSecret !== undefined ? { appSecret } : {}),
    isDefault: pair.is_default,
    createdAt: iso(pair.created_at)!,
  };
}

export function applicationToResponse(row: ApplicationRow, pairs: KeyPairRow[], revealed: Revealed = {}) {
  return {
    id: row.id,
    name: row.name,
    description: row.description ?? null,
    tags: json<Record<string, string>>(row.tags) ?? {},
    extInfo: row.ext_info ?? null,
    status: row.status,
    appCode: revealed.appCode ?? maskSecret(row.app_code_suffix),
    keyPairs: pairs.map((p) => keyPairToResponse(p, revealed.secrets?.[p.app_key])),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export async function findApplication(db: Db, id: string): Promise<ApplicationRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db<ApplicationRow>("applications").where({ id: id.toLowerCase() }).first();
}

export async function getApplicationOr404(db: Db, id: string): Promise<ApplicationRow> {
  const row = await findApplication(db, id);
  if (!row) throw ApiError.notFound(`Application '${id.slice(0, 64)}' not found`);
  return row;
}

/** Key pairs of some applications: the default first, then oldest first. */
export async function keyPairsOf(db: Db, appIds: string[]): Promise<KeyPairRow[]> {
  if (appIds.length === 0) return [];
  return db<KeyPairRow>("app_key_pairs")
    .whereIn("app_id", appIds)
    .orderBy([
      { column: "is_default", order: "desc" },
      { column: "created_at", order: "asc" },
      { column: "app_key", order: "asc" },
    ]);
}

export async function listApplications(db: Db, filters: { name?: string; status?: ApplicationStatus }): Promise<ApplicationRow[]> {
  const query = db<ApplicationRow>("applications").orderBy([
    { column: "created_at", order: "desc" },
    { column: "name", order: "asc" },
  ]);
  if (filters.name !== undefined) query.where("name", filters.name);
  if (filters.status !== undefined) query.where("status", filters.status);
  return query;
}

/** Handles of the APIs an application is authorized for (in any stage): what its changes affect. */
export async function authorizedApiHandles(db: Db, appId: string): Promise<string[]> {
  const rows = (await db("authorizations as z")
    .join("rest_apis as a", "a.id", "z.api_id")
    .where("z.app_id", appId)
    .distinct("a.handle")
    .orderBy("a.handle")) as { handle: string }[];
  return rows.map((r) => r.handle);
}

async function recordChange(tx: Db, changes: ChangeRecorder, appId: string, op: "create" | "update" | "delete"): Promise<void> {
  changes.record({ entity: "application", id: appId, op, apiIds: await authorizedApiHandles(tx, appId) });
}

/** Maps a unique violation on applications or app_key_pairs to a 409 naming the field. */
function conflictFromUnique(error: unknown, values: { name?: string; appKey?: string }): never {
  const constraint = uniqueViolation(error);
  if (constraint === undefined) throw error;
  if (constraint.includes("app_code")) throw ApiError.conflict("The AppCode is already used by another application", "appCode");
  if (constraint.includes("app_key_pairs")) throw ApiError.conflict(`AppKey '${values.appKey ?? ""}' is already in use`, "appKey");
  throw ApiError.conflict(`Application with name '${values.name ?? ""}' already exists`, "name");
}

async function insertKeyPair(tx: Db, secretBox: SecretBox, appId: string, appKey: string, secret: string, isDefault: boolean, now: Date): Promise<KeyPairRow> {
  try {
    const [row] = (await tx("app_key_pairs")
      .insert({
        app_key: appKey,
        app_id: appId,
        secret_sealed: secretBox.encrypt(secret, appKey),
        is_default: isDefault,
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as KeyPairRow[];
    return row!;
  } catch (error) {
    conflictFromUnique(error, { appKey });
  }
}

export interface CreatedApplication {
  row: ApplicationRow;
  pairs: KeyPairRow[];
  revealed: Revealed;
}

export async function createApplication(tx: Db, changes: ChangeRecorder, secretBox: SecretBox, request: ApplicationCreate, user: string): Promise<CreatedApplication> {
  const code = request.appCode ?? generateAppCode();
  const key = request.appKey ?? generateAppKey();
  const secret = request.appSecret ?? generateAppSecret();
  const now = new Date();
  let row: ApplicationRow;
  try {
    [row] = (await tx("applications")
      .insert({
        name: request.name,
        description: request.description ?? null,
        tags: JSON.stringify(request.tags ?? {}),
        ext_info: request.extInfo ?? null,
        status: "ENABLED",
        app_code_hash: sha256Hex(code),
        app_code_suffix: code.slice(-5),
        created_by: user,
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as ApplicationRow[];
  } catch (error) {
    conflictFromUnique(error, { name: request.name });
  }
  const pair = await insertKeyPair(tx, secretBox, row!.id, key, secret, true, now);
  changes.record({ entity: "application", id: row!.id, op: "create", apiIds: [] });
  return { row: row!, pairs: [pair], revealed: { appCode: code, secrets: { [key]: secret } } };
}

export async function updateApplication(tx: Db, changes: ChangeRecorder, existing: ApplicationRow, request: ApplicationUpdate): Promise<ApplicationRow> {
  const update: Record<string, unknown> = {};
  if (request.name !== undefined) update.name = request.name;
  if (request.description !== undefined) update.description = request.description;
  if (request.tags !== undefined) update.tags = JSON.stringify(request.tags);
  if (request.extInfo !== undefined) update.ext_info = request.extInfo;
  if (Object.keys(update).length === 0) return existing;
  update.updated_at = new Date();
  let row: ApplicationRow;
  try {
    [row] = (await tx("applications").where({ id: existing.id }).update(update).returning("*")) as ApplicationRow[];
  } catch (error) {
    conflictFromUnique(error, { name: request.name });
  }
  await recordChange(tx, changes, existing.id, "update");
  return row!;
}

export async function setApplicationStatus(tx: Db, changes: ChangeRecorder, existing: ApplicationRow, status: ApplicationStatus): Promise<ApplicationRow> {
  // Idempotent: setting the current status again changes (and announces) nothing.
  if (existing.status === status) return existing;
  const [row] = (await tx("applications").where({ id: existing.id }).update({ status, updated_at: new Date() }).returning("*")) as ApplicationRow[];
  await recordChange(tx, changes, existing.id, "update");
  return row!;
}

export async function deleteApplication(tx: Db, changes: ChangeRecorder, existing: ApplicationRow): Promise<void> {
  // Read the affected APIs before the key pairs and authorizations go (ON DELETE CASCADE).
  const apiIds = await authorizedApiHandles(tx, existing.id);
  await tx("applications").where({ id: existing.id }).delete();
  changes.record({ entity: "application", id: existing.id, op: "delete", apiIds });
}

export async function addKeyPair(
  tx: Db,
  changes: ChangeRecorder,
  secretBox: SecretBox,
  app: ApplicationRow,
  request: KeyPairCreate,
): Promise<{ pair: KeyPairRow; secret: string }> {
  // Writers hold the store's write lock, so this count cannot race with another insert.
  const counted = await tx("app_key_pairs").where({ app_id: app.id }).count({ n: "*" }).first();
  if (Number(counted?.n ?? 0) >= MAX_KEY_PAIRS) {
    throw ApiError.badRequest(`An application has at most ${MAX_KEY_PAIRS} key pairs; delete one before adding another`, "appKey");
  }
  const key = request.appKey ?? generateAppKey();
  const secret = request.appSecret ?? generateAppSecret();
  const now = new Date();
  const pair = await insertKeyPair(tx, secretBox, app.id, key, secret, false, now);
  await tx("applications").where({ id: app.id }).update({ updated_at: now });
  await recordChange(tx, changes, app.id, "update");
  return { pair, secret };
}

export async function getKeyPairOr404(db: Db, app: ApplicationRow, appKey: string): Promise<KeyPairRow> {
  const pair = await db<KeyPairRow>("app_key_pairs").where({ app_id: app.id, app_key: appKey }).first();
  if (!pair) throw ApiError.notFound(`Key pair '${appKey.slice(0, 64)}' not found in application '${app.id}'`);
  return pair;
}

export async function deleteKeyPair(tx: Db, changes: ChangeRecorder, app: ApplicationRow, appKey: string): Promise<void> {
  const pair = await getKeyPairOr404(tx, app, appKey);
  if (pair.is_default) throw ApiError.conflict("the default key pair cannot be deleted");
  await tx("app_key_pairs").where({ app_key: pair.app_key }).delete();
  await tx("applications").where({ id: app.id }).update({ updated_at: new Date() });
  await recordChange(tx, changes, app.id, "update");
}

export async function resetSecret(
  tx: Db,
  changes: ChangeRecorder,
  secretBox: SecretBox,
  app: ApplicationRow,
  appKey: string,
  custom?: string,
): Promise<{ pair: KeyPairRow; secret: string }> {
  const existing = await getKeyPairOr404(tx, app, appKey);
  const secret = custom ?? generateAppSecret();
  const now = new Date();
  const [pair] = (await tx("app_key_pairs")
    .where({ app_key: existing.app_key })
    .update({ secret_sealed: secretBox.encrypt(secret, existing.app_key), updated_at: now })
    .returning("*")) as KeyPairRow[];
  await tx("applications").where({ id: app.id }).update({ updated_at: now });
  await recordChange(tx, changes, app.id, "update");
  return { pair: pair!, secret };
}

export async function resetAppCode(tx: Db, changes: ChangeRecorder, app: ApplicationRow, custom?: string): Promise<string> {
  const code = custom ?? generateAppCode();
  try {
    await tx("applications")
      .where({ id: app.id })
      .update({ app_code_hash: sha256Hex(code), app_code_suffix: code.slice(-5), updated_at: new Date() });
  } catch (error) {
    conflictFromUnique(error, {});
  }
  await recordChange(tx, changes, app.id, "update");
  return code;
}

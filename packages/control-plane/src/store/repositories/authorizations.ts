import { isUuid } from "../../rest/schemas/common";
import type { Stage } from "@apigw/shared";
import { ApiError } from "../../errors";
import { type AuthorizationCreate, type AuthorizationListQuery, type AuthorizationUpdate } from "../../rest/schemas/application";
import type { ChangeRecorder } from "../changes";
import { getApplicationOr404 } from "./applications";
import { findApi } from "./restApis";
import { iso, isoOrNull, uniqueViolation, type Db } from "./util";

export interface AuthorizationRow {
  id: string;
  app_id: string;
  api_id: string;
  stage: Stage;
  expires_at: Date | null;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

/** An authorization with its application's name and its API's handle, as every read returns it. */
export interface AuthorizationView extends AuthorizationRow {
  application_name: string;
  api_handle: string;
}

export function authorizationToResponse(row: AuthorizationView, now = new Date()) {
  return {
    id: row.id,
    applicationId: row.app_id,
    applicationName: row.application_name,
    apiId: row.api_handle,
    stage: row.stage,
    expiresAt: isoOrNull(row.expires_at),
    expired: row.expires_at !== null && new Date(row.expires_at).getTime() <= now.getTime(),
    description: row.description ?? null,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

function viewQuery(db: Db) {
  return db("authorizations as z")
    .join("applications as p", "p.id", "z.app_id")
    .join("rest_apis as a", "a.id", "z.api_id")
    .select("z.*", "p.name as application_name", "a.handle as api_handle");
}

export async function findAuthorization(db: Db, id: string): Promise<AuthorizationView | undefined> {
  if (!isUuid(id)) return undefined;
  return (await viewQuery(db).where("z.id", id.toLowerCase()).first()) as AuthorizationView | undefined;
}

export async function getAuthorizationOr404(db: Db, id: string): Promise<AuthorizationView> {
  const row = await findAuthorization(db, id);
  if (!row) throw ApiError.notFound(`Authorization '${id.slice(0, 64)}' not found`);
  return row;
}

export async function listAuthorizations(db: Db, filters: AuthorizationListQuery): Promise<AuthorizationView[]> {
  const query = viewQuery(db).orderBy([
    { column: "z.created_at", order: "desc" },
    { column: "z.id", order: "asc" },
  ]);
  if (filters.apiId !== undefined) query.where("a.handle", filters.apiId);
  if (filters.applicationId !== undefined) query.where("z.app_id", filters.applicationId.toLowerCase());
  if (filters.stage !== undefined) query.where("z.stage", filters.stage);
  return (await query) as AuthorizationView[];
}

export async function createAuthorization(tx: Db, changes: ChangeRecorder, request: AuthorizationCreate): Promise<AuthorizationView> {
  const app = await getApplicationOr404(tx, request.applicationId);
  const api = await findApi(tx, request.apiId);
  if (!api) throw ApiError.notFound(`RestAPI with handle '${request.apiId}' not found`);
  // Writers hold the store's write lock, so this check cannot race; the unique constraint backs it.
  const existing = (await tx("authorizations").where({ app_id: app.id, api_id: api.id, stage: request.stage }).first("id")) as { id: string } | undefined;
  const duplicate = (id?: string) =>
    ApiError.conflict(
      `Application '${app.name}' is already authorized for RestAPI '${api.handle}' in stage ${request.stage}` +
        (id ? `; change it with PUT /authorizations/${id}` : "; change the existing authorization with PUT"),
    );
  if (existing) throw duplicate(existing.id);
  const now = new Date();
  let row: AuthorizationRow;
  try {
    [row] = (await tx("authorizations")
      .insert({
        app_id: app.id,
        api_id: api.id,
        stage: request.stage,
        expires_at: request.expiresAt ? new Date(request.expiresAt) : null,
        description: request.description ?? null,
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as AuthorizationRow[];
  } catch (error) {
    if (uniqueViolation(error) !== undefined) throw duplicate();
    throw error;
  }
  changes.record({ entity: "authorization", id: row!.id, op: "create", apiIds: [api.handle] });
  return { ...row!, application_name: app.name, api_handle: api.handle };
}

export async function updateAuthorization(tx: Db, changes: ChangeRecorder, existing: AuthorizationView, request: AuthorizationUpdate): Promise<AuthorizationView> {
  const update: Record<string, unknown> = {};
  if (request.expiresAt !== undefined) update.expires_at = request.expiresAt === null ? null : new Date(request.expiresAt);
  if (request.description !== undefined) update.description = request.description;
  if (Object.keys(update).length === 0) return existing;
  update.updated_at = new Date();
  const [row] = (await tx("authorizations").where({ id: existing.id }).update(update).returning("*")) as AuthorizationRow[];
  changes.record({ entity: "authorization", id: existing.id, op: "update", apiIds: [existing.api_handle] });
  return { ...row!, application_name: existing.application_name, api_handle: existing.api_handle };
}

export async function deleteAuthorization(tx: Db, changes: ChangeRecorder, existing: AuthorizationView): Promise<void> {
  await tx("authorizations").where({ id: existing.id }).delete();
  changes.record({ entity: "authorization", id: existing.id, op: "delete", apiIds: [existing.api_handle] });
}

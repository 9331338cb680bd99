import { isUuid } from "../../rest/schemas/common";
import { findPolicyType, type DeploymentState, type Stage } from "@apigw/shared";
import { ApiError } from "../../errors";
import { type BindingRequest, type PluginCreate, type PluginUpdate } from "../../rest/schemas/plugin";
import type { ChangeRecorder } from "../changes";
import { iso, json, uniqueViolation, type Db } from "./util";
import type { RestApiRow } from "./restApis";

export interface PluginRow {
  id: string;
  name: string;
  type: string;
  description: string | null;
  params: unknown;
  created_at: Date;
  updated_at: Date;
}

export interface PluginBindingRow {
  plugin_id: string;
  api_id: string;
  stage: Stage;
  plugin_type: string;
  created_at: Date;
}

export function pluginToResponse(row: PluginRow) {
  return {
    id: row.id,
    name: row.name,
    type: row.type,
    description: row.description ?? null,
    params: json<Record<string, unknown>>(row.params),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export function bindingId(pluginId: string, handle: string, stage: Stage): string {
  return `${pluginId}/${handle}/${stage}`;
}

export async function findPlugin(db: Db, id: string): Promise<PluginRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db<PluginRow>("plugins").where({ id: id.toLowerCase() }).first();
}

export async function getPluginOr404(db: Db, id: string): Promise<PluginRow> {
  const row = await findPlugin(db, id);
  if (!row) throw ApiError.notFound(`Plug-in '${id.slice(0, 100)}' not found`);
  return row;
}

export interface PluginFilters {
  /** Canonical type name (already resolved from an alias). */
  type?: string;
  name?: string;
}

export async function listPlugins(db: Db, filters: PluginFilters): Promise<PluginRow[]> {
  const query = db<PluginRow>("plugins").orderBy([
    { column: "name", order: "asc" },
    { column: "id", order: "asc" },
  ]);
  if (filters.type !== undefined) query.where("type", filters.type);
  if (filters.name !== undefined) query.where("name", filters.name);
  return query;
}

/** Handles of every API the plug-in is bound to, in any stage: the APIs a plug-in change affects. */
export async function boundApiHandles(db: Db, pluginId: string): Promise<string[]> {
  const rows = (await db("plugin_bindings as b")
    .join("rest_apis as a", "a.id", "b.api_id")
    .where("b.plugin_id", pluginId)
    .distinct("a.handle")
    .orderBy("a.handle")) as { handle: string }[];
  return rows.map((r) => r.handle);
}

function nameTaken(name: string): ApiError {
  return ApiError.conflict(`Plug-in with name '${name}' already exists`, "name");
}

async function assertNameFree(tx: Db, name: string, exceptId?: string): Promise<void> {
  const query = tx("plugins").where({ name }).first("id");
  if (exceptId) query.whereNot({ id: exceptId });
  if (await query) throw nameTaken(name);
}

export async function createPlugin(tx: Db, changes: ChangeRecorder, request: PluginCreate, limit: number): Promise<PluginRow> {
  const type = findPolicyType(request.type)!.type; // validated by the schema
  await assertNameFree(tx, request.name);
  // Writers hold the store's write lock, so the count cannot race with another create.
  const total = Number((await tx("plugins").count({ n: "*" }).first())?.n ?? 0);
  if (total >= limit) throw ApiError.conflict(`plug-in limit of ${limit} reached`);
  const now = new Date();
  let row: PluginRow;
  try {
    [row] = (await tx("plugins")
      .insert({
        name: request.name,
        type,
        description: request.description ?? null,
        params: JSON.stringify(request.params ?? {}),
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as PluginRow[];
  } catch (error) {
    if (uniqueViolation(error) === undefined) throw error;
    throw nameTaken(request.name);
  }
  changes.record({ entity: "plugin", id: row!.id, op: "create", apiIds: [] });
  return row!;
}

/** `request` has already been checked against the plug-in's type (see the route's precheck). */
export async function updatePlugin(tx: Db, changes: ChangeRecorder, existing: PluginRow, request: PluginUpdate): Promise<PluginRow> {
  const update: Record<string, unknown> = { updated_at: new Date() };
  if (request.name !== undefined && request.name !== existing.name) {
    await assertNameFree(tx, request.name, existing.id);
    update.name = request.name;
  }
  if (request.description !== undefined) update.description = request.description;
  if (request.params !== undefined) update.params = JSON.stringify(request.params);
  let row: PluginRow;
  try {
    [row] = (await tx("plugins").where({ id: existing.id }).update(update).returning("*")) as PluginRow[];
  } catch (error) {
    if (uniqueViolation(error) === undefined) throw error;
    throw nameTaken(request.name ?? existing.name);
  }
  // Bindings take the new configuration at once: every bound API is affected.
  changes.record({ entity: "plugin", id: existing.id, op: "update", apiIds: await boundApiHandles(tx, existing.id) });
  return row!;
}

export async function deletePlugin(tx: Db, changes: ChangeRecorder, existing: PluginRow): Promise<void> {
  const bound = Number((await tx("plugin_bindings").where({ plugin_id: existing.id }).count({ n: "*" }).first())?.n ?? 0);
  if (bound > 0) {
    throw ApiError.conflict(
      `Plug-in '${existing.name}' is bound in ${bound} binding(s) (API and stage); detach it from every API first`,
    );
  }
  await tx("plugins").where({ id: existing.id }).delete();
  changes.record({ entity: "plugin", id: existing.id, op: "delete", apiIds: [] });
}

export interface CreatedBinding {
  pluginId: string;
  apiId: string;
  stage: Stage;
  boundAt: string;
}

/**
 * Binds the plug-in to every listed API in one stage, or to none: an unknown API is a 404, an
 * existing binding of this plug-in or another plug-in of the same type on an API+stage is a 409.
 * Undeployed APIs may be bound; the binding applies when the API is deployed again.
 */
export async function attachPlugin(tx: Db, changes: ChangeRecorder, plugin: PluginRow, request: BindingRequest): Promise<CreatedBinding[]> {
  const apis = (await tx<RestApiRow>("rest_apis").whereIn("handle", request.apiIds).select("id", "handle")) as Pick<RestApiRow, "id" | "handle">[];
  const byHandle = new Map(apis.map((a) => [a.handle, a]));
  const missing = request.apiIds.filter((h) => !byHandle.has(h));
  if (missing.length === 1) throw ApiError.notFound(`RestAPI with handle '${missing[0]}' not found`);
  if (missing.length > 1) throw ApiError.notFound(`RestAPIs with handles ${missing.map((h) => `'${h}'`).join(", ")} not found`);

  const conflicts = (await tx("plugin_bindings as b")
    .join("plugins as p", "p.id", "b.plugin_id")
    .join("rest_apis as a", "a.id", "b.api_id")
    .whereIn("b.api_id", apis.map((a) => a.id))
    .andWhere("b.stage", request.stage)
    .andWhere("b.plugin_type", plugin.type)
    .select("b.plugin_id", "p.name", "a.handle")
    .orderBy("a.handle")) as { plugin_id: string; name: string; handle: string }[];
  if (conflicts.length > 0) throw bindingConflict(plugin, request.stage, conflicts);

  const now = new Date();
  try {
    await tx("plugin_bindings").insert(
      request.apiIds.map((handle) => ({
        plugin_id: plugin.id,
        api_id: byHandle.get(handle)!.id,
        stage: request.stage,
        plugin_type: plugin.type,
        created_at: now,
      })),
    );
  } catch (error) {
    if (uniqueViolation(error) === undefined) throw error;
    throw ApiError.conflict(`a plug-in of type '${plugin.type}' is already bound to one of these APIs in stage ${request.stage}`);
  }
  for (const handle of request.apiIds) {
    changes.record({ entity: "plugin_binding", id: bindingId(plugin.id, handle, request.stage), op: "create", apiIds: [handle] });
  }
  return request.apiIds.map((handle) => ({ pluginId: plugin.id, apiId: handle, stage: request.stage, boundAt: iso(now)! }));
}

function bindingConflict(plugin: PluginRow, stage: Stage, conflicts: { plugin_id: string; name: string; handle: string }[]): ApiError {
  const errors = conflicts.map((c) => ({
    field: "apiIds",
    message:
      c.plugin_id === plugin.id
        ? `plug-in '${plugin.name}' is already bound to RestAPI '${c.handle}' in stage ${stage}`
        : `RestAPI '${c.handle}' already has plug-in '${c.name}' of type '${plugin.type}' bound in stage ${stage}`,
  }));
  const first = conflicts[0]!;
  const message =
    first.plugin_id === plugin.id
      ? `Plug-in '${plugin.name}' is already bound to RestAPI '${first.handle}' in stage ${stage}`
      : `RestAPI '${first.handle}' already has plug-in '${first.name}' of type '${plugin.type}' bound in stage ${stage}; only one plug-in of a type may be bound to an API in a stage`;
  return new ApiError(409, message, errors);
}

export async function detachPlugin(tx: Db, changes: ChangeRecorder, plugin: PluginRow, api: RestApiRow, stage: Stage): Promise<void> {
  const removed = await tx("plugin_bindings").where({ plugin_id: plugin.id, api_id: api.id, stage }).delete();
  if (removed === 0) throw ApiError.notFound(`Plug-in '${plugin.name}' is not bound to RestAPI '${api.handle}' in stage ${stage}`);
  changes.record({ entity: "plugin_binding", id: bindingId(plugin.id, api.handle, stage), op: "delete", apiIds: [api.handle] });
}

export interface PluginApiRow {
  handle: string;
  display_name: string;
  stage: Stage;
  deployment_state: DeploymentState;
  created_at: Date;
}

export async function listPluginApis(db: Db, pluginId: string, stage?: Stage): Promise<PluginApiRow[]> {
  const query = db("plugin_bindings as b")
    .join("rest_apis as a", "a.id", "b.api_id")
    .where("b.plugin_id", pluginId)
    .select("a.handle", "a.display_name", "b.stage", "a.deployment_state", "b.created_at")
    .orderBy([
      { column: "a.handle", order: "asc" },
      { column: "b.stage", order: "asc" },
    ]);
  if (stage !== undefined) query.andWhere("b.stage", stage);
  return (await query) as PluginApiRow[];
}

export function pluginApiToResponse(row: PluginApiRow) {
  return {
    apiId: row.handle,
    displayName: row.display_name,
    stage: row.stage,
    deploymentState: row.deployment_state,
    boundAt: iso(row.created_at)!,
  };
}

export type ApiPluginRow = PluginRow & { stage: Stage; bound_at: Date };

export async function listApiPlugins(db: Db, apiId: string, stage?: Stage): Promise<ApiPluginRow[]> {
  const query = db("plugin_bindings as b")
    .join("plugins as p", "p.id", "b.plugin_id")
    .where("b.api_id", apiId)
    .select("p.*", "b.stage", "b.created_at as bound_at")
    .orderBy([
      { column: "b.stage", order: "asc" },
      { column: "p.name", order: "asc" },
    ]);
  if (stage !== undefined) query.andWhere("b.stage", stage);
  return (await query) as ApiPluginRow[];
}

export function apiPluginToResponse(row: ApiPluginRow) {
  return { ...pluginToResponse(row), stage: row.stage, boundAt: iso(row.bound_at)! };
}

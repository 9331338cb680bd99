import {
  DEFAULT_MAIN_VHOST,
  DEFAULT_SANDBOX_VHOST,
  resolveContext,
  type DeploymentState,
  type Stage,
} from "@apigw/shared";
import { ApiError } from "../../errors";
import { isUuid } from "../../rest/schemas/common";
import { pathKey, type RestApiRequest } from "../../rest/schemas/restApi";
import type { ChangeRecorder } from "../changes";
import { iso, json, uniqueViolation, type Db } from "./util";

export interface RestApiRow {
  id: string;
  handle: string;
  display_name: string;
  version: string;
  context: string;
  resolved_context: string;
  deployment_state: DeploymentState;
  document: unknown;
  created_by: string | null;
  created_at: Date;
  updated_at: Date;
  deployed_at: Date | null;
}

/** The stored document: the request with vhost defaults filled in. */
export function normalizeDocument(request: RestApiRequest): RestApiRequest {
  const spec = { ...request.spec };
  spec.vhosts = {
    main: request.spec.vhosts?.main ?? DEFAULT_MAIN_VHOST,
    sandbox: request.spec.vhosts?.sandbox ?? DEFAULT_SANDBOX_VHOST,
  };
  return { ...request, spec };
}

export function toResponse(row: RestApiRow) {
  const document = json<RestApiRequest>(row.document);
  return {
    ...document,
    status: {
      id: row.handle,
      state: row.deployment_state,
      createdAt: iso(row.created_at)!,
      updatedAt: iso(row.updated_at)!,
      ...(row.deployment_state === "deployed" && row.deployed_at ? { deployedAt: iso(row.deployed_at)! } : {}),
    },
  };
}

export async function findApi(db: Db, handle: string): Promise<RestApiRow | undefined> {
  return db<RestApiRow>("rest_apis").where({ handle }).first();
}

export async function getApiOr404(db: Db, handle: string): Promise<RestApiRow> {
  const row = await findApi(db, handle);
  if (!row) throw ApiError.notFound(`RestAPI with handle '${handle}' not found`);
  return row;
}

/** Subscriptions may name an API by handle or by internal id. */
export async function findApiByHandleOrId(db: Db, idOrHandle: string): Promise<RestApiRow | undefined> {
  const byHandle = await findApi(db, idOrHandle);
  if (byHandle) return byHandle;
  if (isUuid(idOrHandle)) {
    return db<RestApiRow>("rest_apis").where({ id: idOrHandle.toLowerCase() }).first();
  }
  return undefined;
}

export interface ListFilters {
  displayName?: string;
  version?: string;
  context?: string;
  status?: DeploymentState;
}

export async function listApis(db: Db, filters: ListFilters): Promise<RestApiRow[]> {
  const query = db<RestApiRow>("rest_apis").orderBy([
    { column: "created_at", order: "desc" },
    { column: "handle", order: "asc" },
  ]);
  if (filters.displayName !== undefined) query.where("display_name", filters.displayName);
  if (filters.version !== undefined) query.where("version", filters.version);
  if (filters.context !== undefined) query.where("resolved_context", filters.context);
  if (filters.status !== undefined) query.where("deployment_state", filters.status);
  return query;
}

interface RouteKey {
  stage: Stage;
  vhost: string;
  method: string;
  path_key: string;
}

/** Method + path per vhost that a deployed API serves: the sandbox only when it has a sandbox upstream. */
export function routeKeys(document: RestApiRequest): RouteKey[] {
  const spec = document.spec;
  const context = resolveContext(spec.context, spec.version);
  const base = context === "/" ? "" : context;
  const stages: [Stage, string][] = [["RELEASE", spec.vhosts?.main ?? DEFAULT_MAIN_VHOST]];
  if (spec.upstream.sandbox) stages.push(["TEST", spec.vhosts?.sandbox ?? DEFAULT_SANDBOX_VHOST]);
  const keys: RouteKey[] = [];
  for (const [stage, vhost] of stages) {
    for (const operation of spec.operations) {
      const path = pathKey(base + (operation.path === "/" && base ? "" : operation.path)) || "/";
      // Host names are case-insensitive (the translator lower-cases them): claim them so.
      keys.push({ stage, vhost: vhost.toLowerCase(), method: operation.method, path_key: path });
    }
  }
  return keys;
}

async function claimRoutes(tx: Db, apiId: string, document: RestApiRequest): Promise<void> {
  await tx("api_routes").where({ api_id: apiId }).delete();
  const keys = routeKeys(document);
  if (keys.length === 0) return;
  // The keys travel as four arrays whatever the API's size (a WSO2 API may have 1,000 operations,
  // twice that with a sandbox). A `(vhost, method, path_key) IN ((…), (…), …)` list grows one
  // expression node per key: from about 270 keys its analysis overflows the embedded Postgres's
  // stack (PGlite runs on Node's), which leaves that database unusable; one bind parameter per
  // column value would also meet the protocol's limit of 65,535 beyond about 6,500 operations.
  const columns = {
    stage: keys.map((k) => k.stage),
    vhost: keys.map((k) => k.vhost),
    method: keys.map((k) => k.method),
    path_key: keys.map((k) => k.path_key),
  };
  // Writers hold the store's write lock, so this check cannot race with another claim.
  const taken = await tx("api_routes as r")
    .join("rest_apis as a", "a.id", "r.api_id")
    .whereRaw("(r.vhost, r.method, r.path_key) IN (SELECT * FROM unnest(?::text[], ?::text[], ?::text[]))", [
      columns.vhost,
      columns.method,
      columns.path_key,
    ])
    .select("r.vhost", "r.method", "r.path_key", "a.handle")
    .limit(5);
  if (taken.length > 0) {
    const first = taken[0]!;
    throw new ApiError(
      409,
      `${first.method} ${first.path_key} on vhost '${first.vhost}' is already served by RestAPI '${first.handle}'`,
      taken.map((t: { vhost: string; method: string; path_key: string; handle: string }) => ({
        field: "spec.operations",
        message: `${t.method} ${t.path_key} on vhost '${t.vhost}' is served by '${t.handle}'`,
      })),
    );
  }
  await tx.raw(
    `INSERT INTO api_routes (api_id, stage, vhost, method, path_key)
     SELECT ?::uuid, k.* FROM unnest(?::text[], ?::text[], ?::text[], ?::text[]) AS k`,
    [apiId, columns.stage, columns.vhost, columns.method, columns.path_key],
  );
}

function conflictFromUnique(error: unknown, document: RestApiRequest): never {
  const constraint = uniqueViolation(error);
  if (constraint === undefined) throw error;
  if (constraint.includes("handle")) {
    throw ApiError.conflict(`RestAPI with handle '${document.metadata.name}' already exists`, "metadata.name");
  }
  throw ApiError.conflict(
    `RestAPI with name '${document.spec.displayName}' and version '${document.spec.version}' already exists`,
    "spec.displayName",
  );
}

export async function createApi(tx: Db, changes: ChangeRecorder, request: RestApiRequest, user: string): Promise<RestApiRow> {
  const document = normalizeDocument(request);
  const state: DeploymentState = document.spec.deploymentState ?? "deployed";
  const now = new Date();
  let row: RestApiRow;
  try {
    [row] = (await tx("rest_apis")
      .insert({
        handle: document.metadata.name,
        display_name: document.spec.displayName,
        version: document.spec.version,
        context: document.spec.context,
        resolved_context: resolveContext(document.spec.context, document.spec.version),
        deployment_state: state,
        document: JSON.stringify(document),
        created_by: user,
        created_at: now,
        updated_at: now,
        deployed_at: state === "deployed" ? now : null,
      })
      .returning("*")) as RestApiRow[];
  } catch (error) {
    conflictFromUnique(error, document);
  }
  if (state === "deployed") await claimRoutes(tx, row!.id, document);
  changes.record({ entity: "rest_api", id: row!.handle, op: "create", apiIds: [row!.handle] });
  return row!;
}

export async function updateApi(tx: Db, changes: ChangeRecorder, existing: RestApiRow, request: RestApiRequest): Promise<RestApiRow> {
  const document = normalizeDocument(request);
  const state: DeploymentState = document.spec.deploymentState ?? "deployed";
  const now = new Date();
  // deployedAt moves when the API is (re)deployed or its deployed configuration changes.
  const deployedAt = state === "deployed" ? now : existing.deployed_at;
  let row: RestApiRow;
  try {
    [row] = (await tx("rest_apis")
      .where({ id: existing.id })
      .update({
        display_name: document.spec.displayName,
        version: document.spec.version,
        context: document.spec.context,
        resolved_context: resolveContext(document.spec.context, document.spec.version),
        deployment_state: state,
        document: JSON.stringify(document),
        updated_at: now,
        deployed_at: deployedAt,
      })
      .returning("*")) as RestApiRow[];
  } catch (error) {
    conflictFromUnique(error, document);
  }
  if (state === "deployed") await claimRoutes(tx, existing.id, document);
  else await tx("api_routes").where({ api_id: existing.id }).delete();
  changes.record({ entity: "rest_api", id: existing.handle, op: "update", apiIds: [existing.handle] });
  return row!;
}

export async function deleteApi(tx: Db, changes: ChangeRecorder, existing: RestApiRow): Promise<void> {
  // Keys, subscriptions, authorizations, routes and plug-in bindings go with it (ON DELETE CASCADE).
  await tx("rest_apis").where({ id: existing.id }).delete();
  changes.record({ entity: "rest_api", id: existing.handle, op: "delete", apiIds: [existing.handle] });
}

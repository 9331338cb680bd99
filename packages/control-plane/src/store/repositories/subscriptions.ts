import { isUuid } from "../../rest/schemas/common";
import { sha256Hex } from "@apigw/shared";
import { ApiError } from "../../errors";
import {
  type SubscriptionCreate,
  type SubscriptionListQuery,
  type SubscriptionStatus,
  type SubscriptionUpdate,
} from "../../rest/schemas/subscription";
import type { RestApiRequest } from "../../rest/schemas/restApi";
import type { ChangeRecorder } from "../changes";
import { findApiByHandleOrId, type RestApiRow } from "./restApis";
import { findApplication } from "./applications";
import { findPlan } from "./subscriptionPlans";
import { iso, json, uniqueViolation, type Db } from "./util";

export interface SubscriptionRow {
  id: string;
  api_id: string;
  application_id: string | null;
  token_hash: string;
  plan_id: string | null;
  billing_customer_id: string | null;
  billing_subscription_id: string | null;
  status: SubscriptionStatus;
  created_at: Date;
  updated_at: Date;
}

/** A subscription with the handle of its API, as every read returns it. */
export interface SubscriptionView extends SubscriptionRow {
  api_handle: string;
}

/** The response; the token appears only when given (the create response). */
export function subscriptionToResponse(row: SubscriptionView, subscriptionToken?: string) {
  return {
    id: row.id,
    apiId: row.api_handle,
    applicationId: row.application_id ?? null,
    ...(subscriptionToken !== undefined ? { subscriptionToken } : {}),
    subscriptionPlanId: row.plan_id ?? null,
    billingCustomerId: row.billing_customer_id ?? null,
    billingSubscriptionId: row.billing_subscription_id ?? null,
    status: row.status,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

function viewQuery(db: Db) {
  return db("subscriptions as s").join("rest_apis as a", "a.id", "s.api_id").select("s.*", "a.handle as api_handle");
}

export async function findSubscription(db: Db, id: string): Promise<SubscriptionView | undefined> {
  if (!isUuid(id)) return undefined;
  return (await viewQuery(db).where("s.id", id.toLowerCase()).first()) as SubscriptionView | undefined;
}

export async function getSubscriptionOr404(db: Db, id: string): Promise<SubscriptionView> {
  const row = await findSubscription(db, id);
  if (!row) throw ApiError.notFound("Subscription not found");
  return row;
}

export async function listSubscriptions(db: Db, filters: SubscriptionListQuery): Promise<SubscriptionView[]> {
  const query = viewQuery(db).orderBy([
    { column: "s.created_at", order: "desc" },
    { column: "s.id", order: "asc" },
  ]);
  if (filters.apiId !== undefined) {
    const api = await findApiByHandleOrId(db, filters.apiId);
    if (!api) return [];
    query.where("s.api_id", api.id);
  }
  if (filters.applicationId !== undefined) query.where("s.application_id", filters.applicationId);
  if (filters.status !== undefined) query.where("s.status", filters.status);
  return (await query) as SubscriptionView[];
}

/**
 * The plan a subscription may use: it exists, is ACTIVE and, when the API restricts its plans
 * (`spec.subscriptionPlans`), is one of them. Every failure is a 400 on `subscriptionPlanId`.
 */
async function checkPlan(db: Db, api: RestApiRow, planId: string): Promise<void> {
  const plan = await findPlan(db, planId);
  if (!plan) throw ApiError.validation([{ field: "subscriptionPlanId", message: `subscription plan '${planId}' does not exist` }]);
  if (plan.status !== "ACTIVE") {
    throw ApiError.validation([{ field: "subscriptionPlanId", message: `subscription plan '${plan.plan_name}' is not ACTIVE` }]);
  }
  const allowed = json<RestApiRequest>(api.document).spec.subscriptionPlans ?? [];
  if (allowed.length > 0 && !allowed.includes(plan.plan_name)) {
    throw ApiError.validation([
      {
        field: "subscriptionPlanId",
        message: `subscription plan '${plan.plan_name}' is not offered by RestAPI '${api.handle}' (its plans: ${allowed.join(", ")})`,
      },
    ]);
  }
}

export async function createSubscription(tx: Db, changes: ChangeRecorder, request: SubscriptionCreate): Promise<SubscriptionView> {
  const api = await findApiByHandleOrId(tx, request.apiId);
  if (!api) throw ApiError.notFound(`RestAPI with handle '${request.apiId}' not found`);
  if (request.subscriptionPlanId) await checkPlan(tx, api, request.subscriptionPlanId);
  const application = request.applicationId ? await findApplication(tx, request.applicationId) : undefined;
  if (request.applicationId && !application) {
    throw ApiError.validation([{ field: "applicationId", message: `application '${request.applicationId}' does not exist (give the id of an application)` }]);
  }
  const tokenHash = sha256Hex(request.subscriptionToken);
  const conflict = () => ApiError.conflict(`A subscription with this token already exists for RestAPI '${api.handle}'`, "subscriptionToken");
  if (await tx("subscriptions").where({ api_id: api.id, token_hash: tokenHash }).first("id")) throw conflict();
  const now = new Date();
  let row: SubscriptionRow;
  try {
    [row] = (await tx("subscriptions")
      .insert({
        api_id: api.id,
        application_id: application?.id ?? null,
        token_hash: tokenHash,
        plan_id: request.subscriptionPlanId ? request.subscriptionPlanId.toLowerCase() : null,
        billing_customer_id: request.billingCustomerId ?? null,
        billing_subscription_id: request.billingSubscriptionId ?? null,
        status: request.status ?? "ACTIVE",
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as SubscriptionRow[];
  } catch (error) {
    if (uniqueViolation(error) !== undefined) throw conflict();
    throw error;
  }
  changes.record({ entity: "subscription", id: row!.id, op: "create", apiIds: [api.handle] });
  return { ...row!, api_handle: api.handle };
}

/**
 * Changes the status and/or the plan. The plan checks apply when the plan changes; sending the
 * current plan again is not a change (so a subscription whose plan was later deactivated can still
 * have its status changed by a client that sends the whole resource back).
 */
export async function updateSubscription(
  tx: Db,
  changes: ChangeRecorder,
  existing: SubscriptionView,
  request: SubscriptionUpdate,
): Promise<SubscriptionView> {
  const update: Partial<SubscriptionRow> = {};
  if (request.status !== undefined && request.status !== existing.status) update.status = request.status;
  if (request.subscriptionPlanId !== undefined) {
    const planId = request.subscriptionPlanId === null ? null : request.subscriptionPlanId.toLowerCase();
    if (planId !== existing.plan_id) {
      if (planId !== null) {
        const api = await tx<RestApiRow>("rest_apis").where({ id: existing.api_id }).first();
        await checkPlan(tx, api!, planId);
      }
      update.plan_id = planId;
    }
  }
  if (Object.keys(update).length === 0) return existing;
  const [row] = (await tx("subscriptions")
    .where({ id: existing.id })
    .update({ ...update, updated_at: new Date() })
    .returning("*")) as SubscriptionRow[];
  changes.record({ entity: "subscription", id: existing.id, op: "update", apiIds: [existing.api_handle] });
  return { ...row!, api_handle: existing.api_handle };
}

export async function deleteSubscription(tx: Db, changes: ChangeRecorder, existing: SubscriptionView): Promise<void> {
  await tx("subscriptions").where({ id: existing.id }).delete();
  changes.record({ entity: "subscription", id: existing.id, op: "delete", apiIds: [existing.api_handle] });
}

import { isUuid } from "../../rest/schemas/common";
import { ApiError } from "../../errors";
import {
  pairingIssues,
  type PlanStatus,
  type SubscriptionPlanCreate,
  type SubscriptionPlanUpdate,
  type ThrottleUnit,
} from "../../rest/schemas/subscription";
import type { ChangeRecorder } from "../changes";
import { iso, isoOrNull, uniqueViolation, type Db } from "./util";

export interface SubscriptionPlanRow {
  id: string;
  plan_name: string;
  billing_plan: string | null;
  stop_on_quota_reach: boolean;
  throttle_limit_count: number | null;
  throttle_limit_unit: ThrottleUnit | null;
  expiry_time: Date | null;
  status: PlanStatus;
  created_at: Date;
  updated_at: Date;
}

export function planToResponse(row: SubscriptionPlanRow) {
  return {
    id: row.id,
    planName: row.plan_name,
    billingPlan: row.billing_plan ?? null,
    stopOnQuotaReach: row.stop_on_quota_reach,
    throttleLimitCount: row.throttle_limit_count ?? null,
    throttleLimitUnit: row.throttle_limit_unit ?? null,
    expiryTime: isoOrNull(row.expiry_time),
    status: row.status,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export async function findPlan(db: Db, id: string): Promise<SubscriptionPlanRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db<SubscriptionPlanRow>("subscription_plans").where({ id: id.toLowerCase() }).first();
}

export async function getPlanOr404(db: Db, id: string): Promise<SubscriptionPlanRow> {
  const row = await findPlan(db, id);
  if (!row) throw ApiError.notFound("Subscription plan not found");
  return row;
}

export async function listPlans(db: Db): Promise<SubscriptionPlanRow[]> {
  return db<SubscriptionPlanRow>("subscription_plans").orderBy([
    { column: "plan_name", order: "asc" },
    { column: "id", order: "asc" },
  ]);
}

/** Handles of the APIs that have subscriptions on the plan: the ones a plan change affects. */
export async function apisUsingPlan(db: Db, planId: string): Promise<string[]> {
  const rows = (await db("subscriptions as s")
    .join("rest_apis as a", "a.id", "s.api_id")
    .where("s.plan_id", planId)
    .distinct("a.handle")
    .orderBy("a.handle")) as { handle: string }[];
  return rows.map((r) => r.handle);
}

function conflictFromUnique(error: unknown): never {
  if (uniqueViolation(error) === undefined) throw error;
  throw ApiError.conflict("Subscription plan already exists", "planName");
}

async function assertNameFree(tx: Db, planName: string, exceptId?: string): Promise<void> {
  const query = tx("subscription_plans").where({ plan_name: planName }).first("id");
  if (exceptId) query.whereNot({ id: exceptId });
  if (await query) throw ApiError.conflict("Subscription plan already exists", "planName");
}

export async function createPlan(tx: Db, changes: ChangeRecorder, request: SubscriptionPlanCreate): Promise<SubscriptionPlanRow> {
  await assertNameFree(tx, request.planName);
  const now = new Date();
  let row: SubscriptionPlanRow;
  try {
    [row] = (await tx("subscription_plans")
      .insert({
        plan_name: request.planName,
        billing_plan: request.billingPlan ?? null,
        stop_on_quota_reach: request.stopOnQuotaReach ?? true,
        throttle_limit_count: request.throttleLimitCount ?? null,
        throttle_limit_unit: request.throttleLimitUnit ?? null,
        expiry_time: request.expiryTime ? new Date(request.expiryTime) : null,
        status: request.status ?? "ACTIVE",
        created_at: now,
        updated_at: now,
      })
      .returning("*")) as SubscriptionPlanRow[];
  } catch (error) {
    conflictFromUnique(error);
  }
  changes.record({ entity: "subscription_plan", id: row!.id, op: "create", apiIds: [] });
  return row!;
}

export async function updatePlan(
  tx: Db,
  changes: ChangeRecorder,
  existing: SubscriptionPlanRow,
  request: SubscriptionPlanUpdate,
): Promise<SubscriptionPlanRow> {
  const update: Partial<SubscriptionPlanRow> = {};
  if (request.planName !== undefined) update.plan_name = request.planName;
  if (request.billingPlan !== undefined) update.billing_plan = request.billingPlan;
  if (request.stopOnQuotaReach !== undefined) update.stop_on_quota_reach = request.stopOnQuotaReach;
  if (request.throttleLimitCount !== undefined) update.throttle_limit_count = request.throttleLimitCount;
  if (request.throttleLimitUnit !== undefined) update.throttle_limit_unit = request.throttleLimitUnit;
  if (request.expiryTime !== undefined) update.expiry_time = request.expiryTime === null ? null : new Date(request.expiryTime);
  if (request.status !== undefined) update.status = request.status;

  // The pairing rule applies to the plan as it will be.
  const count = "throttle_limit_count" in update ? update.throttle_limit_count : existing.throttle_limit_count;
  const unit = "throttle_limit_unit" in update ? update.throttle_limit_unit : existing.throttle_limit_unit;
  const pairing = pairingIssues(count, unit);
  if (pairing.length > 0) throw ApiError.validation(pairing);

  if (update.plan_name !== undefined && update.plan_name !== existing.plan_name) {
    await assertNameFree(tx, update.plan_name, existing.id);
  }
  let row: SubscriptionPlanRow;
  try {
    [row] = (await tx("subscription_plans")
      .where({ id: existing.id })
      .update({ ...update, updated_at: new Date() })
      .returning("*")) as SubscriptionPlanRow[];
  } catch (error) {
    conflictFromUnique(error);
  }
  changes.record({ entity: "subscription_plan", id: existing.id, op: "update", apiIds: await apisUsingPlan(tx, existing.id) });
  return row!;
}

export async function deletePlan(tx: Db, changes: ChangeRecorder, existing: SubscriptionPlanRow): Promise<void> {
  const used = await tx("subscriptions").where({ plan_id: existing.id }).count({ n: "*" }).first();
  const n = Number(used?.n ?? 0);
  if (n > 0) {
    throw ApiError.conflict(`Subscription plan '${existing.plan_name}' is used by ${n} subscription(s); delete them or move them to another plan first`);
  }
  try {
    await tx("subscription_plans").where({ id: existing.id }).delete();
  } catch (error) {
    // subscriptions.plan_id is ON DELETE RESTRICT: a foreign key violation means it is in use.
    if ((error as { code?: string })?.code === "23503") throw ApiError.conflict(`Subscription plan '${existing.plan_name}' is in use by subscriptions`);
    throw error;
  }
  changes.record({ entity: "subscription_plan", id: existing.id, op: "delete", apiIds: [] });
}

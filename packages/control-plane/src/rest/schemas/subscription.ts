import { z } from "zod";
import { positiveInt, timestamp, type PlanUnit } from "@apigw/shared";
import { isoDate, uuid } from "./common";

export const PLAN_STATUSES = ["ACTIVE", "INACTIVE"] as const;
// The units ext_authz counts in (PlanUnit), so the REST schema and the projection cannot drift.
export const THROTTLE_UNITS = ["Min", "Hour", "Day", "Month"] as const satisfies readonly PlanUnit[];
export const SUBSCRIPTION_STATUSES = ["ACTIVE", "INACTIVE", "REVOKED"] as const;

export type PlanStatus = (typeof PLAN_STATUSES)[number];
export type ThrottleUnit = (typeof THROTTLE_UNITS)[number];
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** A required string: one error for empty, too long or not matching (the pattern runs only on a capped length). */
function nonEmptyPattern(re: RegExp, max: number, message: string) {
  return z
    .string()
    .min(1, { error: "must not be empty" })
    .max(max, { error: `must be at most ${max} characters` })
    .refine((s) => s.length === 0 || s.length > max || re.test(s), { error: message })
    .meta({ pattern: re.source });
}

/** The throttle limit count is stored in a Postgres integer column. */
const MAX_THROTTLE_COUNT = 2_147_483_647;

const planName = nonEmptyPattern(
  /^[A-Za-z0-9][A-Za-z0-9 ._-]*$/,
  64,
  "must start with a letter or digit and contain only letters, digits, spaces, ., _ and -",
);
const billingPlan = z.string().max(64, { error: "must be at most 64 characters" });
const throttleLimitCount = positiveInt(MAX_THROTTLE_COUNT);
const throttleLimitUnit = z.enum(THROTTLE_UNITS);
const expiryTime = timestamp.meta({ format: "date-time" });

/** Count and unit come together or not at all; reports the one that is missing. */
export function pairingIssues(count: unknown, unit: unknown): { field: "throttleLimitCount" | "throttleLimitUnit"; message: string }[] {
  const hasCount = count !== undefined && count !== null;
  const hasUnit = unit !== undefined && unit !== null;
  if (hasCount && !hasUnit) return [{ field: "throttleLimitUnit", message: "is required when throttleLimitCount is set" }];
  if (hasUnit && !hasCount) return [{ field: "throttleLimitCount", message: "is required when throttleLimitUnit is set" }];
  return [];
}

/** WSO2 resource: unknown fields are ignored; `null` for an optional field means "not set". */
export const subscriptionPlanCreateSchema = z
  .object({
    planName,
    billingPlan: billingPlan.nullish(),
    stopOnQuotaReach: z.boolean().nullish(),
    throttleLimitCount: throttleLimitCount.nullish(),
    throttleLimitUnit: throttleLimitUnit.nullish(),
    expiryTime: expiryTime.nullish(),
    status: z.enum(PLAN_STATUSES).nullish(),
  })
  .superRefine((plan, ctx) => {
    for (const issue of pairingIssues(plan.throttleLimitCount, plan.throttleLimitUnit)) {
      ctx.addIssue({ code: "custom", path: [issue.field], message: issue.message });
    }
  });
export type SubscriptionPlanCreate = z.infer<typeof subscriptionPlanCreateSchema>;

/**
 * Partial update: a field that is absent keeps its value; `null` clears an optional field. The
 * count/unit pairing is checked against the merged result by the repository.
 */
export const subscriptionPlanUpdateSchema = z.object({
  planName: planName.optional(),
  billingPlan: billingPlan.nullish(),
  stopOnQuotaReach: z.boolean().optional(),
  throttleLimitCount: throttleLimitCount.nullish(),
  throttleLimitUnit: throttleLimitUnit.nullish(),
  expiryTime: expiryTime.nullish(),
  status: z.enum(PLAN_STATUSES).optional(),
});
export type SubscriptionPlanUpdate = z.infer<typeof subscriptionPlanUpdateSchema>;

export const subscriptionPlanResponseSchema = z.object({
  id: z.string(),
  planName: z.string(),
  billingPlan: z.string().nullable(),
  stopOnQuotaReach: z.boolean(),
  throttleLimitCount: z.int().nullable(),
  throttleLimitUnit: z.enum(THROTTLE_UNITS).nullable(),
  expiryTime: isoDate.nullable(),
  status: z.enum(PLAN_STATUSES),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const subscriptionPlanListSchema = z.object({
  subscriptionPlans: z.array(subscriptionPlanResponseSchema),
  count: z.int(),
});

/** A token is opaque: any printable characters except whitespace. */
const subscriptionToken = nonEmptyPattern(/^[^\s\u0000-\u001f\u007f-\u009f]+$/, 512, "must not contain whitespace or control characters");
const externalId = z.string().max(128, { error: "must be at most 128 characters" });

export const subscriptionCreateSchema = z.object({
  apiId: z
    .string()
    .min(1, { error: "must not be empty" })
    .max(253, { error: "must be at most 253 characters" })
    .describe("The API's handle (metadata.name) or its internal id"),
  subscriptionToken: subscriptionToken.describe("Stored only as its SHA-256 hash; returned only in this response"),
  applicationId: externalId.nullish().describe("The id of an existing application (see /applications)"),
  subscriptionPlanId: uuid.nullish(),
  billingCustomerId: externalId.nullish(),
  billingSubscriptionId: externalId.nullish(),
  status: z.enum(SUBSCRIPTION_STATUSES).nullish(),
});
export type SubscriptionCreate = z.infer<typeof subscriptionCreateSchema>;

/** Only the status and the plan may change (`null` removes the plan); anything else is a 400. */
export const subscriptionUpdateSchema = z.strictObject({
  status: z.enum(SUBSCRIPTION_STATUSES).optional(),
  subscriptionPlanId: uuid.nullable().optional(),
});
export type SubscriptionUpdate = z.infer<typeof subscriptionUpdateSchema>;

export const subscriptionListQuerySchema = z.object({
  apiId: z.string().max(253).optional().describe("The API's handle or internal id; an unknown API gives an empty list"),
  applicationId: externalId.optional(),
  status: z.enum(SUBSCRIPTION_STATUSES).optional(),
});
export type SubscriptionListQuery = z.infer<typeof subscriptionListQuerySchema>;

export const subscriptionResponseSchema = z.object({
  id: z.string(),
  apiId: z.string().describe("The API's handle"),
  applicationId: z.string().nullable(),
  subscriptionToken: z.string().optional().describe("Only in the create response"),
  subscriptionPlanId: z.string().nullable(),
  billingCustomerId: z.string().nullable(),
  billingSubscriptionId: z.string().nullable(),
  status: z.enum(SUBSCRIPTION_STATUSES),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const subscriptionListSchema = z.object({
  subscriptions: z.array(subscriptionResponseSchema),
  count: z.int(),
});

/** Path ids are matched, not validated: anything that is not a known UUID is a 404. */

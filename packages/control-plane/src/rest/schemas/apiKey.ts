import { z } from "zod";
import { pattern, timestamp } from "@apigw/shared";
import { handle, isoDate, relativeDuration, successStatus } from "./common";

/** Key names as WSO2 writes them: lower-case words joined by single `-` or `_`. */
export const KEY_NAME_PATTERN = /^[a-z0-9]+([_-][a-z0-9]+)*$/;
export const KEY_NAME_MAX = 63;
export const keyName = pattern(
  KEY_NAME_PATTERN,
  KEY_NAME_MAX,
  "must be lower-case letters and digits, optionally joined by single '-' or '_' (e.g. my-production-key)",
).refine((s) => s.length >= 3, { error: "must be at least 3 characters" });

/** An externally generated key: printable ASCII without whitespace. */
export const EXTERNAL_KEY_PATTERN = /^[\x21-\x7e]+$/;
export const externalKey = pattern(EXTERNAL_KEY_PATTERN, 512, "must be printable ASCII without whitespace").refine((s) => s.length >= 16, {
  error: "must be at least 16 characters",
});

const displayName = z
  .string()
  .min(1)
  .max(100)
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), { error: "must not contain control characters" });

/** How long the previous value of a regenerated key keeps working. */
export const MAX_GRACE_SECONDS = 30 * 86_400;
const UNIT_SECONDS = { seconds: 1, minutes: 60, hours: 3600, days: 86_400, weeks: 604_800 } as const;
const gracePeriod = relativeDuration.refine(
  (g) => (g.unit === "months" ? g.duration <= 1 : g.duration * UNIT_SECONDS[g.unit] <= MAX_GRACE_SECONDS),
  { error: "must be at most 30 days (or 1 month)", path: ["duration"] },
);

interface ExpiryFields {
  expiresAt?: string;
  expiresIn?: unknown;
}

/** `expiresAt` and `expiresIn` exclude each other, and an absolute expiry must lie in the future. */
function checkExpiry(body: ExpiryFields, ctx: z.RefinementCtx): void {
  if (body.expiresAt !== undefined && body.expiresIn !== undefined) {
    ctx.addIssue({ code: "custom", path: ["expiresIn"], message: "specify either expiresAt or expiresIn, not both" });
  }
  if (body.expiresAt !== undefined && Date.parse(body.expiresAt) <= Date.now()) {
    ctx.addIssue({ code: "custom", path: ["expiresAt"], message: "must be in the future" });
  }
}

/** The optional expiry of every key body (create, regenerate, update); checked by `checkExpiry`. */
const expiryFields = {
  expiresAt: timestamp.describe("Absolute expiry (RFC 3339, in the future)").optional(),
  expiresIn: relativeDuration.describe("Expiry relative to now; excludes expiresAt").optional(),
};

export const apiKeyCreateSchema = z
  .strictObject({
    name: keyName.optional().describe("Generated as `<api handle>-key-<8 random characters>` when absent"),
    displayName: displayName.optional(),
    apiKey: externalKey.optional().describe("An externally generated key to register instead of generating one; it is never echoed"),
    ...expiryFields,
  })
  .superRefine(checkExpiry);
export type ApiKeyCreateRequest = z.infer<typeof apiKeyCreateSchema>;

export const apiKeyRegenerateSchema = z
  .strictObject({
    gracePeriod: gracePeriod.optional().describe("Keeps the previous value valid for this long (at most 30 days)"),
    ...expiryFields,
  })
  .superRefine(checkExpiry);
export type ApiKeyRegenerateRequest = z.infer<typeof apiKeyRegenerateSchema>;

export const apiKeyUpdateSchema = z
  .strictObject({
    apiKey: externalKey.describe("The new value of the key; it is never echoed"),
    displayName: displayName.optional(),
    ...expiryFields,
  })
  .superRefine(checkExpiry);
export type ApiKeyUpdateRequest = z.infer<typeof apiKeyUpdateSchema>;

export const apiKeyParams = z.object({ id: handle.describe("The API's handle (metadata.name)") });
export const apiKeyNameParams = apiKeyParams.extend({
  apiKeyName: z.string().min(1).max(KEY_NAME_MAX).describe("The key's name"),
});

export const apiKeySchema = z.object({
  name: z.string(),
  displayName: z.string(),
  apiKey: z.string().optional().describe("The full key on create/regenerate of a generated key; `***` and its last 5 characters in lists"),
  apiId: z.string().describe("The API's handle"),
  status: z.enum(["active", "expired"]),
  createdAt: isoDate,
  createdBy: z.string(),
  expiresAt: isoDate.nullable(),
  source: z.enum(["local", "external"]),
});

export const apiKeyIssueResponseSchema = z.object({
  status: successStatus,
  message: z.string(),
  remainingApiKeyQuota: z.int(),
  apiKey: apiKeySchema,
  previousKeyValidUntil: isoDate.optional().describe("Until when the previous value still works (regenerate with gracePeriod)"),
});

export const apiKeyListSchema = z.object({
  apiKeys: z.array(apiKeySchema),
  totalCount: z.int(),
  status: successStatus,
});

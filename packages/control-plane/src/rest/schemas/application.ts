import { z } from "zod";
import { STAGES, timestamp } from "@apigw/shared";
import { handle, isoDate, successStatus, uuid } from "./common";

/**
 * Applications (Alibaba Cloud API Gateway "apps", Huawei APIG "credentials") and their
 * authorizations. These are our own resources: unknown fields in request bodies are rejected.
 */

export const APPLICATION_STATUSES = ["ENABLED", "DISABLED"] as const;
export type ApplicationStatus = (typeof APPLICATION_STATUSES)[number];

/** An application holds at most this many AppKey/AppSecret pairs (the default one included). */
export const MAX_KEY_PAIRS = 5;
export const MAX_TAGS = 20;


/**
 * A string with a length range and a (linear) pattern. The pattern runs only on strings of an
 * acceptable length, so each bad value gets one message.
 */
function bounded(re: RegExp, min: number, max: number, message: string) {
  return z
    .string()
    .min(min, { error: `must be at least ${min} characters` })
    .max(max, { error: `must be at most ${max} characters` })
    .refine((s) => s.length < min || s.length > max || re.test(s), { error: message })
    .meta({ pattern: re.source });
}

export const applicationName = bounded(
  /^[A-Za-z][A-Za-z0-9_-]*$/,
  4,
  64,
  "must start with a letter and contain only letters, digits, _ and -",
);
export const appKey = bounded(/^[A-Za-z0-9_-]+$/, 8, 64, "may contain only letters, digits, _ and -");
/** Printable ASCII without whitespace (0x21-0x7E). */
export const appSecret = bounded(/^[\x21-\x7e]+$/, 16, 128, "may contain only printable ASCII characters without whitespace");
export const appCode = bounded(/^[A-Za-z0-9_-]+$/, 16, 128, "may contain only letters, digits, _ and -");
const description = z.string().max(180, { error: "must be at most 180 characters" });
const extInfo = z.string().max(1024, { error: "must be at most 1024 characters" });

const tags = z
  .record(z.string(), z.string({ error: "must be a string" }).max(256, { error: "must be at most 256 characters" }), {
    error: (issue) => (issue.code === "invalid_type" ? "must be an object mapping tag names to string values" : undefined),
  })
  .superRefine((record, ctx) => {
    const keys = Object.keys(record);
    if (keys.length > MAX_TAGS) ctx.addIssue({ code: "custom", message: `must have at most ${MAX_TAGS} tags` });
    for (const key of keys) {
      if (key.length === 0) ctx.addIssue({ code: "custom", message: "tag names must not be empty" });
      else if (key.length > 64) ctx.addIssue({ code: "custom", message: `tag name '${key.slice(0, 16)}…' is longer than 64 characters` });
    }
  })
  .meta({ description: `Up to ${MAX_TAGS} tags; names at most 64 characters, values at most 256` });

export const applicationCreateSchema = z.strictObject({
  name: applicationName.describe("Unique name: 4-64 characters, starts with a letter; letters, digits, _ and -"),
  description: description.optional(),
  tags: tags.optional(),
  extInfo: extInfo.optional().describe("Passed to backends as the CaAppExtInfo system parameter"),
  appKey: appKey.optional().describe("Custom AppKey of the default key pair (generated when absent); globally unique"),
  appSecret: appSecret.optional().describe("Custom AppSecret of the default key pair (generated when absent)"),
  appCode: appCode.optional().describe("Custom AppCode (generated when absent); unique"),
});
export type ApplicationCreate = z.infer<typeof applicationCreateSchema>;

/** Partial update: absent fields keep their value; `null` clears description or extInfo. */
export const applicationUpdateSchema = z.strictObject({
  name: applicationName.optional(),
  description: description.nullable().optional(),
  tags: tags.optional().describe("Replaces all tags"),
  extInfo: extInfo.nullable().optional(),
});
export type ApplicationUpdate = z.infer<typeof applicationUpdateSchema>;

export const keyPairCreateSchema = z.strictObject({
  appKey: appKey.optional().describe("Custom AppKey (generated when absent); globally unique"),
  appSecret: appSecret.optional().describe("Custom AppSecret (generated when absent)"),
});
export type KeyPairCreate = z.infer<typeof keyPairCreateSchema>;

export const secretResetSchema = z.strictObject({
  appSecret: appSecret.optional().describe("Custom new AppSecret (generated when absent)"),
});

export const appCodeResetSchema = z.strictObject({
  appCode: appCode.optional().describe("Custom new AppCode (generated when absent)"),
});

export const applicationListQuery = z.object({
  name: z.string().max(64, { error: "must be at most 64 characters" }).optional(),
  status: z.enum(APPLICATION_STATUSES).optional(),
});

/** Path ids are checked by the repository: anything that is not a known UUID is a 404. */
export const appIdParam = z.string().max(64).describe("The application's id (a UUID)");
export const appKeyParam = z.string().max(64).describe("An AppKey of the application");

const keyPairOutput = z.object({ appKey: z.string(), isDefault: z.boolean(), createdAt: isoDate });
/** The raw AppSecret appears only in the answers that create or reset it. */
export const keyPairWithSecret = keyPairOutput.extend({ appSecret: z.string() });

export const applicationOutput = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  tags: z.record(z.string(), z.string()),
  extInfo: z.string().nullable(),
  status: z.enum(APPLICATION_STATUSES),
  appCode: z.string().describe("The raw AppCode in the create answer; elsewhere masked as *** and its last five characters"),
  keyPairs: z.array(keyPairOutput.extend({ appSecret: z.string().optional().describe("Only in the create answer") })),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const applicationResponseSchema = z.object({ status: successStatus, application: applicationOutput });
export const applicationListSchema = z.object({ status: successStatus, count: z.int(), applications: z.array(applicationOutput) });
export const keyPairResponseSchema = z.object({ status: successStatus, keyPair: keyPairWithSecret });
export const appCodeResponseSchema = z.object({ status: successStatus, appCode: z.string() });

// ---- authorizations ----

/** An RFC 3339 date-time that lies in the future. */
const futureTimestamp = timestamp
  .refine((value) => Number.isNaN(Date.parse(value)) || Date.parse(value) > Date.now(), { error: "must be in the future" })
  .meta({ format: "date-time" });

export const authorizationCreateSchema = z.strictObject({
  applicationId: uuid.describe("The application's id"),
  apiId: handle.describe("The API's handle (metadata.name)"),
  stage: z.enum(STAGES).describe("RELEASE: the API's main vhost; TEST: its sandbox vhost"),
  expiresAt: futureTimestamp.nullable().optional().describe("End of the authorization (RFC 3339, in the future); absent or null: no expiry"),
  description: description.optional(),
});
export type AuthorizationCreate = z.infer<typeof authorizationCreateSchema>;

export const authorizationUpdateSchema = z.strictObject({
  expiresAt: futureTimestamp.nullable().optional().describe("New end (RFC 3339, in the future); null removes the expiry"),
  description: description.nullable().optional(),
});
export type AuthorizationUpdate = z.infer<typeof authorizationUpdateSchema>;

export const authorizationListQuery = z.object({
  apiId: handle.optional(),
  applicationId: uuid.optional(),
  stage: z.enum(STAGES).optional(),
});
export type AuthorizationListQuery = z.infer<typeof authorizationListQuery>;

export const authorizationIdParam = z.string().max(64).describe("The authorization's id (a UUID)");

export const authorizationOutput = z.object({
  id: z.string(),
  applicationId: z.string(),
  applicationName: z.string(),
  apiId: z.string(),
  stage: z.enum(STAGES),
  expiresAt: isoDate.nullable(),
  expired: z.boolean().describe("True once expiresAt has passed"),
  description: z.string().nullable(),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const authorizationResponseSchema = z.object({ status: successStatus, authorization: authorizationOutput });
export const authorizationListSchema = z.object({ status: successStatus, count: z.int(), authorizations: z.array(authorizationOutput) });

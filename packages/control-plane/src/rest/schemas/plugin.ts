import { z } from "zod";
import { POLICY_TYPE_NAMES, POLICY_TYPES, STAGES, findPolicyType, validatePolicy } from "@apigw/shared";
import type { FieldError } from "../../errors";
import { fieldPath } from "../../errors";
import { isoDate, successStatus } from "./common";

/*
 * Alibaba-style plug-ins: a named, reusable policy of one registry type, bound to APIs per stage.
 * The type and its params are checked by the same policy registry that checks a RestApi's inline
 * policies, so a plug-in and an inline policy of one type accept exactly the same params.
 */

/** Alibaba's rule for names: 4-50 characters, starting with a letter (we also allow `-`). */
export const PLUGIN_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_-]*$/;
/** "The metadata of a plug-in cannot exceed 50 KB": the JSON of its params, in bytes. */
export const PLUGIN_PARAMS_MAX_BYTES = 51_200;
export const PLUGIN_PARAMS_TOO_BIG = "plug-in metadata exceeds 50 KB";

export const pluginName = z
  .string()
  .min(4, { error: "must be at least 4 characters" })
  .max(50, { error: "must be at most 50 characters" })
  .refine((s) => s.length < 4 || s.length > 50 || PLUGIN_NAME_PATTERN.test(s), {
    error: "must start with a letter and contain only letters, digits, _ and -",
  })
  .meta({ pattern: PLUGIN_NAME_PATTERN.source });

/** Every type with its aliases, as an unknown type's message lists them (fixed at start). */
const KNOWN_TYPES = POLICY_TYPES.map((d) => (d.aliases.length > 0 ? `${d.type} (${d.aliases.join(", ")})` : d.type)).join(", ");

export function unknownTypeMessage(name: string): string {
  return `unknown plug-in type '${name.slice(0, 64)}'; known types: ${KNOWN_TYPES}`;
}

/** A canonical type name or one of its aliases; the canonical name is what gets stored. */
export const pluginType = z
  .string()
  .min(1, { error: "must not be empty" })
  .max(64, { error: "must be at most 64 characters" })
  .superRefine((name, ctx) => {
    if (name.length <= 64 && name.length > 0 && !findPolicyType(name)) ctx.addIssue({ code: "custom", message: unknownTypeMessage(name) });
  })
  .describe(`One of: ${POLICY_TYPE_NAMES.join(", ")} (or an alias such as ip-control)`);

export const pluginDescription = z.string().max(180, { error: "must be at most 180 characters" });

export const pluginParams = z
  .record(z.string(), z.unknown(), { error: "must be an object" })
  .describe("The policy's parameters, as the policy registry defines them for the type");

/**
 * Problems with a plug-in's params for its type: the 50 KB limit first (then nothing else is
 * checked), then the registry's schema. Paths are relative to the body (`params.allow[0]`).
 */
export function paramsIssues(type: string, params: unknown): { path: (string | number)[]; message: string }[] {
  const size = Buffer.byteLength(JSON.stringify(params ?? {}), "utf8");
  if (size > PLUGIN_PARAMS_MAX_BYTES) return [{ path: ["params"], message: PLUGIN_PARAMS_TOO_BIG }];
  return validatePolicy({ name: type, params: params ?? {} }, "api").issues;
}

export function paramsFieldErrors(type: string, params: unknown): FieldError[] {
  return paramsIssues(type, params).map((i) => ({ field: fieldPath(i.path), message: i.message }));
}

export const pluginCreateSchema = z
  .strictObject({
    name: pluginName,
    type: pluginType,
    description: pluginDescription.optional(),
    params: pluginParams.optional(),
  })
  .superRefine((body, ctx) => {
    if (typeof body.type !== "string" || !findPolicyType(body.type)) return; // reported on `type`
    for (const issue of paramsIssues(body.type, body.params)) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
  });
export type PluginCreate = z.infer<typeof pluginCreateSchema>;

export const pluginUpdateSchema = z.strictObject({
  name: pluginName.optional(),
  description: pluginDescription.nullable().optional().describe("null clears it"),
  params: pluginParams.optional().describe("Replaces the params as a whole; checked against the plug-in's type"),
  type: z.string().max(64, { error: "must be at most 64 characters" }).optional().describe("Accepted only when it names the plug-in's current type"),
});
export type PluginUpdate = z.infer<typeof pluginUpdateSchema>;

export const bindingRequestSchema = z.strictObject({
  apiIds: z
    .array(z.string().min(1, { error: "must not be empty" }).max(253, { error: "must be at most 253 characters" }))
    .min(1, { error: "must have at least 1 item(s)" })
    .max(100, { error: "must have at most 100 items" })
    .superRefine((ids, ctx) => {
      const seen = new Map<string, number>();
      ids.forEach((id, i) => {
        const first = seen.get(id);
        if (first !== undefined) ctx.addIssue({ code: "custom", path: [i], message: `duplicate of apiIds[${first}]` });
        else seen.set(id, i);
      });
    })
    .describe("Handles of the APIs to bind the plug-in to"),
  stage: z.enum(STAGES),
});
export type BindingRequest = z.infer<typeof bindingRequestSchema>;

export const pluginResponse = z.object({
  id: z.string(),
  name: z.string(),
  type: z.string(),
  description: z.string().nullable(),
  params: z.record(z.string(), z.unknown()),
  createdAt: isoDate,
  updatedAt: isoDate,
});

export const pluginResponseSchema = z.object({ status: successStatus, plugin: pluginResponse });
export const pluginListSchema = z.object({ status: successStatus, count: z.int(), plugins: z.array(pluginResponse) });

export const bindingCreatedSchema = z.object({
  status: successStatus,
  bindings: z.array(z.object({ pluginId: z.string(), apiId: z.string(), stage: z.enum(STAGES), boundAt: isoDate })),
});

export const pluginApisSchema = z.object({
  status: successStatus,
  count: z.int(),
  bindings: z.array(
    z.object({ apiId: z.string(), displayName: z.string(), stage: z.enum(STAGES), deploymentState: z.string(), boundAt: isoDate }),
  ),
});

export const apiPluginsSchema = z.object({
  status: successStatus,
  count: z.int(),
  plugins: z.array(pluginResponse.extend({ stage: z.enum(STAGES), boundAt: isoDate })),
});

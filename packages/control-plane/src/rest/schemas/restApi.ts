import { z } from "zod";
import {
  DEFAULT_MAIN_VHOST,
  DEFAULT_SANDBOX_VHOST,
  DEPLOYMENT_STATES,
  HTTP_METHODS,
  duration,
  findPolicyType,
  pattern,
  validatePolicy,
} from "@apigw/shared";
import { handle, httpUrl, isoDate, successStatus } from "./common";

export const REST_API_VERSION = "gateway.api-platform.wso2.com/v1alpha1";

/** Context: starts with `/`, no trailing `/` (unless it is `/`), no `//`, may contain `$version`. */
const CONTEXT_PATTERN = /^\/([A-Za-z0-9._~$-]+(\/[A-Za-z0-9._~$-]+)*)?$/;
/** Operation path segments: literal, `{variable}`, or a final `*`. */
const SEGMENT_LITERAL = /^[A-Za-z0-9._~!$&'()+,;=:@-]+$/;
const SEGMENT_VARIABLE = /^\{([A-Za-z_][A-Za-z0-9_-]{0,31})\}$/;
const MAX_PATH_VARIABLES = 5;
/** Envoy's limit on request_headers_to_add / response_headers_to_add of one route. */
const MAX_HEADERS_TO_ADD = 1000;

/** `*`, a host name, `*.example.com` / `*-suffix.example.com`, or `example.*` / `sandbox-*`; optional port. */
const VHOST_PATTERN = /^(\*|(\*[.-])?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?([.-]\*)?)(:\d{1,5})?$/;

const policyFields = z.object({
  name: z.string().min(1).max(64),
  version: z
    .string()
    .max(16)
    .refine((v) => v === "" || /^v\d{1,4}$/.test(v), { error: "must be a major version such as v1 (a full semantic version is not accepted)" })
    .optional(),
  executionCondition: z.string().max(1024).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
});

/** A policy, checked against the policy type registry (name, major version, params). */
function policyAt(level: "api" | "operation") {
  return policyFields.superRefine((policy, ctx) => {
    for (const issue of validatePolicy(policy, level).issues) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
  });
}
export const apiPolicySchema = policyAt("api");
export const operationPolicySchema = policyAt("operation");
export type PolicyInput = z.infer<typeof policyFields>;

const upstreamSchema = z
  .object({
    url: httpUrl.optional(),
    ref: z.string().min(1).max(128).optional(),
    hostRewrite: z.enum(["auto", "manual"]).optional(),
  })
  .superRefine((u, ctx) => {
    if ((u.url === undefined) === (u.ref === undefined)) {
      ctx.addIssue({ code: "custom", message: "Specify exactly one of 'url' or 'ref'" });
    }
  });

const upstreamDefinitionSchema = z.object({
  name: z.string().min(1).max(128),
  basePath: pattern(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/, 1024, "must be a path starting with /").optional(),
  timeout: z.object({ connect: duration.optional() }).optional(),
  upstreams: z
    .array(
      z.object({
        url: httpUrl,
        weight: z
          .int({ error: "must be an integer" })
          .min(0, { error: "must be between 0 and 100 (a share of the traffic in percent)" })
          .max(100, { error: "must be between 0 and 100 (a share of the traffic in percent)" })
          .optional(),
      }),
    )
    .min(1, { error: "at least one upstream is required" })
    .max(64),
});

/**
 * An operation's own upstream, per stage: overrides the API's `spec.upstream.main` / `.sandbox`
 * for this operation (same shape: `url` or `ref`, optional hostRewrite). A stage it leaves out
 * uses the API's upstream.
 */
const operationUpstreamSchema = z
  .object({ main: upstreamSchema.optional(), sandbox: upstreamSchema.optional() })
  .refine((u) => u.main !== undefined || u.sandbox !== undefined, { error: "give main, sandbox or both" });

const operationSchema = z.object({
  method: z.enum(HTTP_METHODS),
  path: z
    .string()
    .min(1)
    .max(1024)
    .superRefine((path, ctx) => {
      const problem = checkOperationPath(path);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  upstream: operationUpstreamSchema.optional(),
  policies: z.array(operationPolicySchema).max(50).optional(),
});

const labelKey = pattern(/^[^\s]+$/, 128, "label keys must not contain whitespace");

export const restApiRequestSchema = z
  .object({
    apiVersion: z.literal(REST_API_VERSION, { error: `Unsupported API version (must be '${REST_API_VERSION}')` }),
    kind: z.literal("RestApi", { error: "Unsupported kind (must be 'RestApi')" }),
    metadata: z.object({
      name: handle,
      labels: z.record(labelKey, z.string().max(256)).optional(),
      annotations: z.record(z.string().max(256), z.string().max(4096)).optional(),
    }),
    spec: z.object({
      displayName: pattern(/^[A-Za-z0-9 ._-]+$/, 100, "may contain only letters, digits, spaces, -, _ and .").refine((s) => s.trim().length > 0, {
        error: "must not be empty",
      }),
      version: pattern(/^v?\d{1,9}(\.\d{1,9}){0,2}$/, 32, "API version must follow semantic versioning pattern (e.g., v1.0, v2.1.3)"),
      context: pattern(CONTEXT_PATTERN, 200, "Context must start with / and cannot end with /"),
      upstream: z.object({ main: upstreamSchema, sandbox: upstreamSchema.optional() }),
      upstreamDefinitions: z.array(upstreamDefinitionSchema).max(64).optional(),
      vhosts: z
        .object({
          main: pattern(VHOST_PATTERN, 260, "must be a host name, optionally with a leading or trailing wildcard"),
          sandbox: pattern(VHOST_PATTERN, 260, "must be a host name, optionally with a leading or trailing wildcard").optional(),
        })
        .optional(),
      subscriptionPlans: z.array(z.string().min(1).max(128)).max(100).optional(),
      policies: z.array(apiPolicySchema).max(50).optional(),
      operations: z.array(operationSchema).min(1, { error: "At least one operation is required" }).max(1000),
      deploymentState: z.enum(DEPLOYMENT_STATES).optional(),
    }),
  })
  .superRefine((api, ctx) => {
    const spec = api.spec;
    // Upstream definitions: unique names, and every ref names one.
    const definitionNames = new Map<string, number>();
    spec.upstreamDefinitions?.forEach((d, i) => {
      if (definitionNames.has(d.name)) {
        ctx.addIssue({ code: "custom", path: ["spec", "upstreamDefinitions", i, "name"], message: `duplicate upstream definition name '${d.name}'` });
      }
      definitionNames.set(d.name, i);
      if (d.upstreams.every((u) => u.weight === 0)) {
        ctx.addIssue({ code: "custom", path: ["spec", "upstreamDefinitions", i, "upstreams"], message: "at least one upstream must have a weight above 0" });
      }
    });
    for (const stage of ["main", "sandbox"] as const) {
      const ref = spec.upstream[stage]?.ref;
      if (ref !== undefined && !definitionNames.has(ref)) {
        ctx.addIssue({ code: "custom", path: ["spec", "upstream", stage, "ref"], message: `no upstreamDefinition named '${ref}'` });
      }
    }
    spec.operations.forEach((operation, i) => {
      for (const stage of ["main", "sandbox"] as const) {
        const own = operation.upstream?.[stage];
        if (!own) continue;
        const path = ["spec", "operations", i, "upstream", stage];
        if (stage === "sandbox" && !spec.upstream.sandbox) {
          ctx.addIssue({ code: "custom", path, message: "the API has no sandbox stage (set spec.upstream.sandbox first)" });
        }
        if (own.ref !== undefined && !definitionNames.has(own.ref)) {
          ctx.addIssue({ code: "custom", path: [...path, "ref"], message: `no upstreamDefinition named '${own.ref}'` });
        }
      }
    });
    // Both stages on one host would claim the same routes twice (host names are case-insensitive).
    const mainHost = (spec.vhosts?.main ?? DEFAULT_MAIN_VHOST).toLowerCase();
    const sandboxHost = (spec.vhosts?.sandbox ?? DEFAULT_SANDBOX_VHOST).toLowerCase();
    if (spec.vhosts?.sandbox !== undefined && sandboxHost === mainHost) {
      ctx.addIssue({ code: "custom", path: ["spec", "vhosts", "sandbox"], message: "must differ from vhosts.main" });
    } else if (spec.upstream.sandbox && sandboxHost === mainHost) {
      ctx.addIssue({
        code: "custom",
        path: ["spec", "vhosts", "main"],
        message: `is the sandbox stage's default host '${DEFAULT_SANDBOX_VHOST}'; set vhosts.sandbox to another host`,
      });
    }
    for (const [name, value] of Object.entries(spec.vhosts ?? {})) {
      const port = typeof value === "string" ? /:(\d+)$/.exec(value)?.[1] : undefined;
      if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
        ctx.addIssue({ code: "custom", path: ["spec", "vhosts", name], message: "the port must be from 1 to 65535" });
      }
      if (typeof value === "string" && value.startsWith("*") && value.length > 1 && /[.-]\*(:\d+)?$/.test(value)) {
        ctx.addIssue({ code: "custom", path: ["spec", "vhosts", name], message: "may have a wildcard at the start or at the end, not both" });
      }
    }
    // Operations: valid templates, no duplicate method + path.
    const seen = new Map<string, number>();
    spec.operations.forEach((operation, i) => {
      const key = `${operation.method} ${pathKey(operation.path)}`;
      const previous = seen.get(key);
      if (previous !== undefined) {
        ctx.addIssue({ code: "custom", path: ["spec", "operations", i], message: `duplicate operation: same method and path as operations[${previous}]` });
      } else {
        seen.set(key, i);
      }
    });
    // The setHeaders policies of one list all apply to each of its routes (executionConditions are
    // not evaluated), and Envoy takes at most 1000 headers to add per route and direction.
    const headerBudget = (policies: PolicyInput[] | undefined, path: (string | number)[]) => {
      for (const direction of ["request", "response"] as const) {
        let count = 0;
        for (const policy of policies ?? []) {
          if (findPolicyType(policy.name)?.type !== "setHeaders") continue;
          const headers = (policy.params?.[direction] as { headers?: unknown } | undefined)?.headers;
          if (Array.isArray(headers)) count += headers.length;
        }
        if (count > MAX_HEADERS_TO_ADD) {
          ctx.addIssue({ code: "custom", path, message: `setHeaders policies here add ${count} ${direction} headers; a route takes at most ${MAX_HEADERS_TO_ADD}` });
        }
      }
    };
    headerBudget(spec.policies, ["spec", "policies"]);
    spec.operations.forEach((operation, i) => headerBudget(operation.policies, ["spec", "operations", i, "policies"]));
    const apiLevelTypes = new Map<string, number>();
    spec.policies?.forEach((policy, j) => {
      const result = validatePolicy(policy, "api");
      if (result.definition) {
        if (apiLevelTypes.has(result.definition.type) && !policy.executionCondition) {
          ctx.addIssue({ code: "custom", path: ["spec", "policies", j, "name"], message: `policy '${policy.name}' is already set at API level (policies[${apiLevelTypes.get(result.definition.type)}])` });
        }
        apiLevelTypes.set(result.definition.type, j);
      }
    });
  });

export type RestApiRequest = z.infer<typeof restApiRequestSchema>;

/** Returns a message when the operation path is not a valid route template. */
export function checkOperationPath(path: string): string | undefined {
  if (!path.startsWith("/")) return "must start with /";
  if (path.length > 1 && path.includes("//")) return "must not contain //";
  const segments = path.split("/").slice(1);
  const variables = new Set<string>();
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === "" && i === segments.length - 1) continue; // trailing slash
    if (segment === "*" && i === segments.length - 1) continue;
    const variable = SEGMENT_VARIABLE.exec(segment);
    if (variable) {
      if (variables.has(variable[1]!)) return `path variable '${variable[1]}' appears twice`;
      variables.add(variable[1]!);
      continue;
    }
    if (segment.includes("{") || segment.includes("}")) {
      return "a path variable must be a whole segment like {id}, with a name of letters, digits, _ or - (braces must balance)";
    }
    if (!SEGMENT_LITERAL.test(segment)) return `segment '${segment.slice(0, 40)}' contains characters not allowed in a path`;
  }
  if (variables.size > MAX_PATH_VARIABLES) return `at most ${MAX_PATH_VARIABLES} path variables are allowed`;
  return undefined;
}

/** Route identity: variables are anonymous (`/books/{id}` = `/books/{bookId}`), trailing slash ignored. */
export function pathKey(path: string): string {
  const normalized = path.replace(/\{[^}/]*\}/g, "{}");
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

const policyOutput = z.object({
  name: z.string(),
  version: z.string().optional(),
  executionCondition: z.string().optional(),
  params: z.record(z.string(), z.unknown()).optional(),
});

/** The response: the stored request plus server-managed status. */
export const restApiResponseSchema = z.object({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.object({ name: z.string(), labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() }),
  spec: z.object({
    displayName: z.string(),
    version: z.string(),
    context: z.string(),
    upstream: z.record(z.string(), z.object({ url: z.string().optional(), ref: z.string().optional(), hostRewrite: z.string().optional() })),
    upstreamDefinitions: z.array(z.record(z.string(), z.unknown())).optional(),
    vhosts: z.object({ main: z.string(), sandbox: z.string().optional() }),
    subscriptionPlans: z.array(z.string()).optional(),
    policies: z.array(policyOutput).optional(),
    operations: z.array(
      z.object({
        method: z.string(),
        path: z.string(),
        upstream: z.record(z.string(), z.object({ url: z.string().optional(), ref: z.string().optional(), hostRewrite: z.string().optional() })).optional(),
        policies: z.array(policyOutput).optional(),
      }),
    ),
    deploymentState: z.string().optional(),
  }),
  status: z.object({
    id: z.string(),
    state: z.enum(DEPLOYMENT_STATES),
    createdAt: isoDate,
    updatedAt: isoDate,
    deployedAt: isoDate.optional(),
    gateways: z
      .object({
        revision: z.int(),
        synced: z.boolean(),
        gateways: z.array(z.object({ name: z.string(), nodes: z.int(), ackedRevision: z.int().nullable() })),
      })
      .optional(),
    conditions: z
      .array(
        z.object({
          type: z.enum(["Accepted", "Programmed", "Degraded"]),
          status: z.enum(["True", "False"]),
          reason: z.string(),
          message: z.string(),
          observedRevision: z.int(),
        }),
      )
      .optional()
      .describe("GET of one API only: Accepted, Programmed and Degraded, as Kubernetes Gateway API conditions"),
  }),
});

export const restApiListSchema = z.object({ status: successStatus, count: z.int(), apis: z.array(restApiResponseSchema) });

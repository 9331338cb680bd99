import { z } from "zod";
import {
  HEADER_NAME_PATTERN,
  duration,
  headerName,
  headerValue,
  ipOrCidr,
  mutableHeaderName,
  positiveInt,
} from "../validation/primitives";
import { HTTP_METHODS } from "../model/stages";

/*
 * One policy model for both worlds: a WSO2 inline policy on a RestApi (`spec.policies[]`,
 * `operations[].policies[]`) and an Alibaba-style plug-in bound to an API per stage are the same
 * thing, a typed and validated policy. Each type is defined once here, with its canonical
 * (plug-in) name, the WSO2-style names it also answers to, and the schema of its params.
 */

const setHeaderList = z.strictObject({
  headers: z.array(z.strictObject({ name: mutableHeaderName, value: headerValue })).min(1).max(64),
});
const setHeaders = z
  .strictObject({ request: setHeaderList.optional(), response: setHeaderList.optional() })
  .refine((p) => p.request || p.response, { error: "set at least one of request or response" });

const removeHeaderList = z.strictObject({ headers: z.array(mutableHeaderName).min(1).max(64) });
const removeHeaders = z
  .strictObject({ request: removeHeaderList.optional(), response: removeHeaderList.optional() })
  .refine((p) => p.request || p.response, { error: "set at least one of request or response" });

/** `*`, an origin such as `https://app.example.com`, or a wildcard subdomain `https://*.example.com`. */
const ORIGIN_PATTERN = /^(\*|https?:\/\/(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?)$/;
const cors = z
  .strictObject({
    allowOrigins: z
      .array(
        z
          .string()
          .max(253)
          .refine((s) => ORIGIN_PATTERN.test(s), { error: "must be *, an origin like https://app.example.com, or https://*.example.com" }),
      )
      .min(1)
      .max(100),
    allowMethods: z.array(z.enum(HTTP_METHODS)).max(7).optional(),
    allowHeaders: z.array(headerName).max(100).optional(),
    exposeHeaders: z.array(headerName).max(100).optional(),
    maxAge: z.int().min(0).max(86_400).optional(),
    allowCredentials: z.boolean().optional(),
  })
  .refine((p) => !(p.allowCredentials && p.allowOrigins.includes("*")), {
    error: "allowCredentials cannot be combined with the * origin",
    path: ["allowCredentials"],
  });

const ipList = z.array(ipOrCidr).max(1000);
const ipControl = z
  .strictObject({
    allow: ipList.optional(),
    deny: ipList.optional(),
    applications: z
      .array(z.strictObject({ applicationId: z.string().min(1).max(64), allow: ipList.optional(), deny: ipList.optional() }))
      .max(500)
      .optional(),
    /** Take the client address from X-Forwarded-For (the hop this many entries from the right) instead of the peer. */
    trustForwardedFor: z.boolean().optional(),
    forwardedForDepth: z.int().min(1).max(10).optional(),
  })
  .refine((p) => (p.allow?.length ?? 0) + (p.deny?.length ?? 0) + (p.applications?.length ?? 0) > 0, {
    error: "give at least one of allow, deny or applications",
  });

export const TRAFFIC_UNITS = ["SECOND", "MINUTE", "HOUR", "DAY"] as const;
const trafficControl = z
  .strictObject({
    unit: z.enum(TRAFFIC_UNITS),
    apiLimit: positiveInt(1_000_000_000).optional(),
    appLimit: positiveInt(1_000_000_000).optional(),
    userLimit: positiveInt(1_000_000_000).optional(),
    specials: z
      .array(z.strictObject({ type: z.enum(["APP", "USER"]), key: z.string().min(1).max(128), limit: positiveInt(1_000_000_000) }))
      .max(500)
      .optional(),
  })
  .refine((p) => p.apiLimit || p.appLimit || p.userLimit || p.specials?.length, {
    error: "give at least one of apiLimit, appLimit, userLimit or specials",
  });

export const SIGNATURE_METHODS = ["HmacSHA256", "HmacSHA1"] as const;
export const APP_CODE_MODES = ["DISABLE", "HEADER", "HEADER_QUERY"] as const;
const appAuth = z
  .strictObject({
    signature: z.boolean().optional(),
    appCode: z.enum(APP_CODE_MODES).optional(),
    signatureMethods: z.array(z.enum(SIGNATURE_METHODS)).min(1).max(2).optional(),
    forceNonceCheck: z.boolean().optional(),
  })
  .refine((p) => p.signature !== false || (p.appCode ?? "HEADER") !== "DISABLE", {
    error: "at least one of signature or appCode must be enabled",
  });

const QUERY_NAME = /^[^\s\u0000-\u001f\u007f&=#]+$/;
const apiKeyAuth = z
  .strictObject({
    /** Alibaba-style: the header carrying the key. */
    header: headerName.optional(),
    /** WSO2-style: `key` names the header or query parameter, `in` says which. */
    key: z.string().min(1).max(128).optional(),
    in: z.enum(["header", "query"]).optional(),
  })
  .refine((p) => !(p.header && (p.key || p.in)), { error: "give either header, or key with in, not both" })
  // The key names a request header (matched as one, and quoted in the WWW-Authenticate challenge)
  // or a query parameter: a header token, or printable without whitespace.
  .refine((p) => p.key === undefined || (p.in === "query" ? QUERY_NAME.test(p.key) : HEADER_NAME_PATTERN.test(p.key)), {
    error: "must be a valid HTTP header name (or, with in: query, a query parameter name without whitespace or control characters)",
    path: ["key"],
  })
  .refine((p) => !p.in || p.key, { error: "in needs key (the header or query parameter name)", path: ["key"] });

const subscriptionKeyAuth = z.strictObject({ header: headerName.optional() });

const circuitBreaker = z.strictObject({
  consecutiveErrors: positiveInt(10_000),
  ejectionTime: duration,
  maxEjectionPercent: z.int().min(1).max(100).optional(),
  maxConnections: positiveInt(1_000_000).optional(),
  maxPendingRequests: positiveInt(1_000_000).optional(),
  maxRequests: positiveInt(1_000_000).optional(),
});

export interface PolicyTypeDefinition {
  /** Canonical name, used for plug-ins and in everything the store hands to the translator. */
  type: string;
  /** Other names accepted in a RestApi's inline policies (WSO2 style). */
  aliases: string[];
  /** Major versions available; the last one is what an empty version means. */
  versions: string[];
  /** Which part of the system enforces it. */
  enforcedBy: "envoy" | "ext_authz";
  /** Whether it may be attached to a single operation (or only to a whole API). */
  operationLevel: boolean;
  description: string;
  schema: z.ZodType;
}

export const POLICY_TYPES: readonly PolicyTypeDefinition[] = [
  { type: "ipControl", aliases: ["ip-control"], versions: ["v1"], enforcedBy: "ext_authz", operationLevel: true, description: "Allow or deny client IPs and CIDR blocks, optionally per application.", schema: ipControl },
  { type: "trafficControl", aliases: ["traffic-control"], versions: ["v1"], enforcedBy: "ext_authz", operationLevel: true, description: "Request limits per API, per application and per user within a time unit.", schema: trafficControl },
  { type: "cors", aliases: [], versions: ["v1"], enforcedBy: "envoy", operationLevel: false, description: "Cross-origin resource sharing.", schema: cors },
  { type: "setHeaders", aliases: ["set-headers"], versions: ["v1"], enforcedBy: "envoy", operationLevel: true, description: "Add or overwrite request and response headers.", schema: setHeaders },
  { type: "removeHeaders", aliases: ["remove-headers"], versions: ["v1"], enforcedBy: "envoy", operationLevel: true, description: "Remove request and response headers.", schema: removeHeaders },
  { type: "appAuth", aliases: ["app-auth"], versions: ["v1"], enforcedBy: "ext_authz", operationLevel: false, description: "Application credentials: AppKey/AppSecret signatures and AppCodes.", schema: appAuth },
  { type: "apiKeyAuth", aliases: ["api-key-auth"], versions: ["v1"], enforcedBy: "ext_authz", operationLevel: false, description: "apip_ API keys in a header (default API-Key) or query parameter.", schema: apiKeyAuth },
  { type: "subscriptionKeyAuth", aliases: ["subscription-key-auth"], versions: ["v1"], enforcedBy: "ext_authz", operationLevel: false, description: "Subscription tokens in a header (default Subscription-Key), with the plan's limits.", schema: subscriptionKeyAuth },
  { type: "circuitBreaker", aliases: ["circuit-breaker"], versions: ["v1"], enforcedBy: "envoy", operationLevel: false, description: "Eject upstream hosts after consecutive errors; cap connections and requests.", schema: circuitBreaker },
];

const byName = new Map<string, PolicyTypeDefinition>();
for (const def of POLICY_TYPES) {
  byName.set(def.type, def);
  for (const alias of def.aliases) byName.set(alias, def);
}

export function findPolicyType(name: string): PolicyTypeDefinition | undefined {
  return byName.get(name);
}

export const POLICY_TYPE_NAMES = POLICY_TYPES.map((d) => d.type) as [string, ...string[]];
export const ALL_POLICY_NAMES = [...byName.keys()];

export type SetHeadersParams = z.infer<typeof setHeaders>;
export type RemoveHeadersParams = z.infer<typeof removeHeaders>;
export type CorsParams = z.infer<typeof cors>;
export type IpControlParams = z.infer<typeof ipControl>;
export type TrafficControlParams = z.infer<typeof trafficControl>;
export type AppAuthParams = z.infer<typeof appAuth>;
export type ApiKeyAuthParams = z.infer<typeof apiKeyAuth>;
export type SubscriptionKeyAuthParams = z.infer<typeof subscriptionKeyAuth>;
export type CircuitBreakerParams = z.infer<typeof circuitBreaker>;

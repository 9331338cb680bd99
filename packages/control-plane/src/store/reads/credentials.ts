import {
  DEFAULT_API_KEY_HEADER,
  DEFAULT_SUBSCRIPTION_KEY_HEADER,
  type ApiKeyAuthParams,
  type AppAuthParams,
  type IpControlParams,
  type Stage,
  type SubscriptionKeyAuthParams,
  type TrafficControlParams,
  type ProjectedSubscription,
  type ScopeConfig,
} from "@apigw/shared";
import type { Knex } from "knex";
import type { RestApiRequest } from "../../rest/schemas/restApi";
import { isoOrNull, json } from "../repositories/util";
import { apiPoliciesForStage, inlinePolicies, type EffectivePolicy, type PluginBindingRow } from "./effectivePolicies";
import { readSnapshot } from "./snapshot";

/** Which credentials an API accepts in a stage, with their settings resolved to defaults (the projected form). */
export type AcceptedCredentials = ScopeConfig["accepts"];

export interface ApiKeyCredential {
  name: string;
  /** SHA-256 hex of the key: the only form the store has. */
  hash: string;
  /** `grace` marks the previous value of a regenerated key, valid until `expiresAt`. */
  status: "active" | "expired" | "grace";
  expiresAt: string | null;
}

/** A subscription as the projection writes it, plus its token hash. */
export interface SubscriptionCredential extends ProjectedSubscription {
  tokenHash: string;
}

export interface ApplicationCredential {
  id: string;
  name: string;
  status: "ENABLED" | "DISABLED";
  appCodeHash: string;
  extInfo: string | null;
  /** AppSecrets sealed with the master key (AES-256-GCM, the AppKey as associated data). */
  keyPairs: { appKey: string; secretSealed: string }[];
  authorization: { id: string; expiresAt: string | null };
}

/** Everything ext_authz needs to decide requests for one API in one stage. */
export interface CredentialData {
  revision: number;
  apiId: string;
  stage: Stage;
  deployed: boolean;
  accepts: AcceptedCredentials;
  apiKeys: ApiKeyCredential[];
  subscriptions: SubscriptionCredential[];
  /** Applications authorized for this API and stage (expired authorizations included, flagged by expiresAt). */
  applications: ApplicationCredential[];
  ipControl?: IpControlParams;
  trafficControl?: TrafficControlParams;
  /** ext_authz policies set on single operations, keyed by `METHOD path` as declared. */
  operations: Record<string, { ipControl?: IpControlParams; trafficControl?: TrafficControlParams }>;
}

export function acceptedCredentials(policies: EffectivePolicy[]): AcceptedCredentials {
  const accepts: AcceptedCredentials = {};
  for (const policy of policies) {
    if (policy.type === "apiKeyAuth") {
      const p = policy.params as ApiKeyAuthParams;
      accepts.apiKey = p.key ? { in: p.in ?? "header", name: p.key } : { in: "header", name: p.header ?? DEFAULT_API_KEY_HEADER };
    } else if (policy.type === "subscriptionKeyAuth") {
      const p = policy.params as SubscriptionKeyAuthParams;
      accepts.subscriptionKey = { header: p.header ?? DEFAULT_SUBSCRIPTION_KEY_HEADER };
    } else if (policy.type === "appAuth") {
      const p = policy.params as AppAuthParams;
      accepts.appAuth = {
        signature: p.signature ?? true,
        signatureMethods: p.signatureMethods ?? ["HmacSHA256", "HmacSHA1"],
        appCode: p.appCode ?? "HEADER",
        forceNonceCheck: p.forceNonceCheck ?? false,
      };
    }
  }
  return accepts;
}

/** The API and stage pairs credential data exists for (for a full projection rebuild). */
export async function listCredentialScopes(knex: Knex): Promise<{ apiId: string; stage: Stage }[]> {
  const rows = (await knex("rest_apis").orderBy("handle").select("handle", "document")) as { handle: string; document: unknown }[];
  const scopes: { apiId: string; stage: Stage }[] = [];
  for (const row of rows) {
    scopes.push({ apiId: row.handle, stage: "RELEASE" });
    if (json<RestApiRequest>(row.document).spec.upstream.sandbox) scopes.push({ apiId: row.handle, stage: "TEST" });
  }
  return scopes;
}

/** One consistent read of the credential data of one API and stage; undefined for an unknown API. */
export async function loadCredentialData(knex: Knex, apiHandle: string, stage: Stage, now = new Date()): Promise<CredentialData | undefined> {
  return readSnapshot(knex, async (tx, revision) => {
    const api = (await tx("rest_apis").where({ handle: apiHandle }).first("id", "handle", "deployment_state", "document")) as
      | { id: string; handle: string; deployment_state: string; document: unknown }
      | undefined;
    if (!api) return undefined;
    const document = json<RestApiRequest>(api.document);
    const bindings = (await tx("plugin_bindings as b")
      .join("plugins as p", "p.id", "b.plugin_id")
      .where({ "b.api_id": api.id, "b.stage": stage })
      .select("b.api_id", "b.stage", "b.plugin_id", "p.name", "p.type", "p.params")) as PluginBindingRow[];
    const policies = apiPoliciesForStage(inlinePolicies(document.spec.policies, "api"), bindings);

    const keyRows = (await tx("api_keys")
      .where({ api_id: api.id, status: "active" })
      .orderBy("name")
      .select("name", "key_hash", "expires_at", "previous_key_hash", "previous_valid_until")) as {
      name: string;
      key_hash: string;
      expires_at: Date | null;
      previous_key_hash: string | null;
      previous_valid_until: Date | null;
    }[];
    const apiKeys: ApiKeyCredential[] = [];
    for (const key of keyRows) {
      const expired = key.expires_at !== null && new Date(key.expires_at) <= now;
      apiKeys.push({ name: key.name, hash: key.key_hash, status: expired ? "expired" : "active", expiresAt: isoOrNull(key.expires_at) });
      if (key.previous_key_hash && key.previous_valid_until && new Date(key.previous_valid_until) > now) {
        apiKeys.push({ name: key.name, hash: key.previous_key_hash, status: "grace", expiresAt: isoOrNull(key.previous_valid_until) });
      }
    }

    const subscriptionRows = (await tx("subscriptions as s")
      .leftJoin("subscription_plans as p", "p.id", "s.plan_id")
      .where("s.api_id", api.id)
      .orderBy("s.id")
      .select(
        "s.id",
        "s.token_hash",
        "s.status",
        "s.application_id",
        "p.id as plan_id",
        "p.plan_name",
        "p.status as plan_status",
        "p.throttle_limit_count",
        "p.throttle_limit_unit",
        "p.stop_on_quota_reach",
        "p.expiry_time",
      )) as Record<string, any>[];
    const subscriptions: SubscriptionCredential[] = subscriptionRows.map((s) => ({
      id: s.id,
      tokenHash: s.token_hash,
      status: s.status,
      applicationId: s.application_id ?? null,
      plan: s.plan_id
        ? {
            id: s.plan_id,
            name: s.plan_name,
            status: s.plan_status,
            throttleLimitCount: s.throttle_limit_count ?? null,
            throttleLimitUnit: s.throttle_limit_unit ?? null,
            stopOnQuotaReach: Boolean(s.stop_on_quota_reach),
            expiryTime: isoOrNull(s.expiry_time),
          }
        : null,
    }));

    const appRows = (await tx("authorizations as z")
      .join("applications as a", "a.id", "z.app_id")
      .where({ "z.api_id": api.id, "z.stage": stage })
      .orderBy("a.id")
      .select("a.id", "a.name", "a.status", "a.app_code_hash", "a.ext_info", "z.id as authorization_id", "z.expires_at")) as Record<string, any>[];
    const pairRows = appRows.length
      ? ((await tx("app_key_pairs")
          .whereIn("app_id", appRows.map((a) => a.id))
          .orderBy([{ column: "app_id" }, { column: "app_key" }])
          .select("app_id", "app_key", "secret_sealed")) as { app_id: string; app_key: string; secret_sealed: string }[])
      : [];
    const applications: ApplicationCredential[] = appRows.map((a) => ({
      id: a.id,
      name: a.name,
      status: a.status,
      appCodeHash: a.app_code_hash,
      extInfo: a.ext_info ?? null,
      keyPairs: pairRows.filter((p) => p.app_id === a.id).map((p) => ({ appKey: p.app_key, secretSealed: p.secret_sealed })),
      authorization: { id: a.authorization_id, expiresAt: isoOrNull(a.expires_at) },
    }));

    const operations: CredentialData["operations"] = {};
    for (const operation of document.spec.operations) {
      const own = inlinePolicies(operation.policies, "operation");
      const ip = own.find((p) => p.type === "ipControl");
      const traffic = own.find((p) => p.type === "trafficControl");
      if (ip || traffic) {
        operations[`${operation.method} ${operation.path}`] = {
          ...(ip ? { ipControl: ip.params as IpControlParams } : {}),
          ...(traffic ? { trafficControl: traffic.params as TrafficControlParams } : {}),
        };
      }
    }
    const ipControl = policies.find((p) => p.type === "ipControl")?.params as IpControlParams | undefined;
    const trafficControl = policies.find((p) => p.type === "trafficControl")?.params as TrafficControlParams | undefined;
    return {
      revision,
      apiId: api.handle,
      stage,
      deployed: api.deployment_state === "deployed",
      accepts: acceptedCredentials(policies),
      apiKeys,
      subscriptions,
      applications,
      ...(ipControl ? { ipControl } : {}),
      ...(trafficControl ? { trafficControl } : {}),
      operations,
    };
  });
}

import {
  directoryField,
  scopeField,
  type DirectoryEntry,
  type ProjectedApiKey,
  type ProjectedApplication,
  type ProjectedSubscription,
  type ScopeConfig,
} from "@apigw/shared";
import type { DirectoryApplication } from "../store/reads/applicationDirectory";
import type { CredentialData } from "../store/reads/credentials";

/*
 * The pure half of the projection: one API and stage's credential data (one consistent snapshot
 * of Postgres) → the fields of its scope in the credential store, exactly as ext_authz reads them
 * (`@apigw/shared` credentials/projectedScope.ts). The store only ever holds hashes of API keys,
 * subscription tokens and AppCodes, and AppSecrets sealed with the master key; there is no raw
 * credential in the data to begin with, and nothing here adds one.
 */

const KEY_STATUS_RANK: Record<ProjectedApiKey["status"], number> = { active: 0, grace: 1, expired: 2 };

/**
 * The scope's fields, keys in sorted order: the same data always gives the same fields and the
 * same JSON text (so a rebuild that changes nothing rewrites identical values).
 */
export function projectScope(data: CredentialData): Record<string, string> {
  const fields = new Map<string, string>();

  const config: ScopeConfig = {
    revision: data.revision,
    apiId: data.apiId,
    stage: data.stage,
    deployed: data.deployed,
    accepts: data.accepts,
    ...(data.ipControl ? { ipControl: data.ipControl } : {}),
    ...(data.trafficControl ? { trafficControl: data.trafficControl } : {}),
    operations: sortedObject(data.operations),
  };
  fields.set(scopeField.config, JSON.stringify(config));

  // Active keys and the previous values of regenerated keys (grace). Should two entries ever share
  // a hash, the one that admits the request wins over an expired one, deterministically.
  const keyStatus = new Map<string, ProjectedApiKey["status"]>();
  for (const key of data.apiKeys) {
    const field = scopeField.apiKey(key.hash);
    const seen = keyStatus.get(field);
    if (seen !== undefined && KEY_STATUS_RANK[seen] <= KEY_STATUS_RANK[key.status]) continue;
    keyStatus.set(field, key.status);
    const value: ProjectedApiKey = { name: key.name, status: key.status, expiresAt: key.expiresAt };
    fields.set(field, JSON.stringify(value));
  }

  for (const subscription of data.subscriptions) {
    const value: ProjectedSubscription = {
      id: subscription.id,
      status: subscription.status,
      applicationId: subscription.applicationId,
      plan: subscription.plan
        ? {
            id: subscription.plan.id,
            name: subscription.plan.name,
            status: subscription.plan.status,
            throttleLimitCount: subscription.plan.throttleLimitCount,
            throttleLimitUnit: subscription.plan.throttleLimitUnit,
            stopOnQuotaReach: subscription.plan.stopOnQuotaReach,
            expiryTime: subscription.plan.expiryTime,
          }
        : null,
    };
    fields.set(scopeField.subscription(subscription.tokenHash), JSON.stringify(value));
  }

  for (const app of data.applications) {
    const common: ProjectedApplication = {
      appId: app.id,
      name: app.name,
      status: app.status,
      extInfo: app.extInfo,
      authorizationExpiresAt: app.authorization.expiresAt,
    };
    fields.set(scopeField.appCode(app.appCodeHash), JSON.stringify(common));
    for (const pair of app.keyPairs) {
      const value: ProjectedApplication = { ...common, secretSealed: pair.secretSealed, appKey: pair.appKey };
      fields.set(scopeField.appKey(pair.appKey), JSON.stringify(value));
    }
  }

  return sortedObject(Object.fromEntries(fields));
}

/**
 * One application's fields in the application directory (`DIRECTORY_SCOPE`): `app:<AppKey>` per
 * key pair and `code:<sha256 of the AppCode>`, each `{appId, enabled}`, and `owner:<appId>`, the
 * sorted list of those field names (what a later update of the application removes when it no
 * longer has them). Identifiers and a hash only: no AppSecret, no AppCode.
 */
export function directoryFields(app: DirectoryApplication): Record<string, string> {
  const entry = JSON.stringify({ appId: app.id, enabled: app.enabled } satisfies DirectoryEntry);
  const owned = [directoryField.appCode(app.appCodeHash), ...app.appKeys.map((key) => directoryField.appKey(key))].sort(compare);
  const fields: Record<string, string> = {};
  for (const field of owned) fields[field] = entry;
  fields[directoryField.owner(app.id)] = JSON.stringify(owned);
  return fields;
}

/** The whole application directory, keys in sorted order (deterministic, like projectScope). */
export function projectDirectory(apps: readonly DirectoryApplication[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const app of apps) Object.assign(fields, directoryFields(app));
  return sortedObject(fields);
}

/** The field names an `owner:<appId>` value lists; anything unreadable lists none. */
export function ownedFields(raw: string | null | undefined): string[] {
  if (!raw) return [];
  try {
    const value = JSON.parse(raw) as unknown;
    return Array.isArray(value) ? value.filter((f): f is string => typeof f === "string") : [];
  } catch {
    return [];
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedObject<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => compare(a, b)));
}

import { STAGES, type Stage } from "../model/stages";

/**
 * The credential store between the control plane (the only writer: the projection) and the
 * ext_authz service (a reader). Production: Redis. Embedded default: in process. Same contract.
 *
 * Everything ext_authz needs for one API and stage is one *scope*: a hash whose fields are
 * `config` and one field per credential (see `scopeField`). A scope is replaced as a whole and
 * atomically, so a reader never sees half an update and a rebuild has no window where valid
 * credentials are missing.
 */
export interface ScopeRef {
  apiId: string;
  stage: Stage;
}

export interface CredentialStore {
  /** Atomically replaces the scope's fields with `fields` (fields not given are gone afterwards). */
  replaceScope(scope: ScopeRef, fields: Record<string, string>): Promise<void>;
  /**
   * Atomically sets the fields of `set` and removes those of `remove` (a field in both is set),
   * leaving the scope's other fields as they are. Only the application directory is written this
   * way (one application at a time, see DIRECTORY_SCOPE); API scopes are always replaced whole.
   */
  updateFields(scope: ScopeRef, set: Record<string, string>, remove: readonly string[]): Promise<void>;
  deleteScope(scope: ScopeRef): Promise<void>;
  /** Scopes of APIs (never the application directory). */
  listScopes(): Promise<ScopeRef[]>;
  /** Values of the given fields of a scope, `null` where absent (one round trip). */
  readFields(scope: ScopeRef, fields: readonly string[]): Promise<(string | null)[]>;
  /** Stores `key` if it is absent, with an expiry; true when it was absent (nonce replay check). */
  claimOnce(key: string, ttlSeconds: number): Promise<boolean>;
  /** Adds `by` to a counter that expires `ttlSeconds` after its first increment; returns the new count. */
  increment(key: string, ttlSeconds: number, by?: number): Promise<number>;
  /**
   * The writes of one check in one round trip: claims `nonce` like `claimOnce` when one is given
   * and, only when the claim succeeds (or no nonce is given), increments each counter by 1 like
   * `increment`. Returns whether the nonce was fresh and the counters' new values, in the order
   * given (empty when the nonce was already used: nothing is counted then). Optional: without
   * it, callers use claimOnce and increment, to the same effect in more round trips.
   */
  claimAndCount?(nonce: ExpiringKey | undefined, counters: readonly ExpiringKey[]): Promise<ClaimAndCountResult>;
  setMeta(name: string, value: string): Promise<void>;
  getMeta(name: string): Promise<string | null>;
  /**
   * The projection's completeness marker (see projection/README.md). A full rebuild calls
   * `beginProjection` with a token of its own before it writes anything, and
   * `completeProjection` with the same token when everything is written: the marker is set only
   * if the token is still there, i.e. the store did not lose its data (a restart, a flush) while
   * the rebuild ran; false otherwise (rebuild again). Incremental updates never set the marker,
   * so a store that came back empty stays unmarked until a full rebuild has completed.
   */
  beginProjection(token: string): Promise<void>;
  completeProjection(token: string, marker: string): Promise<boolean>;
  /** The marker of the last completed full projection; null when the store holds none (lost, or never projected). */
  projectionMarker(): Promise<string | null>;
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A key that expires `ttlSeconds` after it is created (a nonce, or a counter's first increment). */
export interface ExpiringKey {
  key: string;
  ttlSeconds: number;
}

export interface ClaimAndCountResult {
  /** False when the nonce was already claimed (then no counter was incremented). */
  fresh: boolean;
  /** New value of each counter, in the order given; empty when `fresh` is false. */
  counts: number[];
}

/**
 * claimAndCount's effect with claimOnce and increment, in more round trips: for a store without
 * claimAndCount, and for Redis Cluster (whose nonce and counter keys do not share a slot).
 */
export async function claimThenCount(
  store: Pick<CredentialStore, "claimOnce" | "increment">,
  nonce: ExpiringKey | undefined,
  counters: readonly ExpiringKey[],
): Promise<ClaimAndCountResult> {
  if (nonce && !(await store.claimOnce(nonce.key, nonce.ttlSeconds))) return { fresh: false, counts: [] };
  return { fresh: true, counts: await Promise.all(counters.map((c) => store.increment(c.key, c.ttlSeconds))) };
}

/** Key prefix of everything the project keeps in Redis. */
export const KEY_PREFIX = "apigw:";

/** Field names inside a scope. Credentials appear only as hashes, AppKeys as they are (identifiers, not secrets). */
export const scopeField = {
  config: "config",
  apiKey: (sha256: string) => `key:${sha256}`,
  subscription: (tokenSha256: string) => `sub:${tokenSha256}`,
  appKey: (appKey: string) => `app:${appKey}`,
  appCode: (codeSha256: string) => `code:${codeSha256}`,
} as const;

/**
 * The application directory: a reserved scope listing every application, authorized anywhere or
 * not, by its AppKeys (`app:<AppKey>`) and the SHA-256 of its AppCode (`code:<sha256>`), each
 * mapped to a `DirectoryEntry` (no secret), plus `owner:<appId>` → JSON array of the
 * application's other fields (so that an update can remove the ones it no longer has). ext_authz
 * reads it only when a presented AppKey or AppCode is not in the API's scope, to tell an unknown
 * credential (401) from a known application that is disabled or not authorized there (403).
 * Its apiId is no API handle (handles cannot contain `/`) and it has a key of its own
 * (`DIRECTORY_KEY`), so `listScopes` never lists it.
 */
export const DIRECTORY_SCOPE: ScopeRef = Object.freeze({ apiId: "/applications", stage: "RELEASE" });
/** The `{…}` hash tag keeps the directory and its staging copy in one Redis Cluster slot. */
export const DIRECTORY_KEY = `${KEY_PREFIX}directory:{applications}`;

/** Field names inside the application directory. */
export const directoryField = {
  appKey: scopeField.appKey,
  appCode: scopeField.appCode,
  owner: (appId: string) => `owner:${appId}`,
} as const;

/** The value of a directory's `app:` and `code:` fields. */
export interface DirectoryEntry {
  appId: string;
  /** The application's status is ENABLED. */
  enabled: boolean;
}

/**
 * Redis key of a scope. The `{…}` hash tag keeps a scope and its staging copy in one Redis
 * Cluster slot, so the atomic RENAME works there too. Handles cannot contain braces.
 */
export function scopeKey(scope: ScopeRef): string {
  if (scope.apiId === DIRECTORY_SCOPE.apiId) return DIRECTORY_KEY;
  return `${KEY_PREFIX}scope:{${scope.apiId}:${scope.stage}}`;
}

/** The inverse of scopeKey, built from the same prefix and stages (the directory's key does not match). */
const SCOPE_KEY_PATTERN = new RegExp(`^${KEY_PREFIX}scope:\\{(.+):(${STAGES.join("|")})\\}$`);

export function parseScopeKey(key: string): ScopeRef | undefined {
  const match = SCOPE_KEY_PATTERN.exec(key);
  return match ? { apiId: match[1]!, stage: match[2] as Stage } : undefined;
}

export const nonceKey = (appKey: string, nonce: string) => `${KEY_PREFIX}nonce:${appKey}:${nonce}`;
export const counterKey = (...parts: string[]) => `${KEY_PREFIX}count:${parts.join(":")}`;
export const metaKey = (name: string) => `${KEY_PREFIX}meta:${name}`;
/** The projection's completeness marker and its rebuild tokens; the `{…}` hash tag keeps them in one Redis Cluster slot. */
export const PROJECTION_MARKER_KEY = `${KEY_PREFIX}meta:{projection}:complete`;
export const projectionTokenKey = (token: string) => `${KEY_PREFIX}meta:{projection}:building:${token}`;
/** A rebuild token outlives any rebuild; one left by a crashed rebuild expires. */
export const PROJECTION_TOKEN_TTL_SECONDS = 24 * 3600;

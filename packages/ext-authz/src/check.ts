import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import {
  buildStringToSign,
  CA_HEADERS,
  checkTimestamp,
  claimThenCount,
  contentMd5Matches,
  HTTP_METHODS,
  invalidSignatureMessage,
  isFormContentType,
  nonceKey,
  OWN_LINE_HEADERS,
  parseRequestTarget,
  parseSignatureMethod,
  scopeField,
  sha256Hex,
  STAGES,
  toSignableRequest,
  verifySignature,
  CONTEXT_EXTENSIONS,
  DEFAULT_API_KEY_HEADER,
  DEFAULT_SUBSCRIPTION_KEY_HEADER,
  DIRECTORY_SCOPE,
  directoryField,
  headerSafe,
  type ClaimAndCountResult,
  type CredentialStore,
  type DirectoryEntry,
  type ExpiringKey,
  type IpControlParams,
  type Parameter,
  type ProjectedApiKey,
  type ProjectedApplication,
  type ProjectedSubscription,
  type ScopeConfig,
  type ScopeRef,
  type Stage,
  type TrafficControlParams,
} from "@apigw/shared";
import {
  APP_CODE_QUERY_PARAMETER,
  ERROR_HEADERS,
  lastFour,
  PARTIAL_BODY_HEADER,
  REQUEST_ID_HEADER,
  UPSTREAM,
  UPSTREAM_IDENTITY_HEADERS,
} from "./headers";
import { isLowerCase } from "./wire";
import { clientAddress, compileIpControl, ipAllowed, type CompiledIpControl } from "./ipControl";
import type { ExtAuthzMetrics } from "./metrics";
import { REASONS, type DenialReason, type ReasonName } from "./reasons";
import { SecretCache } from "./secretCache";
import { fixedWindow, planCounterKey, planWindow, trafficCounterKey } from "./windows";

/*
 * The decision of one ext_authz check, independent of gRPC: what the request carries in, an
 * allow or deny decision out. Reads the scope of the route's API and stage (config and the
 * credential fields the request presents) in one store round trip where possible; claims a
 * nonce and increments counters where the API's policies need it. Never throws: malformed input
 * is a 4xx decision, an unreachable store a 503 (or an allow with FAIL_OPEN), anything
 * unexpected a 500.
 */

export interface CheckInput {
  method: string;
  /** Path with query, as Envoy's `:path`. */
  path: string;
  host: string;
  /** Request headers, lower-case names. */
  headers: Readonly<Record<string, string>>;
  /** The body Envoy forwarded (raw bytes with pack_as_bytes, else text); undefined or empty when none. */
  body?: Uint8Array | string;
  /** The downstream peer address as Envoy reports it. */
  sourceAddress?: string;
  /** The route's context extensions (api_id, stage, operation). */
  contextExtensions: Readonly<Record<string, string>>;
  /**
   * Set when the client's bytes were not valid UTF-8 (wire.ts decodes them with U+FFFD): in a
   * header name or value (`header`) or the path (`path`), which are refused with 400; in a text
   * `body` (`body`), then given as bytes.
   */
  invalidUtf8?: "header" | "path" | "body";
}

export type CredentialType = "API_KEY" | "SUBSCRIPTION" | "SIGNATURE" | "APPCODE" | "NONE";

export interface Identity {
  credential: CredentialType;
  /** Who is calling: API key name, subscription id or application id. */
  consumer?: string;
  appId?: string;
  appName?: string;
  extInfo?: string | null;
  subscriptionId?: string;
  plan?: string;
}

export interface AllowDecision {
  allowed: true;
  requestId: string;
  /** Set on the request to the upstream, replacing what the client sent under these names. */
  upstreamHeaders: Record<string, string>;
  /** Request headers removed before the upstream sees the request (credentials, spoofed identity). */
  removeHeaders: string[];
  /** Query parameters removed before the upstream sees the request (credentials). */
  removeQueryParameters: string[];
  /** Added to the response the client receives. */
  responseHeaders: Record<string, string>;
  identity: Identity;
  /** True when allowed without a decision (store unreachable, FAIL_OPEN). */
  degraded?: boolean;
}

export interface DenyDecision {
  allowed: false;
  requestId: string;
  reason: ReasonName;
  status: number;
  code: string;
  message: string;
  /** Response headers: content type, X-Ca-Error-Message, X-Ca-Error-Code, X-Ca-Request-Id, WWW-Authenticate on 401, Retry-After on 429. */
  headers: Record<string, string>;
  /** `{"code":"...","message":"..."}` */
  body: string;
  credential: CredentialType;
}

export type Decision = AllowDecision | DenyDecision;

export interface CheckOptions {
  /** Allow requests when the store is unreachable (default false: deny with 503). */
  failOpen?: boolean;
  /** Take the client address from X-Forwarded-For unless a policy says otherwise (default false). */
  trustForwardedFor?: boolean;
  /** How long decrypted AppSecrets stay in memory (ms, default 5000; 0 = no cache). */
  secretCacheMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

export interface CheckerDeps {
  store: CredentialStore;
  masterKey: string;
  logger?: Logger;
  metrics?: ExtAuthzMetrics;
  options?: CheckOptions;
}

export interface Checker {
  check(input: CheckInput): Promise<Decision>;
  /** Drops cached configurations and secrets (tests, or after a master key change). */
  clearCaches(): void;
}

// Limits on what a check looks at; beyond them the request is refused with a 4xx.
const MAX_HEADER_COUNT = 1000;
const MAX_HEADER_BYTES = 256 * 1024;
const MAX_PATH_LENGTH = 16 * 1024;
const MAX_CREDENTIAL_LENGTH = 1024;
const MAX_APP_KEY_LENGTH = 256;
const MAX_NONCE_LENGTH = 256;
const MAX_CONTEXT_VALUE_LENGTH = 1024;
const NONCE_TTL_SECONDS = 15 * 60;
const MAX_CACHED_SCOPES = 10_000;
const KNOWN_METHODS = new Set<string>(HTTP_METHODS);
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const NONCE_PATTERN = /^[\x21-\x7e]+$/;
const APP_CODE_PATTERN = /^appcode[ \t]+(\S+)[ \t]*$/i;
/** The projection's default credential headers, lower-case as Envoy sends them (guesses before a scope is cached). */
const DEFAULT_API_KEY_HEADER_LC = DEFAULT_API_KEY_HEADER.toLowerCase();
const DEFAULT_SUBSCRIPTION_HEADER_LC = DEFAULT_SUBSCRIPTION_KEY_HEADER.toLowerCase();

/** A store call failed: the decision is 503 (or an allow with FAIL_OPEN). */
class StoreUnavailable extends Error {
  constructor(override readonly cause: unknown) {
    super("credential store unreachable");
  }
}

/** A counter a check increments, with the limit it is compared to. */
interface Counted extends ExpiringKey {
  limit: number;
  reason: ReasonName;
  /** End of the counter's window (ms since the epoch), for Retry-After. */
  end: number;
}

function storeFailed(error: unknown): never {
  throw new StoreUnavailable(error);
}

/** The promise of a store call; a call that throws synchronously gives a rejected promise. */
function invoke<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Data in the store that cannot be read (a projection bug): a 500. */
class CorruptScope extends Error {}

interface ScopePolicies {
  ip?: CompiledIpControl;
  traffic?: TrafficControlParams;
  /** `api` or `op=<operation, percent-encoded>`: whose counters a traffic limit uses (key-safe). */
  level: string;
}

interface CompiledScope {
  raw: string;
  config: ScopeConfig;
  api: ScopePolicies;
  operations: Map<string, ScopePolicies>;
  apiKeyHeader?: string;
  apiKeyQuery?: string;
  subscriptionHeader?: string;
  appCodeQuery: boolean;
  wwwAuthenticate: string;
}

function compileScope(raw: string): CompiledScope {
  let config: ScopeConfig;
  try {
    config = JSON.parse(raw) as ScopeConfig;
  } catch {
    throw new CorruptScope("the scope's config is not JSON");
  }
  if (!config || typeof config !== "object" || typeof config.accepts !== "object" || config.accepts === null) {
    throw new CorruptScope("the scope's config has no accepts");
  }
  const compileIp = (p: IpControlParams | undefined) => (p ? compileIpControl(p) : undefined);
  const api: ScopePolicies = { ip: compileIp(config.ipControl), traffic: config.trafficControl, level: "api" };
  const operations = new Map<string, ScopePolicies>();
  for (const [name, op] of Object.entries(config.operations ?? {})) {
    // An operation's own rule replaces the API's rule of the same plug-in type.
    operations.set(name, {
      ip: op.ipControl ? compileIp(op.ipControl) : api.ip,
      traffic: op.trafficControl ?? api.traffic,
      level: op.trafficControl ? `op=${encodeURIComponent(name)}` : "api",
    });
  }
  const accepts = config.accepts;
  const challenges: string[] = [];
  if (accepts.apiKey) {
    challenges.push(`ApiKey realm="apigw", ${accepts.apiKey.in}="${headerSafe(accepts.apiKey.name, 128)}"`);
  }
  if (accepts.subscriptionKey) challenges.push(`SubscriptionKey realm="apigw", header="${headerSafe(accepts.subscriptionKey.header, 128)}"`);
  if (accepts.appAuth?.signature) challenges.push(`CaSignature realm="apigw", methods="${accepts.appAuth.signatureMethods.join(",")}"`);
  if (accepts.appAuth && accepts.appAuth.appCode !== "DISABLE") challenges.push(`APPCODE realm="apigw"`);
  return {
    raw,
    config,
    api,
    operations,
    apiKeyHeader: accepts.apiKey?.in === "header" ? accepts.apiKey.name.toLowerCase() : undefined,
    apiKeyQuery: accepts.apiKey?.in === "query" ? accepts.apiKey.name : undefined,
    subscriptionHeader: accepts.subscriptionKey?.header.toLowerCase(),
    appCodeQuery: accepts.appAuth?.appCode === "HEADER_QUERY",
    wwwAuthenticate: challenges.length > 0 ? challenges.join(", ") : `APPCODE realm="apigw"`,
  };
}

function parseJson<T>(raw: string, what: string): T {
  try {
    return JSON.parse(raw) as T;
  } catch {
    throw new CorruptScope(`a ${what} entry is not JSON`);
  }
}

/** Query parameters of the request target, decoded on first use (at most once per check). */
class Query {
  private parsed: { ok: true; params: readonly Parameter[] } | { ok: false; error: string } | undefined;
  constructor(private readonly target: string) {}

  private parse() {
    if (!this.parsed) {
      const question = this.target.indexOf("?");
      if (question === -1) this.parsed = { ok: true, params: [] };
      else {
        const result = parseRequestTarget(this.target);
        this.parsed = result.ok ? { ok: true, params: result.value.query } : { ok: false, error: result.error };
      }
    }
    return this.parsed;
  }

  /** First value of `name`, or undefined; throws a Malformed when the query cannot be decoded. */
  get(name: string): string | undefined {
    const parsed = this.parse();
    if (!parsed.ok) throw new Malformed("invalidUri", parsed.error);
    return firstValue(parsed.params, name);
  }

  /** Like get, but undefined for a malformed query (used for guesses only). */
  peek(name: string): string | undefined {
    const parsed = this.parse();
    return parsed.ok ? firstValue(parsed.params, name) : undefined;
  }
}

function firstValue(params: readonly Parameter[], name: string): string | undefined {
  for (const [n, v] of params) if (n === name) return v;
  return undefined;
}

/** A 4xx decided deep inside a helper. */
class Malformed extends Error {
  constructor(
    readonly reason: ReasonName,
    readonly detail?: string,
  ) {
    super(detail ?? reason);
  }
}

/** The first non-empty value of a header, or undefined. */
function header(headers: Readonly<Record<string, string>>, name: string): string | undefined {
  const value = headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function isPast(iso: string | null | undefined, nowMs: number): boolean {
  if (!iso) return false;
  const at = Date.parse(iso);
  // An unreadable expiry is treated as expired: fail closed.
  return Number.isNaN(at) || at <= nowMs;
}

/** Headers with their own line in the string to sign, and the list of signed headers. */
const STRING_TO_SIGN_HEADERS = [...OWN_LINE_HEADERS, CA_HEADERS.signatureHeaders];

/**
 * The headers the string to sign is built from: those with a line of their own and those listed
 * in X-Ca-Signature-Headers, picked from the request's. With lower-case names (as Envoy sends
 * them, one entry per name) the string to sign is exactly the one built from all headers, at a
 * fraction of the cost; otherwise all headers are used.
 */
export function signingHeaders(headers: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  for (const name in headers) if (!isLowerCase(name)) return headers;
  const picked: Record<string, string> = Object.create(null);
  for (const name of STRING_TO_SIGN_HEADERS) pickHeader(picked, headers, name);
  const listed = picked[CA_HEADERS.signatureHeaders];
  // Every name signedHeaderNames() can return, lower-cased (extra or repeated picks are harmless:
  // the string to sign only looks up the names it signs).
  if (listed !== undefined) for (const entry of listed.split(",")) pickHeader(picked, headers, entry.trim().toLowerCase());
  return picked;
}

function pickHeader(to: Record<string, string>, from: Readonly<Record<string, string>>, name: string): void {
  if (!Object.hasOwn(from, name)) return;
  const value = from[name];
  if (typeof value === "string") to[name] = value;
}

function appCodeFromHeader(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const match = APP_CODE_PATTERN.exec(authorization);
  return match ? match[1] : undefined;
}

/**
 * A denial: the reason's status, code and message (or `extra.message`, made header-safe), with the
 * response headers and JSON body of "On denial" in the README. Pure: also used by server.ts.
 */
export function deny(
  requestId: string,
  name: ReasonName,
  credential: CredentialType,
  extra: { message?: string; scope?: CompiledScope; retryAfterSeconds?: number } = {},
): DenyDecision {
  const reason: DenialReason = REASONS[name];
  const message = headerSafe(extra.message ?? reason.message);
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    [ERROR_HEADERS.message]: message,
    [ERROR_HEADERS.code]: reason.code,
    [ERROR_HEADERS.requestId]: requestId,
  };
  if (reason.status === 401) headers["www-authenticate"] = extra.scope?.wwwAuthenticate ?? `APPCODE realm="apigw"`;
  if (extra.retryAfterSeconds !== undefined) headers["retry-after"] = String(Math.max(1, extra.retryAfterSeconds));
  else if (reason.status === 503) headers["retry-after"] = "1"; // the service will answer again shortly
  return {
    allowed: false,
    requestId,
    reason: name,
    status: reason.status,
    code: reason.code,
    message,
    headers,
    body: JSON.stringify({ code: reason.code, message }),
    credential,
  };
}

/**
 * The scope fields one check reads (config first, then the credentials it may present, each
 * once), their values once read, and the SHA-256 of the credential values hashed on the way.
 */
class ScopeReads {
  readonly fields: string[] = [scopeField.config];
  values: (string | null)[] = [];
  private hashed: string[] = [];

  /** SHA-256 (hex) of a credential, computed once per value. */
  hashOf(value: string): string {
    for (let i = 0; i < this.hashed.length; i += 2) if (this.hashed[i] === value) return this.hashed[i + 1]!;
    const hash = sha256Hex(value);
    this.hashed.push(value, hash);
    return hash;
  }

  add(field: string): void {
    if (!this.fields.includes(field)) this.fields.push(field);
  }

  addCredential(value: string | undefined, field: (hash: string) => string): void {
    if (value && value.length <= MAX_CREDENTIAL_LENGTH) this.add(field(this.hashOf(value)));
  }

  /** Value of a field of the first read (null when absent). */
  get(field: string): string | null {
    const index = this.fields.indexOf(field);
    return index === -1 ? null : (this.values[index] ?? null);
  }
}

export function createChecker(deps: CheckerDeps): Checker {
  const { store, metrics } = deps;
  const logger = deps.logger;
  const options = deps.options ?? {};
  const now = options.now ?? Date.now;
  const secrets = new SecretCache(deps.masterKey, options.secretCacheMs ?? 5000);
  const scopes = new Map<string, CompiledScope>();
  let lastStoreWarning = 0;
  let suppressedStoreWarnings = 0;
  let lastContextWarning = 0;
  // Metric children by label values: looked up once, not hashed on every check.
  const checkCounters = new Map<string, { inc(): void }>();
  let allowedDuration: { observe(seconds: number): void } | undefined;
  let deniedDuration: { observe(seconds: number): void } | undefined;

  /** A store call's result; its failure becomes StoreUnavailable (a 503, or an allow with FAIL_OPEN). */
  function fromStore<T>(pending: Promise<T>): Promise<T> {
    return pending.catch(storeFailed);
  }

  /** A scope field: from the first read when it was guessed, else read now. */
  async function fieldValue(reads: ScopeReads, scopeRef: ScopeRef, field: string): Promise<string | null> {
    const index = reads.fields.indexOf(field);
    if (index !== -1) return reads.values[index] ?? null;
    const [value] = await fromStore(invoke(() => store.readFields(scopeRef, [field])));
    reads.fields.push(field);
    reads.values.push(value ?? null);
    return value ?? null;
  }

  /**
   * Whether the store holds a complete projection (its marker). Read only where the answer
   * depends on data being absent (no scope, an AppKey or AppCode in no directory entry), so an
   * allowed request costs nothing more.
   */
  async function projectionComplete(): Promise<boolean> {
    return (await fromStore(invoke(() => store.projectionMarker()))) !== null;
  }

  /** The store's claimAndCount, or the same with claimOnce and increment for a store without it. */
  function claimAndCount(nonce: ExpiringKey | undefined, counters: readonly ExpiringKey[]): Promise<ClaimAndCountResult> {
    if (store.claimAndCount) return store.claimAndCount(nonce, counters);
    return claimThenCount(store, nonce, counters);
  }

  /** The compiled configuration of a scope (`<api>\0<stage>`), compiled again only when it changed. */
  function compiled(id: string, raw: string): CompiledScope {
    const cached = scopes.get(id);
    if (cached && cached.raw === raw) return cached;
    const fresh = compileScope(raw);
    if (!cached && scopes.size >= MAX_CACHED_SCOPES) {
      const oldest = scopes.keys().next();
      if (!oldest.done) scopes.delete(oldest.value);
    }
    scopes.set(id, fresh);
    return fresh;
  }

  function requestIdOf(headers: Readonly<Record<string, string>>): string {
    const given = headers[REQUEST_ID_HEADER];
    return typeof given === "string" && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
  }

  function allow(requestId: string, identity: Identity, removeHeaders: string[], removeQuery: string[], extra: Record<string, string> = {}): AllowDecision {
    const upstream: Record<string, string> = { [UPSTREAM.credential]: identity.credential, ...extra };
    if (identity.consumer) upstream[UPSTREAM.consumer] = headerSafe(identity.consumer, 256);
    if (identity.appId) upstream[UPSTREAM.appId] = headerSafe(identity.appId, 256);
    if (identity.extInfo) upstream[UPSTREAM.appExtInfo] = headerSafe(identity.extInfo);
    if (identity.subscriptionId) upstream[UPSTREAM.subscriptionId] = headerSafe(identity.subscriptionId, 256);
    if (identity.plan) upstream[UPSTREAM.plan] = headerSafe(identity.plan, 256);
    const remove = [...removeHeaders];
    for (const name of UPSTREAM_IDENTITY_HEADERS) if (!(name in upstream) && !remove.includes(name)) remove.push(name);
    return {
      allowed: true,
      requestId,
      upstreamHeaders: upstream,
      removeHeaders: remove,
      removeQueryParameters: removeQuery,
      responseHeaders: { [ERROR_HEADERS.requestId]: requestId },
      identity,
    };
  }

  function warnStore(error: unknown, failOpen: boolean): void {
    const t = now();
    if (t - lastStoreWarning < 5000) {
      suppressedStoreWarnings += 1;
      return;
    }
    lastStoreWarning = t;
    const suppressed = suppressedStoreWarnings;
    suppressedStoreWarnings = 0;
    logger?.warn(
      { err: { message: (error as Error)?.message ?? String(error) }, suppressed, failOpen },
      failOpen ? "credential store unreachable: allowing requests (FAIL_OPEN)" : "credential store unreachable: denying requests with 503",
    );
  }

  async function decide(input: CheckInput, requestId: string): Promise<Decision> {
    const headers = input.headers;

    // 1. The request's shape.
    if (typeof input.method !== "string" || !KNOWN_METHODS.has(input.method)) {
      return deny(requestId, "unsupportedMethod", "NONE", { message: `Unsupported Method \`${String(input.method).slice(0, 32)}\`` });
    }
    let headerCount = 0;
    let headerBytes = 0;
    for (const name in headers) {
      headerCount += 1;
      const value = headers[name];
      headerBytes += name.length + (typeof value === "string" ? value.length : 0);
    }
    if (headerCount > MAX_HEADER_COUNT || headerBytes > MAX_HEADER_BYTES) return deny(requestId, "headersTooLarge", "NONE");
    if (typeof input.path !== "string" || input.path.length > MAX_PATH_LENGTH) return deny(requestId, "uriTooLong", "NONE");
    if (!input.path.startsWith("/")) return deny(requestId, "invalidUri", "NONE", { message: "Invalid Request Uri: the path must start with /" });
    if (input.invalidUtf8 === "path") return deny(requestId, "invalidUri", "NONE", { message: "Invalid Request Uri: not valid UTF-8" });
    if (input.invalidUtf8 === "header") return deny(requestId, "invalidHeader", "NONE");

    const apiId = input.contextExtensions[CONTEXT_EXTENSIONS.apiId];
    const stage = input.contextExtensions[CONTEXT_EXTENSIONS.stage];
    if (!apiId || apiId.length > MAX_CONTEXT_VALUE_LENGTH || !stage || !(STAGES as readonly string[]).includes(stage)) {
      if (now() - lastContextWarning > 5000) {
        lastContextWarning = now();
        logger?.warn({ contextExtensions: Object.keys(input.contextExtensions) }, "check without a valid api_id/stage context extension (route misconfigured?)");
      }
      return deny(requestId, "noApiContext", "NONE");
    }
    const operation = input.contextExtensions[CONTEXT_EXTENSIONS.operation];
    const scopeRef: ScopeRef = { apiId, stage: stage as Stage };
    const query = new Query(input.path);

    // 2. One read: config plus every credential field the request may present (guessed from the
    //    last configuration seen for this scope, or the defaults); a second read only on a wrong guess.
    const scopeId = `${apiId}\u0000${stage}`;
    const guess = scopes.get(scopeId);
    const reads = new ScopeReads();
    if (guess) {
      if (guess.apiKeyHeader) reads.addCredential(header(headers, guess.apiKeyHeader), scopeField.apiKey);
      if (guess.apiKeyQuery) reads.addCredential(query.peek(guess.apiKeyQuery), scopeField.apiKey);
      if (guess.subscriptionHeader) reads.addCredential(header(headers, guess.subscriptionHeader), scopeField.subscription);
    } else {
      reads.addCredential(header(headers, DEFAULT_API_KEY_HEADER_LC), scopeField.apiKey);
      reads.addCredential(header(headers, DEFAULT_SUBSCRIPTION_HEADER_LC), scopeField.subscription);
    }
    const appKeyHeader = header(headers, CA_HEADERS.key);
    if (appKeyHeader && appKeyHeader.length <= MAX_APP_KEY_LENGTH) reads.add(scopeField.appKey(appKeyHeader));
    const appCodeInHeader = appCodeFromHeader(header(headers, "authorization"));
    reads.addCredential(appCodeInHeader, scopeField.appCode);
    if (!guess || guess.appCodeQuery) reads.addCredential(query.peek(APP_CODE_QUERY_PARAMETER), scopeField.appCode);

    reads.values = await fromStore(invoke(() => store.readFields(scopeRef, reads.fields)));

    const rawConfig = reads.get(scopeField.config);
    if (!rawConfig) {
      // No scope: an unknown API (404), unless the store holds no complete projection (a Redis
      // that came back empty, being rebuilt): then the answer is not known yet (503, retryable).
      if (!(await projectionComplete())) return deny(requestId, "projectionIncomplete", "NONE");
      return deny(requestId, "apiNotFound", "NONE");
    }
    const scope = compiled(scopeId, rawConfig);
    const config = scope.config;
    if (config.deployed === false) return deny(requestId, "apiNotDeployed", "NONE");
    const policies = (operation && scope.operations.get(operation)) || scope.api;
    const nowMs = now();

    // 3. The credential. The first one presented wins, in this order: API key, subscription key,
    //    signed request (X-Ca-Key / X-Ca-Signature), AppCode; no fallback to another if it fails.
    const accepts = config.accepts;
    const apiKeyValue = scope.apiKeyHeader
      ? header(headers, scope.apiKeyHeader)
      : scope.apiKeyQuery
        ? query.get(scope.apiKeyQuery) || undefined
        : undefined;
    const subscriptionValue = scope.subscriptionHeader ? header(headers, scope.subscriptionHeader) : undefined;
    const appAuth = accepts.appAuth;
    let appCode: { value: string; from: "header" | "query" } | undefined;
    if (appAuth && appAuth.appCode !== "DISABLE") {
      if (appCodeInHeader) appCode = { value: appCodeInHeader, from: "header" };
      else if (appAuth.appCode === "HEADER_QUERY") {
        const fromQuery = query.get(APP_CODE_QUERY_PARAMETER);
        if (fromQuery) appCode = { value: fromQuery, from: "query" };
      }
    }
    const signaturePresented = header(headers, CA_HEADERS.signature) !== undefined;
    const signed = Boolean(appAuth?.signature) && (signaturePresented || (appKeyHeader !== undefined && !appCode));

    const removeHeaders: string[] = [];
    const removeQuery: string[] = [];
    let identity: Identity;
    let specialsAppKey: string | undefined;
    let subscription: ProjectedSubscription | undefined;
    // Signed requests: the nonce to claim, and a refusal of the application that is reported only
    // once the nonce is claimed (the order of app-signature.md: nonce, then the application).
    let nonceClaim: ExpiringKey | undefined;
    let refusedAfterNonce: ReasonName | undefined;

    if (apiKeyValue !== undefined) {
      // 3a. apip_ API key.
      if (scope.apiKeyHeader) removeHeaders.push(scope.apiKeyHeader);
      else removeQuery.push(scope.apiKeyQuery!);
      if (apiKeyValue.length > MAX_CREDENTIAL_LENGTH) return deny(requestId, "invalidApiKey", "API_KEY", { scope });
      const raw = await fieldValue(reads, scopeRef, scopeField.apiKey(reads.hashOf(apiKeyValue)));
      if (!raw) return deny(requestId, "invalidApiKey", "API_KEY", { scope });
      const key = parseJson<ProjectedApiKey>(raw, "key");
      if (key.status === "expired" || isPast(key.expiresAt, nowMs) || (key.status === "grace" && !key.expiresAt)) {
        return deny(requestId, "apiKeyExpired", "API_KEY", { scope });
      }
      identity = { credential: "API_KEY", consumer: key.name };
      logger?.debug({ requestId, apiId, keySuffix: lastFour(apiKeyValue), keyName: key.name }, "API key accepted");
    } else if (subscriptionValue !== undefined) {
      // 3b. Subscription key.
      removeHeaders.push(scope.subscriptionHeader!);
      if (subscriptionValue.length > MAX_CREDENTIAL_LENGTH) return deny(requestId, "invalidSubscriptionKey", "SUBSCRIPTION", { scope });
      const raw = await fieldValue(reads, scopeRef, scopeField.subscription(reads.hashOf(subscriptionValue)));
      if (!raw) return deny(requestId, "invalidSubscriptionKey", "SUBSCRIPTION", { scope });
      subscription = parseJson<ProjectedSubscription>(raw, "subscription");
      if (subscription.status === "REVOKED") return deny(requestId, "subscriptionRevoked", "SUBSCRIPTION");
      if (subscription.status !== "ACTIVE") return deny(requestId, "subscriptionInactive", "SUBSCRIPTION");
      const plan = subscription.plan;
      if (plan) {
        if (plan.status !== "ACTIVE") return deny(requestId, "planInactive", "SUBSCRIPTION");
        if (isPast(plan.expiryTime, nowMs)) return deny(requestId, "planExpired", "SUBSCRIPTION");
      }
      identity = {
        credential: "SUBSCRIPTION",
        consumer: subscription.id,
        subscriptionId: subscription.id,
        appId: subscription.applicationId ?? undefined,
        plan: plan?.name,
      };
    } else if (signed) {
      // 3c. Signed request: the checks in the order of app-signature.md.
      const appKey = appKeyHeader;
      if (!appKey || appKey.length > MAX_APP_KEY_LENGTH) return deny(requestId, "invalidAppKey", "SIGNATURE", { scope });
      const raw = await fieldValue(reads, scopeRef, scopeField.appKey(appKey));
      if (!raw) return deny(requestId, await notInScope(directoryField.appKey(appKey), "invalidAppKey"), "SIGNATURE", { scope });
      const app = parseJson<ProjectedApplication>(raw, "application");
      if (!app.secretSealed) {
        logger?.warn({ apiId, stage, appId: app.appId }, "application entry without a sealed secret");
        return deny(requestId, "invalidAppKey", "SIGNATURE", { scope });
      }
      const timestamp = checkTimestamp(headers[CA_HEADERS.timestamp], nowMs);
      if (timestamp === "Invalid Timestamp") return deny(requestId, "invalidTimestamp", "SIGNATURE");
      if (timestamp === "Timestamp Expired") return deny(requestId, "timestampExpired", "SIGNATURE");
      const method = parseSignatureMethod(headers[CA_HEADERS.signatureMethod]);
      if (!method || !(appAuth!.signatureMethods ?? []).includes(method)) return deny(requestId, "invalidSignatureMethod", "SIGNATURE");
      const partialBody = headers[PARTIAL_BODY_HEADER] === "true";
      const md5 = headers[CA_HEADERS.contentMd5];
      const form = isFormContentType(headers["content-type"]);
      if (partialBody && (md5 !== undefined || form)) return deny(requestId, "bodyIncomplete", "SIGNATURE");
      if (md5 !== undefined && !contentMd5Matches(md5, input.body ?? "")) return deny(requestId, "invalidContentMd5", "SIGNATURE");
      const signable = toSignableRequest({ method: input.method, target: input.path, headers: signingHeaders(headers), body: input.body });
      if (!signable.ok) {
        const isBody = signable.error.startsWith("invalid form body");
        return deny(requestId, isBody ? "invalidBody" : "invalidUri", "SIGNATURE", {
          message: `${REASONS[isBody ? "invalidBody" : "invalidUri"].message}: ${signable.error}`,
        });
      }
      const stringToSign = buildStringToSign(signable.value);
      const secret = secrets.get(appKey, app.secretSealed);
      if (secret === undefined) {
        logger?.error({ apiId, stage, appId: app.appId }, "AppSecret cannot be decrypted with the master key");
        return deny(requestId, "secretUnusable", "SIGNATURE");
      }
      if (!verifySignature(stringToSign, secret, method, headers[CA_HEADERS.signature])) {
        logger?.debug({ requestId, apiId, appId: app.appId, signatureSuffix: lastFour(headers[CA_HEADERS.signature]) }, "signature mismatch");
        return deny(requestId, "invalidSignature", "SIGNATURE", { message: invalidSignatureMessage(stringToSign) });
      }
      const nonce = header(headers, CA_HEADERS.nonce);
      if (nonce === undefined) {
        if (appAuth!.forceNonceCheck) return deny(requestId, "nonceMissing", "SIGNATURE");
      } else {
        if (nonce.length > MAX_NONCE_LENGTH || !NONCE_PATTERN.test(nonce)) return deny(requestId, "invalidNonce", "SIGNATURE");
        // Claimed below, in the same store round trip as the counters (nothing is counted for a replay).
        nonceClaim = { key: nonceKey(appKey, nonce), ttlSeconds: NONCE_TTL_SECONDS };
      }
      // Decided now, reported after the nonce (a replay is refused as a replay, as before).
      refusedAfterNonce = applicationRefusal(app, nowMs);
      identity = { credential: "SIGNATURE", consumer: app.appId, appId: app.appId, appName: app.name, extInfo: app.extInfo };
      specialsAppKey = appKey;
    } else if (appCode) {
      // 3d. AppCode.
      if (appCode.from === "header") removeHeaders.push("authorization");
      else removeQuery.push(APP_CODE_QUERY_PARAMETER);
      if (appCode.value.length > MAX_CREDENTIAL_LENGTH) return deny(requestId, "invalidAppCode", "APPCODE", { scope });
      const raw = await fieldValue(reads, scopeRef, scopeField.appCode(reads.hashOf(appCode.value)));
      if (!raw) return deny(requestId, await notInScope(directoryField.appCode(reads.hashOf(appCode.value)), "invalidAppCode"), "APPCODE", { scope });
      const app = parseJson<ProjectedApplication>(raw, "application");
      const refused = applicationRefusal(app, nowMs);
      if (refused) return deny(requestId, refused, "APPCODE");
      identity = { credential: "APPCODE", consumer: app.appId, appId: app.appId, appName: app.name, extInfo: app.extInfo };
      logger?.debug({ requestId, apiId, appId: app.appId, appCodeSuffix: lastFour(appCode.value) }, "AppCode accepted");
    } else if (accepts.apiKey || accepts.subscriptionKey || appAuth) {
      return deny(requestId, "missingCredential", "NONE", { scope, message: appAuth ? "Invalid AppKey" : undefined });
    } else {
      identity = { credential: "NONE" };
    }

    // 4. ipControl (before counting, so that a refused address does not use up anybody's limits).
    let ipRefused = false;
    if (policies.ip && !refusedAfterNonce) {
      const trust = policies.ip.trustForwardedFor ?? options.trustForwardedFor ?? false;
      const address = clientAddress(input.sourceAddress, headers["x-forwarded-for"], trust, policies.ip.forwardedForDepth);
      if (!ipAllowed(policies.ip, address, identity.appId)) {
        logger?.debug({ requestId, apiId, address, appId: identity.appId }, "IP not allowed");
        ipRefused = true;
      }
    }

    // 5. trafficControl and the subscription plan's quota: every counter that applies, unless the
    //    request is already refused (then nothing is counted).
    const counted: Counted[] = [];
    const traffic = policies.traffic;
    const plan = subscription?.plan;
    if (!refusedAfterNonce && !ipRefused) {
      if (traffic) {
        const window = fixedWindow(traffic.unit, nowMs);
        const level = policies.level;
        if (traffic.apiLimit) {
          const key = trafficCounterKey(apiId, stage, level, "api", undefined, traffic.unit, window.start);
          counted.push({ key, ttlSeconds: window.ttlSeconds, limit: traffic.apiLimit, reason: "apiThrottled", end: window.end });
        }
        if (identity.appId) {
          const special = traffic.specials?.find((s) => s.type === "APP" && (s.key === identity.appId || (specialsAppKey !== undefined && s.key === specialsAppKey)));
          const limit = special?.limit ?? traffic.appLimit;
          if (limit) {
            const key = trafficCounterKey(apiId, stage, level, "app", identity.appId, traffic.unit, window.start);
            counted.push({ key, ttlSeconds: window.ttlSeconds, limit, reason: "appThrottled", end: window.end });
          }
        }
        if (identity.consumer) {
          const special = traffic.specials?.find((s) => s.type === "USER" && s.key === identity.consumer);
          const limit = special?.limit ?? traffic.userLimit;
          const user = `${identity.credential}:${identity.consumer}`;
          if (limit) {
            const key = trafficCounterKey(apiId, stage, level, "user", user, traffic.unit, window.start);
            counted.push({ key, ttlSeconds: window.ttlSeconds, limit, reason: "userThrottled", end: window.end });
          }
        }
      }
      if (subscription && plan && plan.throttleLimitCount && plan.throttleLimitUnit) {
        const window = planWindow(plan.throttleLimitUnit, nowMs);
        counted.push({ key: planCounterKey(subscription.id, plan.throttleLimitUnit, window.start), ttlSeconds: window.ttlSeconds, limit: plan.throttleLimitCount, reason: "quotaExceeded", end: window.end });
      }
    }

    // The store writes of this check (nonce claim, counters) in one round trip.
    let counts: number[] = [];
    if (nonceClaim || counted.length > 0) {
      const result = await fromStore(invoke(() => claimAndCount(nonceClaim, counted)));
      if (!result.fresh) return deny(requestId, "nonceUsed", "SIGNATURE");
      counts = result.counts;
    }
    if (refusedAfterNonce) return deny(requestId, refusedAfterNonce, "SIGNATURE");
    if (ipRefused) return deny(requestId, "ipNotAllowed", identity.credential);

    // Counted together, compared in order: API, application, user, plan.
    const extra: Record<string, string> = {};
    for (let i = 0; i < counted.length; i++) {
      const c = counted[i]!;
      if (counts[i]! <= c.limit) continue;
      if (c.reason === "quotaExceeded" && plan && !plan.stopOnQuotaReach) {
        extra[UPSTREAM.quotaExceeded] = "true";
        continue;
      }
      return deny(requestId, c.reason, identity.credential, { retryAfterSeconds: Math.ceil((c.end - nowMs) / 1000) });
    }

    return allow(requestId, identity, removeHeaders, removeQuery, extra);
  }

  /**
   * Why an AppKey or AppCode that is not in the API's scope is refused. Only this deny path reads
   * the application directory (one more HGET), so allowed requests cost what they did: an
   * application it does not know is `unknown` (401); a known one is 403 `App Disabled` when it
   * is disabled, else 403 `Unauthorized` (no authorization for this API and stage). The
   * signature is not verified for this answer: AppKeys are identifiers, not secrets, and the
   * request is refused whatever it proves. Should the directory read fail, the answer is
   * `unknown`, as without a directory (the request is refused either way, never allowed).
   */
  async function notInScope(field: string, unknown: "invalidAppKey" | "invalidAppCode"): Promise<ReasonName> {
    let raw: string | null | undefined;
    try {
      [raw] = await invoke(() => store.readFields(DIRECTORY_SCOPE, [field]));
      // The directory is rebuilt after the scopes: while the projection is incomplete, a miss
      // may only mean "not rebuilt yet".
      if (!raw && !(await projectionComplete())) return "projectionIncomplete";
    } catch (error) {
      metrics?.storeErrors.inc();
      logger?.debug({ err: { message: (error as Error)?.message } }, "application directory unreadable; answering 401");
      return unknown;
    }
    if (!raw) return unknown;
    const entry = parseJson<DirectoryEntry | null>(raw, "directory");
    if (typeof entry !== "object" || entry === null) throw new CorruptScope("a directory entry is not an object");
    return entry.enabled === true ? "appUnauthorized" : "appDisabled";
  }

  function applicationRefusal(app: ProjectedApplication, nowMs: number): ReasonName | undefined {
    if (app.status !== "ENABLED") return "appDisabled";
    if (isPast(app.authorizationExpiresAt, nowMs)) return "authorizationExpired";
    return undefined;
  }

  async function check(input: CheckInput): Promise<Decision> {
    const started = performance.now();
    const headers = input && typeof input.headers === "object" && input.headers !== null ? input.headers : {};
    const requestId = requestIdOf(headers);
    let decision: Decision;
    try {
      const usable = input && input.headers === headers && input.contextExtensions ? input : { ...input, headers, contextExtensions: input?.contextExtensions ?? {} };
      decision = await decide(usable, requestId);
    } catch (error) {
      if (error instanceof StoreUnavailable) {
        const failOpen = options.failOpen === true;
        metrics?.storeErrors.inc();
        warnStore(error.cause, failOpen);
        if (failOpen) {
          metrics?.failOpen.inc();
          decision = { ...allow(requestId, { credential: "NONE" }, [], [], { [UPSTREAM.degraded]: "true" }), degraded: true };
        } else {
          decision = deny(requestId, "storeUnavailable", "NONE");
        }
      } else if (error instanceof Malformed) {
        decision = deny(requestId, error.reason, "NONE", {
          message: error.detail ? `${REASONS[error.reason].message}: ${error.detail}` : undefined,
        });
      } else {
        logger?.error({ err: { message: (error as Error)?.message, name: (error as Error)?.name }, requestId }, "check failed unexpectedly");
        decision = deny(requestId, "internalError", "NONE");
      }
    }
    if (metrics) {
      const allowed = decision.allowed;
      const code = allowed ? "" : decision.code;
      const credential = allowed ? decision.identity.credential : decision.credential;
      const id = `${allowed ? "a" : "d"}\u0000${code}\u0000${credential}`;
      let counter = checkCounters.get(id);
      if (!counter) {
        counter = metrics.checks.labels({ result: allowed ? "allowed" : "denied", code, credential });
        checkCounters.set(id, counter);
      }
      counter.inc();
      const duration = allowed
        ? (allowedDuration ??= metrics.duration.labels({ result: "allowed" }))
        : (deniedDuration ??= metrics.duration.labels({ result: "denied" }));
      duration.observe((performance.now() - started) / 1000);
    }
    if (!decision.allowed && logger?.isLevelEnabled("debug")) {
      logger.debug({ requestId, code: decision.code, status: decision.status, api: input?.contextExtensions?.[CONTEXT_EXTENSIONS.apiId] }, "check denied");
    }
    return decision;
  }

  return {
    check,
    clearCaches() {
      scopes.clear();
      secrets.clear();
    },
  };
}

import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import {
  buildStringToSign,
  CA_HEADERS,
  checkTimestamp,
  contentMd5Matches,
  HTTP_METHODS,
  invalidSignatureMessage,
  isFormContentType,
  nonceKey,
  parseRequestTarget,
  parseSignatureMethod,
  scopeField,
  sha256Hex,
  STAGES,
  toSignableRequest,
  verifySignature,
  CONTEXT_EXTENSIONS,
  type CredentialStore,
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
  headerSafe,
  lastFour,
  PARTIAL_BODY_HEADER,
  REQUEST_ID_HEADER,
  UPSTREAM,
  UPSTREAM_IDENTITY_HEADERS,
} from "./headers";
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
const DEFAULT_API_KEY_HEADER = "api-key";
const DEFAULT_SUBSCRIPTION_HEADER = "subscription-key";

/** A store call failed: the decision is 503 (or an allow with FAIL_OPEN). */
class StoreUnavailable extends Error {
  constructor(override readonly cause: unknown) {
    super("credential store unreachable");
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

/** Lazily decoded query parameters of the request target; `undefined` value = malformed query. */
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
    for (const [n, v] of parsed.params) if (n === name) return v;
    return undefined;
  }

  /** Like get, but undefined for a malformed query (used for guesses only). */
  peek(name: string): string | undefined {
    const parsed = this.parse();
    if (!parsed.ok) return undefined;
    for (const [n, v] of parsed.params) if (n === name) return v;
    return undefined;
  }
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

function appCodeFromHeader(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const match = APP_CODE_PATTERN.exec(authorization);
  return match ? match[1] : undefined;
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

  async function fromStore<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw new StoreUnavailable(error);
    }
  }

  function compiled(apiId: string, stage: Stage, raw: string): CompiledScope {
    const id = `${apiId}\u0000${stage}`;
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

  function deny(
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
    const guess = scopes.get(`${apiId}\u0000${stage}`);
    const hashes = new Map<string, string>();
    const hashOf = (value: string) => {
      let h = hashes.get(value);
      if (!h) {
        h = sha256Hex(value);
        hashes.set(value, h);
      }
      return h;
    };
    const wanted = new Set<string>([scopeField.config]);
    const addCredentialField = (value: string | undefined, field: (hash: string) => string) => {
      if (value && value.length <= MAX_CREDENTIAL_LENGTH) wanted.add(field(hashOf(value)));
    };
    if (guess) {
      if (guess.apiKeyHeader) addCredentialField(header(headers, guess.apiKeyHeader), scopeField.apiKey);
      if (guess.apiKeyQuery) addCredentialField(query.peek(guess.apiKeyQuery), scopeField.apiKey);
      if (guess.subscriptionHeader) addCredentialField(header(headers, guess.subscriptionHeader), scopeField.subscription);
    } else {
      addCredentialField(header(headers, DEFAULT_API_KEY_HEADER), scopeField.apiKey);
      addCredentialField(header(headers, DEFAULT_SUBSCRIPTION_HEADER), scopeField.subscription);
    }
    const appKeyHeader = header(headers, CA_HEADERS.key);
    if (appKeyHeader && appKeyHeader.length <= MAX_APP_KEY_LENGTH) wanted.add(scopeField.appKey(appKeyHeader));
    addCredentialField(appCodeFromHeader(header(headers, "authorization")), scopeField.appCode);
    if (!guess || guess.appCodeQuery) addCredentialField(query.peek(APP_CODE_QUERY_PARAMETER), scopeField.appCode);

    const fields = [...wanted];
    const values = await fromStore(() => store.readFields(scopeRef, fields));
    const read = new Map<string, string | null>();
    fields.forEach((f, i) => read.set(f, values[i] ?? null));
    const fieldValue = async (field: string): Promise<string | null> => {
      if (read.has(field)) return read.get(field)!;
      const [value] = await fromStore(() => store.readFields(scopeRef, [field]));
      read.set(field, value ?? null);
      return value ?? null;
    };

    const rawConfig = read.get(scopeField.config);
    if (!rawConfig) return deny(requestId, "apiNotFound", "NONE");
    const scope = compiled(apiId, scopeRef.stage, rawConfig);
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
      const fromHeader = appCodeFromHeader(header(headers, "authorization"));
      if (fromHeader) appCode = { value: fromHeader, from: "header" };
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

    if (apiKeyValue !== undefined) {
      // 3a. apip_ API key.
      if (scope.apiKeyHeader) removeHeaders.push(scope.apiKeyHeader);
      else removeQuery.push(scope.apiKeyQuery!);
      if (apiKeyValue.length > MAX_CREDENTIAL_LENGTH) return deny(requestId, "invalidApiKey", "API_KEY", { scope });
      const raw = await fieldValue(scopeField.apiKey(hashOf(apiKeyValue)));
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
      const raw = await fieldValue(scopeField.subscription(hashOf(subscriptionValue)));
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
      const raw = await fieldValue(scopeField.appKey(appKey));
      if (!raw) return deny(requestId, "invalidAppKey", "SIGNATURE", { scope });
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
      const signable = toSignableRequest({ method: input.method, target: input.path, headers, body: input.body });
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
        const fresh = await fromStore(() => store.claimOnce(nonceKey(appKey, nonce), NONCE_TTL_SECONDS));
        if (!fresh) return deny(requestId, "nonceUsed", "SIGNATURE");
      }
      const refused = applicationRefusal(app, nowMs);
      if (refused) return deny(requestId, refused, "SIGNATURE");
      identity = { credential: "SIGNATURE", consumer: app.appId, appId: app.appId, appName: app.name, extInfo: app.extInfo };
      specialsAppKey = appKey;
    } else if (appCode) {
      // 3d. AppCode.
      if (appCode.from === "header") removeHeaders.push("authorization");
      else removeQuery.push(APP_CODE_QUERY_PARAMETER);
      if (appCode.value.length > MAX_CREDENTIAL_LENGTH) return deny(requestId, "invalidAppCode", "APPCODE", { scope });
      const raw = await fieldValue(scopeField.appCode(hashOf(appCode.value)));
      if (!raw) return deny(requestId, "invalidAppCode", "APPCODE", { scope });
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
    if (policies.ip) {
      const trust = policies.ip.trustForwardedFor ?? options.trustForwardedFor ?? false;
      const address = clientAddress(input.sourceAddress, headers["x-forwarded-for"], trust, policies.ip.forwardedForDepth);
      if (!ipAllowed(policies.ip, address, identity.appId)) {
        logger?.debug({ requestId, apiId, address, appId: identity.appId }, "IP not allowed");
        return deny(requestId, "ipNotAllowed", identity.credential);
      }
    }

    // 5. trafficControl and the subscription plan's quota: all counters incremented at once.
    const counted: { key: string; ttl: number; limit: number; reason: ReasonName; end: number }[] = [];
    const traffic = policies.traffic;
    if (traffic) {
      const window = fixedWindow(traffic.unit, nowMs);
      const key = (dimension: "api" | "app" | "user", id?: string) =>
        trafficCounterKey(apiId, stage, policies.level, dimension, id, traffic.unit, window.start);
      if (traffic.apiLimit) counted.push({ key: key("api"), ttl: window.ttlSeconds, limit: traffic.apiLimit, reason: "apiThrottled", end: window.end });
      if (identity.appId) {
        const special = traffic.specials?.find((s) => s.type === "APP" && (s.key === identity.appId || (specialsAppKey !== undefined && s.key === specialsAppKey)));
        const limit = special?.limit ?? traffic.appLimit;
        if (limit) counted.push({ key: key("app", identity.appId), ttl: window.ttlSeconds, limit, reason: "appThrottled", end: window.end });
      }
      if (identity.consumer) {
        const special = traffic.specials?.find((s) => s.type === "USER" && s.key === identity.consumer);
        const limit = special?.limit ?? traffic.userLimit;
        const user = `${identity.credential}:${identity.consumer}`;
        if (limit) counted.push({ key: key("user", user), ttl: window.ttlSeconds, limit, reason: "userThrottled", end: window.end });
      }
    }
    const plan = subscription?.plan;
    if (subscription && plan && plan.throttleLimitCount && plan.throttleLimitUnit) {
      const window = planWindow(plan.throttleLimitUnit, nowMs);
      counted.push({ key: planCounterKey(subscription.id, plan.throttleLimitUnit, window.start), ttl: window.ttlSeconds, limit: plan.throttleLimitCount, reason: "quotaExceeded", end: window.end });
    }
    const extra: Record<string, string> = {};
    if (counted.length > 0) {
      const counts = await fromStore(() => Promise.all(counted.map((c) => store.increment(c.key, c.ttl))));
      for (let i = 0; i < counted.length; i++) {
        const c = counted[i]!;
        if (counts[i]! <= c.limit) continue;
        if (c.reason === "quotaExceeded" && plan && !plan.stopOnQuotaReach) {
          extra[UPSTREAM.quotaExceeded] = "true";
          continue;
        }
        return deny(requestId, c.reason, identity.credential, { retryAfterSeconds: Math.ceil((c.end - nowMs) / 1000) });
      }
    }

    return allow(requestId, identity, removeHeaders, removeQuery, extra);
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
      decision = await decide({ ...input, headers, contextExtensions: input?.contextExtensions ?? {} }, requestId);
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
      const result = decision.allowed ? "allowed" : "denied";
      metrics.checks.inc({ result, code: decision.allowed ? "" : decision.code, credential: decision.allowed ? decision.identity.credential : decision.credential });
      metrics.duration.observe({ result }, (performance.now() - started) / 1000);
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

/**
 * Header names ext_authz reads and writes (lower-case: Envoy hands headers over lower-cased, and
 * HTTP/2 requires it), and helpers that keep every value it emits a valid header value.
 */

/** Identity headers set for the upstream on an allowed request. */
export const UPSTREAM = {
  appId: "x-ca-app-id",
  appExtInfo: "x-ca-app-ext-info",
  credential: "x-apigw-credential",
  consumer: "x-apigw-consumer",
  plan: "x-apigw-plan",
  subscriptionId: "x-apigw-subscription-id",
  quotaExceeded: "x-apigw-quota-exceeded",
  degraded: "x-apigw-auth-degraded",
} as const;

/**
 * All identity headers: the ones a decision does not set are removed from the request, so a
 * client cannot send its own `X-Ca-App-Id` and have the upstream believe it.
 */
export const UPSTREAM_IDENTITY_HEADERS: readonly string[] = Object.values(UPSTREAM);

export const ERROR_HEADERS = {
  message: "x-ca-error-message",
  code: "x-ca-error-code",
  requestId: "x-ca-request-id",
} as const;

export const REQUEST_ID_HEADER = "x-request-id";
export const PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body";
export const APP_CODE_QUERY_PARAMETER = "AppCode";

/** Longest header value emitted (error messages, ext info): far below any proxy's header limits. */
export const MAX_EMITTED_HEADER_VALUE = 4096;

/**
 * A value safe to put in a header: characters outside printable ASCII are percent-encoded (their
 * UTF-8 bytes), and the result is cut at `max` characters (ending in `...` when cut).
 */
export function headerSafe(value: string, max = MAX_EMITTED_HEADER_VALUE): string {
  let safe = /^[\x20-\x7e]*$/.test(value)
    ? value
    : value.replace(/[^\x20-\x7e]/gu, (ch) =>
        Array.from(Buffer.from(ch, "utf8"), (b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""),
      );
  if (safe.length > max) safe = safe.slice(0, max - 3) + "...";
  return safe;
}

/** At most the last four characters of a credential, for logs. */
export function lastFour(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return value.length <= 8 ? "****" : "…" + value.slice(-4);
}

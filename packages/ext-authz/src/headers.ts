/**
 * Header names ext_authz reads and writes (lower-case: Envoy hands headers over lower-cased, and
 * HTTP/2 requires it). Every value emitted from request or stored data goes through `headerSafe`
 * (@apigw/shared: printable ASCII, at most MAX_ERROR_MESSAGE_LENGTH = 4096 characters).
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

/** At most the last four characters of a credential, for logs. */
export function lastFour(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return value.length <= 8 ? "****" : "…" + value.slice(-4);
}

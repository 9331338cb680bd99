/**
 * Every reason a check is denied: the HTTP status, a stable six-character `X-Ca-Error-Code` and
 * the `X-Ca-Error-Message`. Codes follow Alibaba's scheme (a letter, the status, two letters):
 * `I` the request itself is malformed, `A` authentication / authorization / limits,
 * `S` the service cannot decide. The table is documented in packages/ext-authz/README.md; a code,
 * once published, is never reused for another reason.
 */
export interface DenialReason {
  status: number;
  code: string;
  message: string;
}

function reason(status: number, code: string, message: string): DenialReason {
  return { status, code, message };
}

export const REASONS = {
  // The route / request shape.
  apiNotFound: reason(404, "I404NF", "API Not Found"),
  noApiContext: reason(404, "I404NC", "API Not Found"),
  apiNotDeployed: reason(404, "I404ND", "API Not Deployed"),
  unsupportedMethod: reason(405, "I405UM", "Unsupported Method"),
  invalidUri: reason(400, "I400RU", "Invalid Request Uri"),
  invalidBody: reason(400, "I400BD", "Invalid Body"),
  invalidHeader: reason(400, "I400HV", "Invalid Header: not valid UTF-8"),
  uriTooLong: reason(414, "I414UL", "Request URL Too Large"),
  headersTooLarge: reason(431, "I431HL", "Request Header Fields Too Large"),
  bodyIncomplete: reason(413, "I413RL", "Request Body Too Large"),

  // Credentials.
  missingCredential: reason(401, "A401MC", "Missing Credential"),
  invalidAppKey: reason(401, "A401AK", "Invalid AppKey"),
  invalidAppCode: reason(401, "A401AC", "Invalid AppCode"),
  invalidApiKey: reason(401, "A401KY", "Invalid API Key"),
  apiKeyExpired: reason(401, "A401KE", "API Key Expired"),
  invalidSubscriptionKey: reason(401, "A401SK", "Invalid Subscription Key"),
  subscriptionInactive: reason(403, "A403SI", "Subscription Inactive"),
  subscriptionRevoked: reason(403, "A403SR", "Subscription Revoked"),
  planInactive: reason(403, "A403PI", "Subscription Plan Inactive"),
  planExpired: reason(403, "A403PE", "Subscription Plan Expired"),

  // Signed requests, in the order they are checked.
  invalidTimestamp: reason(400, "A400IT", "Invalid Timestamp"),
  timestampExpired: reason(400, "A400TE", "Timestamp Expired"),
  invalidSignatureMethod: reason(400, "A400SM", "Invalid Signature Method"),
  invalidContentMd5: reason(400, "A400MD", "Invalid Content-MD5"),
  invalidSignature: reason(400, "A400SG", "Invalid Signature"),
  invalidNonce: reason(400, "A400NI", "Invalid Nonce"),
  nonceMissing: reason(400, "A400NM", "Nonce Used"),
  nonceUsed: reason(400, "A400NU", "Nonce Used"),

  // Applications (signed requests and AppCodes).
  appDisabled: reason(403, "A403AD", "App Disabled"),
  authorizationExpired: reason(403, "A403UA", "Unauthorized"),
  appUnauthorized: reason(403, "A403UN", "Unauthorized"),

  // Plug-ins and plans.
  ipNotAllowed: reason(403, "A403IP", "IP Not Allowed"),
  apiThrottled: reason(429, "A429AP", "Throttled by API Flow Control"),
  appThrottled: reason(429, "A429AA", "Throttled by APP Flow Control"),
  userThrottled: reason(429, "A429AU", "Throttled by USER Flow Control"),
  quotaExceeded: reason(429, "A429SQ", "Throttled by Subscription Quota"),

  // The service itself.
  storeUnavailable: reason(503, "S503SU", "Authorization Service Unavailable: credential store unreachable"),
  projectionIncomplete: reason(503, "S503PI", "Authorization Service Unavailable: credentials are being restored"),
  secretUnusable: reason(500, "S500SK", "Internal Error: the AppSecret cannot be decrypted"),
  internalError: reason(500, "S500IE", "Internal Error"),
} as const satisfies Record<string, DenialReason>;

export type ReasonName = keyof typeof REASONS;

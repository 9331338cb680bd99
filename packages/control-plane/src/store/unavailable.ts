/*
 * Which failures mean "the store cannot be reached right now" (retry later: 503) rather than a
 * bug (500). A request that meets one of these changed nothing, or (when the connection died at
 * COMMIT) its outcome is unknown; either way the client should retry, which is safe because
 * every write is one transaction.
 */

/** Seconds a client is told to wait (Retry-After) while the store is unreachable. */
export const STORE_RETRY_AFTER_SECONDS = 5;

/** Socket-level codes of a server that is down, restarting or unreachable. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs: class 08 (connection exception), 57P01 admin_shutdown (restart, failover,
 * pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or shutting
 * down), 53300 too_many_connections.
 */
const SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300"]);

/** Messages of node-postgres and knex that carry no code. */
const MESSAGES = [
  "Connection terminated", // unexpectedly / due to connection timeout
  "Client has encountered a connection error and is not queryable",
  "Client was closed and is not queryable",
  "Connection ended unexpectedly", // knex marks a pooled connection that ended so
  "timeout exceeded when trying to connect", // pg-pool
];
/** node-postgres's connect timeout (connectionTimeoutMillis); too generic a phrase to match inside other messages. */
const EXACT_MESSAGES = new Set(["timeout expired"]);

/** True when `error` (or an error it wraps) says the store is unreachable, not that the request or the code is wrong. */
export function isStoreUnavailable(error: unknown, depth = 0): boolean {
  if (!error || typeof error !== "object" || depth > 4) return false;
  const e = error as { name?: unknown; code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  if (e.name === "KnexTimeoutError") return true; // no pooled connection within acquireConnectionTimeout
  if (typeof e.code === "string") {
    if (NETWORK_CODES.has(e.code) || SQLSTATES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code)) return true;
  }
  if (typeof e.message === "string") {
    const message = e.message;
    if (EXACT_MESSAGES.has(message) || MESSAGES.some((m) => message.includes(m))) return true;
  }
  // AggregateError (a host name with several addresses, all refused) and wrapped causes.
  if (Array.isArray(e.errors) && e.errors.some((inner) => isStoreUnavailable(inner, depth + 1))) return true;
  return e.cause !== undefined && isStoreUnavailable(e.cause, depth + 1);
}

/** Capped exponential backoff with jitter (up to ±20 %, never above `maxMs`), so that replicas do not retry in lockstep. */
export function retryDelay(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.min(maxMs, Math.round(base * (0.8 + 0.4 * random())));
}

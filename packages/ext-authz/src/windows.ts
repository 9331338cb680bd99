import { counterKey, type PlanUnit, type TrafficControlParams } from "@apigw/shared";

/**
 * Fixed counting windows shared by every replica.
 *
 * A window is identified by its start: `floor(now / length) * length` in milliseconds since the
 * Unix epoch, so SECOND, MINUTE, HOUR and DAY windows are aligned to UTC boundaries (a DAY is a
 * UTC calendar day); a plan's Month is a UTC calendar month. The counter's Redis key ends with
 * the window start, so every replica counting in the same window increments the same key
 * (atomically, via `store.increment`), and a new window starts a new key at 0. A key expires a
 * little after its window ends (first increment + window length + margin).
 *
 * A request is counted in every limit that applies to it before the limits are compared, and it
 * is refused when a count exceeds its limit: with a limit of N, the first N requests of a window
 * pass. Requests refused by a limit are counted too (they did reach the gateway); a burst of up
 * to 2N can straddle a window boundary, the usual price of fixed windows. Replicas' clocks decide
 * which window a request falls in, so skew between replicas blurs the boundaries by that skew.
 */
export type TrafficUnit = TrafficControlParams["unit"];

const UNIT_MS: Record<TrafficUnit, number> = {
  SECOND: 1000,
  MINUTE: 60_000,
  HOUR: 3_600_000,
  DAY: 86_400_000,
};

const PLAN_UNIT: Record<Exclude<PlanUnit, "Month">, TrafficUnit> = { Min: "MINUTE", Hour: "HOUR", Day: "DAY" };

/** Seconds a counter lives after its first increment beyond the end of its window. */
const EXPIRY_MARGIN_S = 5;

export interface Window {
  /** Start of the window (ms since the epoch). */
  start: number;
  /** End of the window, exclusive (ms since the epoch). */
  end: number;
  /** Counter expiry, from the first increment. */
  ttlSeconds: number;
}

export function fixedWindow(unit: TrafficUnit, nowMs: number): Window {
  const length = UNIT_MS[unit];
  const start = Math.floor(nowMs / length) * length;
  return { start, end: start + length, ttlSeconds: Math.ceil(length / 1000) + EXPIRY_MARGIN_S };
}

export function planWindow(unit: PlanUnit, nowMs: number): Window {
  if (unit !== "Month") return fixedWindow(PLAN_UNIT[unit], nowMs);
  const now = new Date(nowMs);
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const end = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  return { start, end, ttlSeconds: Math.ceil((end - nowMs) / 1000) + EXPIRY_MARGIN_S };
}

/** Redis keys never contain raw `{`/`}` (Cluster hash tags) or spaces: parts are percent-encoded. */
function part(value: string): string {
  return encodeURIComponent(value);
}

/**
 * `apigw:count:tc:<api>:<stage>:<level>:<dimension>[:<id>]:<unit>:<windowStart>`, level `api` for
 * the API's trafficControl or `op=<operation>` for an operation's own (the caller passes a
 * key-safe level: the operation percent-encoded).
 */
export function trafficCounterKey(
  apiId: string,
  stage: string,
  level: string,
  dimension: "api" | "app" | "user",
  id: string | undefined,
  unit: TrafficUnit,
  windowStart: number,
): string {
  const parts = ["tc", part(apiId), stage, level, dimension];
  if (id !== undefined) parts.push(part(id));
  parts.push(unit, String(windowStart));
  return counterKey(...parts);
}

/** `apigw:count:plan:<subscription id>:<unit>:<windowStart>`: a subscription's plan quota (all stages). */
export function planCounterKey(subscriptionId: string, unit: PlanUnit, windowStart: number): string {
  return counterKey("plan", part(subscriptionId), unit, String(windowStart));
}

import { isIP } from "node:net";
import { z } from "zod";

/**
 * Building blocks shared by every schema. Each string is length-capped before any pattern
 * runs, and every pattern is linear (no nested quantifiers), so hostile input costs O(n).
 */
export function pattern(re: RegExp, max: number, message: string) {
  return z
    .string()
    .max(max, { error: `must be at most ${max} characters` })
    .refine((s) => s.length > max || re.test(s), { error: message })
    .meta({ pattern: re.source });
}

/** RFC 9110 token: what a header name may be (within Envoy's strict HTTP_HEADER_NAME rule). */
export const HEADER_NAME_PATTERN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
export const headerName = pattern(HEADER_NAME_PATTERN, 256, "must be a valid HTTP header name").refine(
  (s) => s.length > 0,
  { error: "must not be empty" },
);

/** Header names the gateway may set or remove: never pseudo-headers or Host (Envoy refuses both). */
export const mutableHeaderName = headerName.refine((s) => s.toLowerCase() !== "host", {
  error: "the Host header cannot be modified",
});

/**
 * Envoy's strict HTTP_HEADER_VALUE rule (no control character but tab), and at most 8192 bytes
 * of UTF-8 (Envoy's own limit on a header value it is configured to add is 16384 bytes).
 */
const HEADER_VALUE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
export const HEADER_VALUE_MAX_BYTES = 8192;
export const headerValue = z
  .string()
  .max(HEADER_VALUE_MAX_BYTES, { error: `must be at most ${HEADER_VALUE_MAX_BYTES} characters` })
  .refine((s) => HEADER_VALUE.test(s), { error: "must not contain control characters such as CR, LF or NUL (tab is allowed)" })
  .refine((s) => Buffer.byteLength(s, "utf8") <= HEADER_VALUE_MAX_BYTES, { error: `must be at most ${HEADER_VALUE_MAX_BYTES} bytes of UTF-8` });

/** Durations as Envoy and WSO2 write them: `500ms`, `5s`, `2m`, `1h`, or combinations like `1m30s`. */
export const DURATION_PATTERN = /^(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h))+$/;
/**
 * The range every duration must fall in. Envoy reads the durations we write (connect timeouts,
 * ejection times) in whole milliseconds and requires them to be above zero, so less than 1ms would
 * be 0 there; the upper bound is what a google.protobuf.Duration can hold (10,000 years).
 */
export const MIN_DURATION_MS = 1;
export const MAX_DURATION_SECONDS = 315_576_000_000;
export const DURATION_RANGE_MESSAGE = `must be between 1ms and ${MAX_DURATION_SECONDS}s (the range of a protobuf Duration)`;

/** Whether a duration string (already matching DURATION_PATTERN) is within the range above. */
export function durationInRange(value: string): boolean {
  const ms = durationToMillis(value);
  return ms >= MIN_DURATION_MS && ms <= MAX_DURATION_SECONDS * 1000;
}

export const duration = pattern(DURATION_PATTERN, 32, "must be a duration such as 500ms, 5s, 2m or 1h").refine(
  (s) => !DURATION_PATTERN.test(s) || durationInRange(s),
  { error: DURATION_RANGE_MESSAGE },
);

export function durationToMillis(value: string): number {
  const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const match of value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(match[1]) * unitMs[match[2]!]!;
  }
  return total;
}

/** An IPv4/IPv6 address, or a CIDR block with a prefix length valid for its family. */
export function isIpOrCidr(value: string): boolean {
  const slash = value.indexOf("/");
  const address = slash === -1 ? value : value.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return false;
  if (slash === -1) return true;
  const prefix = value.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

export const ipOrCidr = z
  .string()
  .max(64, { error: "must be at most 64 characters" })
  .refine(isIpOrCidr, { error: "must be an IPv4 or IPv6 address or CIDR block" });

export const timestamp = z.iso.datetime({ offset: true, error: "must be an RFC 3339 date-time" });

export const positiveInt = (max: number) =>
  z.int({ error: "must be an integer" }).min(1, { error: "must be at least 1" }).max(max, { error: `must be at most ${max}` });

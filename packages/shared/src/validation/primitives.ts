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

/** RFC 9110 token: what a header name may be. */
export const headerName = pattern(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 256, "must be a valid HTTP header name").refine(
  (s) => s.length > 0,
  { error: "must not be empty" },
);

/** Header names the gateway may set or remove: never pseudo-headers or Host (Envoy refuses both). */
export const mutableHeaderName = headerName.refine((s) => s.toLowerCase() !== "host", {
  error: "the Host header cannot be modified",
});

export const headerValue = z
  .string()
  .max(8192, { error: "must be at most 8192 characters" })
  .refine((s) => !/[\r\n\0]/.test(s), { error: "must not contain CR, LF or NUL" });

/** Durations as Envoy and WSO2 write them: `500ms`, `5s`, `2m`, `1h`, or combinations like `1m30s`. */
export const DURATION_PATTERN = /^(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h))+$/;
export const duration = pattern(DURATION_PATTERN, 32, "must be a duration such as 500ms, 5s, 2m or 1h").refine(
  (s) => !DURATION_PATTERN.test(s) || durationToMillis(s) > 0,
  { error: "must be greater than zero" },
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

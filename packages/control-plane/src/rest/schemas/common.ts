import { z } from "zod";
import { pattern } from "@apigw/shared";

/** Every list and single resource answer carries these. */
export const successStatus = z.literal("success");

/** Public identifiers in paths: no whitespace or characters that break URLs. */
export const HANDLE_PATTERN = /^[^\s/{}?#%\\\u0000-\u001f\u007f]+$/;
export const handle = pattern(HANDLE_PATTERN, 253, "must not contain whitespace, /, {, }, ?, #, %, \\ or control characters");

export const uuid = z.uuid({ error: "must be a UUID" });

export const isoDate = z.string().meta({ format: "date-time" });

/** http(s) URL with a host, no credentials and no fragment. */
export function isHttpUrl(value: string): boolean {
  if (value.length > 2048) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  // Port 0 parses but names no port a gateway can connect to.
  if (url.port !== "" && Number(url.port) === 0) return false;
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "" && !url.username && !url.password && !url.hash;
}

export const httpUrl = z
  .string()
  .max(2048, { error: "must be at most 2048 characters" })
  .refine(isHttpUrl, { error: "must be an http or https URL with a host and a port from 1 to 65535 if given (no credentials or fragment)" })
  .meta({ format: "uri" });

/** `expiresIn` as WSO2 writes it. */
export const EXPIRY_UNITS = ["seconds", "minutes", "hours", "days", "weeks", "months"] as const;
export const relativeDuration = z.strictObject({
  unit: z.enum(EXPIRY_UNITS),
  duration: z
    .int({ error: "must be an integer" })
    .min(1, { error: "must be between 1 and 100000" })
    .max(100_000, { error: "must be between 1 and 100000" }),
});

export function addRelative(from: Date, value: z.infer<typeof relativeDuration>): Date {
  const date = new Date(from);
  const seconds: Record<string, number> = { seconds: 1, minutes: 60, hours: 3600, days: 86_400, weeks: 604_800 };
  if (value.unit === "months") date.setUTCMonth(date.getUTCMonth() + value.duration);
  else date.setTime(date.getTime() + value.duration * seconds[value.unit]! * 1000);
  return date;
}

export const statusMessage = z.object({ status: successStatus, message: z.string() });

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids in paths are checked before any query, so a malformed one is a plain 404. */
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

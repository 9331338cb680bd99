import { createHash } from "node:crypto";
import { DURATION_PATTERN, durationToMillis } from "@apigw/shared";

/** JSON values as the translator builds them (proto3 JSON, Envoy field names). */
export type Json = Record<string, unknown>;

/**
 * A google.protobuf.Duration in proto3 JSON (`"5s"`, `"0.250s"`), from milliseconds. Exact to the
 * nanosecond for the values a duration string can express; fractional digits come in groups of 3
 * as protobuf writes them.
 */
export function envoyDuration(ms: number): string {
  const totalNanos = Math.round(ms * 1_000_000);
  const seconds = Math.floor(totalNanos / 1_000_000_000);
  const nanos = totalNanos - seconds * 1_000_000_000;
  if (nanos === 0) return `${seconds}s`;
  let digits = String(nanos).padStart(9, "0");
  while (digits.endsWith("000")) digits = digits.slice(0, -3);
  return `${seconds}.${digits}s`;
}

/** Milliseconds of a duration string as the store keeps them (`500ms`, `5s`, `1m30s`); throws on anything else. */
export function parseDuration(value: string, what: string): number {
  if (value.length > 32 || !DURATION_PATTERN.test(value)) throw new Error(`${what}: '${value}' is not a duration such as 500ms, 5s or 2m`);
  const ms = durationToMillis(value);
  if (!(ms > 0)) throw new Error(`${what}: must be greater than zero`);
  return ms;
}

/** JSON with object keys sorted at every level: a canonical form for hashing. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** First `length` hex digits of the SHA-256 of the canonical JSON of `value`. */
export function shortHash(value: unknown, length = 8): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, length);
}

/** Code-point order (never locale dependent), for sorting. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** An object whose keys are inserted in sorted order (Envoy map fields: context_extensions, typed_per_filter_config). */
export function sortedRecord<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const list = [...entries].sort((a, b) => compareStrings(a[0], b[0]));
  const out: Record<string, T> = {};
  for (const [key, value] of list) out[key] = value;
  return out;
}

/**
 * Freezes an object graph (objects already frozen are taken as deeply frozen and skipped).
 * Frozen = immutable: the translator and the snapshot builder memoize work by the identity of
 * frozen objects (a GatewayApi, an IR route, an Envoy route), so a frozen object must never change.
 */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** A typed_config value: `{"@type": <type URL>, ...fields}`. */
export function typed(typeUrl: string, fields: Json = {}): Json {
  return { "@type": typeUrl, ...fields };
}

import type { Knex } from "knex";

export type Db = Knex | Knex.Transaction;

/** Postgres unique_violation, with the constraint that was hit. */
export function uniqueViolation(error: unknown): string | undefined {
  const e = error as { code?: string; constraint?: string; detail?: string; message?: string };
  if (e?.code !== "23505") return undefined;
  return e.constraint ?? e.message ?? "";
}

export function iso(value: Date | string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

export function isoOrNull(value: Date | string | null | undefined): string | null {
  return iso(value) ?? null;
}

/** jsonb columns come back parsed from pg and as text from some drivers. */
export function json<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

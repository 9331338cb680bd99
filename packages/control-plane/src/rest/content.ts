import type { FieldError } from "../errors";

/*
 * String content, checked once at the edge for every route: path parameters, the query string
 * and the parsed body (values and object keys, at any depth). Nothing that fails here reaches a
 * schema, the store or the translator:
 *  - NUL (U+0000): Postgres refuses it in text and jsonb, Envoy in headers and names;
 *  - lone UTF-16 surrogates (JSON `"\udc00"`): not Unicode, so not UTF-8 either; protobuf
 *    strings and Postgres both refuse them;
 *  - nesting deeper than MAX_DEPTH: no resource of ours is that deep, and recursive code further
 *    on (JSON.stringify, zod) must not meet a 100,000-level body.
 * Rules that depend on what a string becomes (a header name or value, a path) live in the schemas.
 */

export const MAX_DEPTH = 32;

/** Where a problem is, in the error shape's field syntax: `spec.operations[0].path`. */
function join(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  const printable = printableKey(key);
  return parent ? `${parent}.${printable}` : printable;
}

/** A key as it may appear in a field name: control characters and surrogates escaped. */
function printableKey(key: string): string {
  const short = key.length > 64 ? key.slice(0, 64) + "…" : key;
  return short.replace(/[\u0000-\u001f\u007f]|[\ud800-\udfff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The problem with a string's content, or undefined when it is fine. */
export function stringProblem(value: string): string | undefined {
  if (value.includes("\u0000")) return "must not contain NUL characters";
  if (LONE_SURROGATE.test(value)) return "must be valid Unicode (it contains a lone UTF-16 surrogate)";
  return undefined;
}

/**
 * Every NUL, lone surrogate and over-deep nesting in `value`, with field paths below `prefix`.
 * Iterative (an explicit stack), so a hostile depth costs no call stack.
 */
export function contentErrors(value: unknown, prefix: string, limit = 20): FieldError[] {
  const errors: FieldError[] = [];
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: prefix, depth: 0 }];
  while (stack.length > 0 && errors.length < limit) {
    const item = stack.pop()!;
    const v = item.value;
    if (typeof v === "string") {
      const problem = stringProblem(v);
      if (problem) errors.push({ field: item.path || "body", message: problem });
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (item.depth >= MAX_DEPTH) {
      errors.push({ field: item.path || "body", message: `is nested too deeply (at most ${MAX_DEPTH} levels)` });
      continue;
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: join(item.path, i), depth: item.depth + 1 });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const path = join(item.path, key);
      const problem = stringProblem(key);
      if (problem) errors.push({ field: path, message: `the key ${problem}` });
      stack.push({ value: (v as Record<string, unknown>)[key], path, depth: item.depth + 1 });
    }
  }
  return errors;
}

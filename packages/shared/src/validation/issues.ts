import type { z } from "zod";

/** A validation problem with its path below the validated value and a sentence for people. */
export interface Issue {
  path: (string | number)[];
  message: string;
}

/**
 * Turns zod issues into one plain message per field: every unknown key is its own issue, the
 * most specific branch of a failed union is reported, and zod's generic wording is rephrased.
 * Messages written in our schemas are kept as they are.
 */
export function formatZodIssues(issues: readonly z.core.$ZodIssue[]): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push({ path: [...path, key], message: "unknown field" });
      continue;
    }
    if (issue.code === "invalid_key") {
      // A record key that fails its schema: say what is wrong with it, at the key's own path.
      const inner = formatZodIssues(issue.issues)[0]?.message ?? "is not allowed";
      out.push({ path, message: `invalid key: ${inner}` });
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      const best = [...issue.errors].sort((a, b) => depth(b) - depth(a))[0]!;
      out.push(...formatZodIssues(best.map((i) => ({ ...i, path: [...issue.path, ...i.path] }))));
      continue;
    }
    out.push({ path, message: friendlyMessage(issue) });
  }
  return out;
}

function depth(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(0, ...issues.map((i) => i.path.length));
}

function friendlyMessage(issue: z.core.$ZodIssue): string {
  if (!/^(Invalid|Too (big|small)|Unrecognized)/.test(issue.message)) return issue.message;
  switch (issue.code) {
    case "invalid_type":
      return issue.message.includes("received undefined") ? "is required" : `must be ${article(issue.expected)}`;
    case "invalid_value":
      return `must be one of: ${issue.values.map((v) => String(v)).join(", ")}`;
    case "too_big":
      if (issue.origin === "string") return `must be at most ${issue.maximum} characters`;
      if (issue.origin === "array") return `must have at most ${issue.maximum} items`;
      return `must be at most ${issue.maximum}`;
    case "too_small":
      if (issue.origin === "string") return Number(issue.minimum) <= 1 ? "must not be empty" : `must be at least ${issue.minimum} characters`;
      if (issue.origin === "array") return `must have at least ${issue.minimum} item(s)`;
      return `must be at least ${issue.minimum}`;
    default:
      return issue.message;
  }
}

function article(expected: string): string {
  const names: Record<string, string> = { int: "an integer", object: "an object", array: "an array", string: "a string", number: "a number", boolean: "a boolean" };
  return names[expected] ?? expected;
}

import type { z } from "zod";
import { formatZodIssues } from "../validation/issues";
import { ALL_POLICY_NAMES, findPolicyType, type PolicyTypeDefinition } from "./types";

export interface PolicyIssue {
  /** Path below the policy object, e.g. ["params", "request", "headers", 0, "name"]. */
  path: (string | number)[];
  message: string;
}

/** Checks a policy's name, major version and params; returns every problem found. */
export function validatePolicy(
  policy: { name: string; version?: string | undefined; params?: unknown },
  level: "api" | "operation",
): { definition?: PolicyTypeDefinition; issues: PolicyIssue[] } {
  const definition = findPolicyType(policy.name);
  if (!definition) {
    return {
      issues: [{ path: ["name"], message: `unknown policy '${policy.name}'; known policies: ${ALL_POLICY_NAMES.join(", ")}` }],
    };
  }
  const issues: PolicyIssue[] = [];
  if (policy.version && !definition.versions.includes(policy.version)) {
    issues.push({
      path: ["version"],
      message: `version ${policy.version} of policy '${policy.name}' is not available; available: ${definition.versions.join(", ")}`,
    });
  }
  if (level === "operation" && !definition.operationLevel) {
    issues.push({ path: ["name"], message: `policy '${policy.name}' applies to a whole API and cannot be set on one operation` });
  }
  const result = (definition.schema as z.ZodType).safeParse(policy.params ?? {});
  if (!result.success) {
    for (const issue of formatZodIssues(result.error.issues)) {
      issues.push({ path: ["params", ...issue.path], message: issue.message });
    }
  }
  return { definition, issues };
}

/** The version a policy resolves to: the one asked for, or the newest. */
export function resolvePolicyVersion(definition: PolicyTypeDefinition, version?: string): string {
  return version || definition.versions[definition.versions.length - 1]!;
}

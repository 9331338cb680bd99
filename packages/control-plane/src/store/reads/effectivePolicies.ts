import { findPolicyType, resolvePolicyVersion, type Stage } from "@apigw/shared";
import type { PolicyInput } from "../../rest/schemas/restApi";

/** A policy as the translator and ext_authz see it, whatever way it was attached. */
export interface EffectivePolicy {
  /** Canonical type name from the policy registry (e.g. `setHeaders`, never `set-headers`). */
  type: string;
  version: string;
  params: Record<string, unknown>;
  executionCondition?: string;
  enforcedBy: "envoy" | "ext_authz";
  source:
    | { kind: "inline"; scope: "api" | "operation" }
    | { kind: "plugin"; pluginId: string; pluginName: string };
}

export interface PluginBindingRow {
  api_id: string;
  stage: Stage;
  plugin_id: string;
  name: string;
  type: string;
  params: unknown;
}

export function inlinePolicies(policies: PolicyInput[] | undefined, scope: "api" | "operation"): EffectivePolicy[] {
  const out: EffectivePolicy[] = [];
  for (const policy of policies ?? []) {
    const definition = findPolicyType(policy.name);
    if (!definition) continue; // cannot happen for stored APIs: validated on write
    out.push({
      type: definition.type,
      version: resolvePolicyVersion(definition, policy.version),
      params: (policy.params ?? {}) as Record<string, unknown>,
      ...(policy.executionCondition ? { executionCondition: policy.executionCondition } : {}),
      enforcedBy: definition.enforcedBy,
      source: { kind: "inline", scope },
    });
  }
  return out;
}

/**
 * API-level policies for one stage: the API's inline policies, with a plug-in bound for that
 * stage replacing an inline policy of the same type (plug-ins are the per-environment setting,
 * and there is at most one of each type per API and stage). Ordered by type for determinism.
 */
export function apiPoliciesForStage(inline: EffectivePolicy[], bindings: PluginBindingRow[]): EffectivePolicy[] {
  const pluginTypes = new Set(bindings.map((b) => b.type));
  const merged = inline.filter((p) => !pluginTypes.has(p.type));
  for (const binding of bindings) {
    const definition = findPolicyType(binding.type);
    if (!definition) continue;
    merged.push({
      type: definition.type,
      version: resolvePolicyVersion(definition),
      params: (typeof binding.params === "string" ? JSON.parse(binding.params) : binding.params) as Record<string, unknown>,
      enforcedBy: definition.enforcedBy,
      source: { kind: "plugin", pluginId: binding.plugin_id, pluginName: binding.name },
    });
  }
  return merged.sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

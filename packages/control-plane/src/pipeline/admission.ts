import type { Knex } from "knex";
import { ApiError, type FieldError } from "../errors";
import type { AdmissionCheck, Change } from "../store/changes";
import { readGatewayApis, type GatewayApi, type GatewayStage } from "../store/reads/gatewayConfig";
import { buildIr, translateIr, type TranslatorOptions } from "../translator";
import type { GatewayIr, IrDiagnostic } from "../translator/ir";
import type { EnvoyResources } from "../translator/envoy/types";
import { buildSnapshot, consistent, kindOf, SnapshotError, XDS_TYPE_URLS, type Snapshot, type SnapshotIssue } from "../xds";

/*
 * Admission: what is accepted reaches Envoy, or is refused with a 400 naming the field.
 *
 * Every write transaction that changes what an API becomes in Envoy (the API itself, a plug-in
 * bound to it, a binding) translates each affected API alone, from the transaction's own view of
 * the store, and runs the same strict Envoy check (protos, PGV rules, Envoy's semantic rules) and
 * cross-resource consistency check that every snapshot goes through. A problem rolls the whole
 * transaction back. The REST edge refuses most bad values earlier, with precise field paths; this
 * is the backstop for everything the edge does not know about Envoy (and for rules a later Envoy
 * tightens, which the pipeline's per-API isolation then holds back: see gatewayPipeline.ts).
 *
 * Checking an API alone is cheap (its own routes and clusters) and is what a write can promise:
 * a clash between two valid APIs is a build-time matter (isolated and reported per API).
 */

/** Entities whose changes alter what an API becomes in Envoy. */
const GATEWAY_ENTITIES = new Set<Change["entity"]>(["rest_api", "plugin", "plugin_binding"]);

export interface ApiCheck {
  /** What Envoy would refuse, as field errors of the API document (empty: the API reaches Envoy). */
  problems: FieldError[];
  /** What the translator left out or cannot honour exactly (operations left out, ignored conditions...). */
  diagnostics: IrDiagnostic[];
}

let listenersChecked: Snapshot | undefined;

/** Translates one API alone and checks its resources as a snapshot would be checked. */
export function checkApi(api: GatewayApi, options: TranslatorOptions = {}): ApiCheck {
  const ir = buildIr({ revision: 0, apis: [api] });
  const diagnostics = ir.diagnostics.filter((d) => d.apiId === undefined || d.apiId === api.handle);
  let resources: EnvoyResources;
  try {
    resources = translateIr(ir, options);
  } catch (error) {
    return { problems: [{ field: "spec", message: `cannot be translated: ${(error as Error).message}` }], diagnostics };
  }
  try {
    // The listeners are the same (memoized, frozen) objects for every API: validated once, then reused.
    const snapshot = buildSnapshot(resources, { previous: listenersChecked });
    listenersChecked = snapshot;
    const checked = consistent(snapshot);
    return { problems: checked.issues.map((message) => ({ field: "spec", message })), diagnostics };
  } catch (error) {
    if (!(error instanceof SnapshotError)) throw error;
    // The same value usually fails on every route it reaches: report each (field, problem) once.
    const seen = new Set<string>();
    const problems: FieldError[] = [];
    for (const issue of error.issues) {
      const problem = fieldErrorOf(api, ir, issue);
      const key = `${problem.field}\u0000${issue.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      problems.push(problem);
    }
    return { problems, diagnostics };
  }
}

/** The admission check of a control plane: refuses a write whose affected APIs Envoy would not accept. */
export function admissionCheck(options: TranslatorOptions = {}): AdmissionCheck {
  return async (tx: Knex.Transaction, changes: readonly Change[]) => {
    // Per API, the field prefix: problems caused by a plug-in write are reported on the plug-in.
    const affected = new Map<string, "api" | "plugin" | "binding">();
    for (const change of changes) {
      if (!GATEWAY_ENTITIES.has(change.entity)) continue;
      const origin = change.entity === "rest_api" ? "api" : change.entity === "plugin" ? "plugin" : "binding";
      for (const handle of change.apiIds ?? []) if (affected.get(handle) !== "api") affected.set(handle, origin);
    }
    if (affected.size === 0) return;
    const apis = await readGatewayApis(tx, { handles: [...affected.keys()] });
    const errors: FieldError[] = [];
    for (const api of apis) {
      const { problems } = checkApi(api, options);
      const origin = affected.get(api.handle);
      for (const problem of problems) {
        if (origin === "api") errors.push(problem);
        else errors.push({ field: origin === "plugin" ? "params" : "apiIds", message: `RestAPI '${api.handle}' ${problem.field}: ${problem.message}` });
      }
    }
    if (errors.length > 0) {
      throw new ApiError(400, "Configuration validation failed: the gateway (Envoy) would refuse what this change produces", errors.slice(0, 50));
    }
  };
}

/** Which policy type an Envoy field path belongs to (what an operator wrote that became it). */
function policyTypeOf(path: string): string | undefined {
  if (/request_headers_to_add|response_headers_to_add/.test(path)) return "setHeaders";
  if (/request_headers_to_remove|response_headers_to_remove/.test(path)) return "removeHeaders";
  if (/\bcors\b|envoy\.filters\.http\.cors/.test(path)) return "cors";
  if (/circuit_breakers|outlier_detection/.test(path)) return "circuitBreaker";
  return undefined;
}

/**
 * Maps a resource issue of an API translated alone back to the API document: a route issue to its
 * operation (and the policy whose value became the failing field), a cluster issue to the
 * upstream of the stage that uses it (or the circuit breaker policy). The message keeps the Envoy
 * resource and field path, so nothing is lost where the mapping is coarse.
 */
function fieldErrorOf(api: GatewayApi, ir: GatewayIr, issue: SnapshotIssue): FieldError {
  const message = `${issue.message} (Envoy ${kindOf(issue.typeUrl)} "${issue.name}" ${issue.path || "(root)"})`;
  const type = policyTypeOf(issue.path);
  if (issue.typeUrl === XDS_TYPE_URLS.route) {
    const match = /^virtual_hosts\[(\d+)\]\.routes\[(\d+)\]/.exec(issue.path);
    const route = match ? ir.virtualHosts[Number(match[1])]?.routes[Number(match[2])] : undefined;
    if (route?.kind === "forward") {
      const stage = api.stages.find((s) => s.stage === route.stage);
      const index = stage?.operations.findIndex((o) => `${o.method} ${o.path}` === route.operation) ?? -1;
      const operation = index >= 0 ? stage!.operations[index]! : undefined;
      const where = `operation ${route.operation} (${route.stage})`;
      if (type && operation?.policies.some((p) => p.type === type)) return { field: `spec.operations[${index}].policies`, message: `${where}: ${message}` };
      if (type && stage) return policyField(stage, type, message);
      if (/timeout/.test(issue.path)) return { field: "spec.upstream", message: `${where}: ${message}` };
      return { field: index >= 0 ? `spec.operations[${index}].path` : "spec.operations", message: `${where}: ${message}` };
    }
    if (type) {
      const stage = api.stages.find((s) => s.policies.some((p) => p.type === type));
      if (stage) return policyField(stage, type, message);
    }
    return { field: "spec.operations", message };
  }
  if (issue.typeUrl === XDS_TYPE_URLS.cluster || issue.typeUrl === XDS_TYPE_URLS.endpoint) {
    const stage = stageUsingCluster(api, ir, issue.name);
    if (type && stage) return policyField(stage, type, message);
    if (stage?.upstream.ref !== undefined) return { field: "spec.upstreamDefinitions", message };
    if (stage) return { field: `spec.upstream.${stage.stage === "TEST" ? "sandbox" : "main"}`, message };
    return { field: "spec.upstream", message };
  }
  return { field: "spec", message };
}

function policyField(stage: GatewayStage, type: string, message: string): FieldError {
  const policy = stage.policies.find((p) => p.type === type);
  if (policy?.source.kind === "plugin") {
    return { field: "spec.policies", message: `plug-in '${policy.source.pluginName}' (${type}, bound for ${stage.stage}): ${message}` };
  }
  return { field: "spec.policies", message: `policy '${type}': ${message}` };
}

function stageUsingCluster(api: GatewayApi, ir: GatewayIr, cluster: string): GatewayStage | undefined {
  for (const host of ir.virtualHosts) {
    for (const route of host.routes) {
      if (route.kind === "forward" && route.destinations.some((d) => d.cluster === cluster)) return api.stages.find((s) => s.stage === route.stage);
    }
  }
  return undefined;
}

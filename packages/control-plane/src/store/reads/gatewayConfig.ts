import {
  DEFAULT_MAIN_VHOST,
  DEFAULT_SANDBOX_VHOST,
  type HttpMethod,
  type Stage,
} from "@apigw/shared";
import type { Knex } from "knex";
import type { RestApiRequest } from "../../rest/schemas/restApi";
import { iso, json } from "../repositories/util";
import { apiPoliciesForStage, inlinePolicies, type EffectivePolicy, type PluginBindingRow } from "./effectivePolicies";
import { readSnapshot } from "./snapshot";

/** What the translator needs of one deployed API, resolved per stage. */
export interface GatewayApi {
  id: string;
  handle: string;
  displayName: string;
  version: string;
  context: string;
  resolvedContext: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  upstreamDefinitions: NonNullable<RestApiRequest["spec"]["upstreamDefinitions"]>;
  subscriptionPlans: string[];
  deployedAt?: string;
  updatedAt: string;
  stages: GatewayStage[];
}

export interface GatewayStage {
  stage: Stage;
  vhost: string;
  upstream: GatewayUpstream;
  /** API-level policies for this stage (inline, or from a plug-in bound for the stage). */
  policies: EffectivePolicy[];
  operations: GatewayOperation[];
}

export interface GatewayUpstream {
  url?: string;
  ref?: string;
  hostRewrite: "auto" | "manual";
}

export interface GatewayOperation {
  method: HttpMethod;
  path: string;
  /** The operation's own upstream in this stage (instead of the stage's), when it sets one. */
  upstream?: GatewayUpstream;
  /** Policies set on this operation only (added to, or overriding, the API level ones). */
  policies: EffectivePolicy[];
}

export interface GatewayConfig {
  /** The store revision this configuration is exactly the state of. */
  revision: number;
  /** Deployed APIs, ordered by handle. */
  apis: GatewayApi[];
}

interface ApiRow {
  id: string;
  handle: string;
  resolved_context: string;
  document: unknown;
  deployed_at: Date | null;
  updated_at: Date;
}

/**
 * One consistent read of everything the translator turns into Envoy resources (or of some APIs
 * only, with `handles`). Undeployed APIs are left out (their bindings stay in the store and
 * return with them).
 */
export async function loadGatewayConfig(knex: Knex, options: { handles?: readonly string[] } = {}): Promise<GatewayConfig> {
  return readSnapshot(knex, async (tx, revision) => ({ revision, apis: await readGatewayApis(tx, options) }));
}

/** The deployed APIs (or some of them) as read by `db`: a read snapshot, or a write transaction that wants to see its own changes. */
export async function readGatewayApis(tx: Knex | Knex.Transaction, options: { handles?: readonly string[] } = {}): Promise<GatewayApi[]> {
  const query = tx("rest_apis").where({ deployment_state: "deployed" }).orderBy("handle");
  // `handles` limits the read to some APIs (an incremental update after a change notification).
  if (options.handles) query.whereIn("handle", [...options.handles]);
  const rows = (await query.select("id", "handle", "resolved_context", "document", "deployed_at", "updated_at")) as ApiRow[];
  const bindingQuery = tx("plugin_bindings as b")
    .join("plugins as p", "p.id", "b.plugin_id")
    .join("rest_apis as a", "a.id", "b.api_id")
    .where("a.deployment_state", "deployed")
    .orderBy([{ column: "b.api_id" }, { column: "b.stage" }, { column: "p.type" }]);
  if (options.handles) bindingQuery.whereIn("a.handle", [...options.handles]);
  const bindings = (await bindingQuery.select("b.api_id", "b.stage", "b.plugin_id", "p.name", "p.type", "p.params")) as PluginBindingRow[];
  const bindingsByApi = new Map<string, PluginBindingRow[]>();
  for (const binding of bindings) {
    const list = bindingsByApi.get(binding.api_id) ?? [];
    list.push(binding);
    bindingsByApi.set(binding.api_id, list);
  }
  return rows.map((row) => toGatewayApi(row, bindingsByApi.get(row.id) ?? []));
}

function toGatewayApi(row: ApiRow, bindings: PluginBindingRow[]): GatewayApi {
  const document = json<RestApiRequest>(row.document);
  const spec = document.spec;
  const apiInline = inlinePolicies(spec.policies, "api");
  type Upstream = NonNullable<RestApiRequest["spec"]["upstream"]["main"]>;
  const upstreamOf = (upstream: Upstream): GatewayUpstream => ({
    ...(upstream.url !== undefined ? { url: upstream.url } : {}),
    ...(upstream.ref !== undefined ? { ref: upstream.ref } : {}),
    hostRewrite: upstream.hostRewrite ?? "auto",
  });
  const operations = (name: Stage): GatewayOperation[] =>
    spec.operations.map((operation) => {
      const own = operation.upstream?.[name === "RELEASE" ? "main" : "sandbox"];
      return {
        method: operation.method,
        path: operation.path,
        ...(own ? { upstream: upstreamOf(own) } : {}),
        policies: inlinePolicies(operation.policies, "operation"),
      };
    });
  const stage = (name: Stage, vhost: string, upstream: Upstream): GatewayStage => ({
    stage: name,
    vhost,
    upstream: upstreamOf(upstream),
    policies: apiPoliciesForStage(apiInline, bindings.filter((b) => b.stage === name)),
    operations: operations(name),
  });
  const stages = [stage("RELEASE", spec.vhosts?.main ?? DEFAULT_MAIN_VHOST, spec.upstream.main)];
  if (spec.upstream.sandbox) stages.push(stage("TEST", spec.vhosts?.sandbox ?? DEFAULT_SANDBOX_VHOST, spec.upstream.sandbox));
  return {
    id: row.id,
    handle: row.handle,
    displayName: spec.displayName,
    version: spec.version,
    context: spec.context,
    resolvedContext: row.resolved_context,
    labels: document.metadata.labels ?? {},
    annotations: document.metadata.annotations ?? {},
    upstreamDefinitions: spec.upstreamDefinitions ?? [],
    subscriptionPlans: spec.subscriptionPlans ?? [],
    ...(row.deployed_at ? { deployedAt: iso(row.deployed_at)! } : {}),
    updatedAt: iso(row.updated_at)!,
    stages,
  };
}

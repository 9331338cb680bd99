import type { GatewayApi, GatewayConfig } from "../store/reads/gatewayConfig";
import { buildIr } from "./buildIr";
import { clusterResources } from "./envoy/clusters";
import { endpointResources } from "./envoy/endpoints";
import { listenerResources } from "./envoy/listener";
import { routeConfigurations } from "./envoy/routes";
import type { EnvoyResources, NamedResource } from "./envoy/types";
import type { GatewayIr, IrCluster, IrRoute } from "./ir";
import { resolveTranslatorOptions, type ResolvedTranslatorOptions, type TranslatorOptions } from "./options";
import { canonicalJson, compareStrings, deepFreeze, type Json } from "./util";

/*
 * The translator: GatewayConfig (one consistent read of the store) → Envoy v3 resources, pure and
 * deterministic (same input and options → byte-identical JSON.stringify output; the order of the
 * input's APIs does not matter).
 *
 *   GatewayConfig ──buildIr.ts──▶ GatewayIr (ir.ts) ──envoy/*.ts──▶ EnvoyResources
 *
 * envoy/: listener.ts (listeners + HCM), routes.ts (RouteConfiguration), clusters.ts,
 * endpoints.ts, httpFilters.ts (THE filter order: CORS, ext_authz, router), features/ (cors,
 * extAuthz, headers, circuitBreaker: one Envoy feature per file).
 *
 * Names: listeners `http-8080` / `https-8443`; one RouteConfiguration `apigw-routes` (option
 * routeConfigName); virtual hosts named by their domain (`*`, `sandbox-*`, `api.example.com`);
 * clusters `<scheme>_<host>_<port>[_<settings hash>]`; endpoints (EDS only) named as their cluster.
 */

export type { EnvoyResources, NamedResource } from "./envoy/types";
export type { GatewayIr } from "./ir";
export { buildIr } from "./buildIr";
export { DEFAULT_TRANSLATOR_OPTIONS, resolveTranslatorOptions, type TranslatorOptions } from "./options";
export { HTTP_FILTERS } from "./envoy/httpFilters";

const byName = (a: NamedResource, b: NamedResource) => compareStrings(a.name, b.name);

/**
 * Memoized Envoy JSON per set of resolved options: the listeners, and per frozen IR route /
 * IrCluster its JSON (deep-frozen), so that what did not change keeps its identity (see
 * buildIr.ts "Memoization"). A few sets of options at most are kept (a process normally uses one).
 */
interface EnvoyMemo {
  listeners: NamedResource[];
  routes: WeakMap<IrRoute, Json>;
  clusters: WeakMap<IrCluster, Json>;
  endpoints: WeakMap<IrCluster, Json>;
}

const MAX_MEMOS = 4;
const memos = new Map<string, EnvoyMemo>();

function memoFor(resolved: ResolvedTranslatorOptions): EnvoyMemo {
  const key = canonicalJson(resolved);
  let memo = memos.get(key);
  if (memo) {
    memos.delete(key); // most recently used last
  } else {
    const listeners = listenerResources(resolved).sort(byName);
    for (const l of listeners) deepFreeze(l.resource);
    memo = { listeners, routes: new WeakMap(), clusters: new WeakMap(), endpoints: new WeakMap() };
    while (memos.size >= MAX_MEMOS) memos.delete(memos.keys().next().value!);
  }
  memos.set(key, memo);
  return memo;
}

/** Envoy resources from an IR (for callers that already built one, e.g. to read its diagnostics). */
export function translateIr(ir: GatewayIr, options: TranslatorOptions = {}): EnvoyResources {
  const resolved = resolveTranslatorOptions(options);
  const memo = memoFor(resolved);
  return {
    listeners: memo.listeners.map((l) => ({ ...l })),
    routes: routeConfigurations(ir, resolved, memo.routes).sort(byName),
    clusters: clusterResources(ir, resolved, memo.clusters).sort(byName),
    endpoints: endpointResources(ir, resolved, memo.endpoints).sort(byName),
  };
}

export function translate(config: GatewayConfig, options: TranslatorOptions = {}): EnvoyResources {
  return translateIr(buildIr(config), options);
}

/**
 * Gateway targeting. An Envoy identifies the gateway it serves by its node's `cluster` (the ADS
 * server passes it here as `gatewayName`). An API is served by every gateway unless its
 * `metadata.labels` has `gateways`: a comma-separated list of gateway names (spaces ignored);
 * `*` or an empty value also means every gateway.
 */
export const GATEWAY_LABEL = "gateways";

export function apiServedBy(api: GatewayApi, gatewayName: string): boolean {
  const value = api.labels[GATEWAY_LABEL];
  if (value === undefined) return true;
  const names = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return names.length === 0 || names.includes("*") || names.includes(gatewayName);
}

export function selectApisForGateway(config: GatewayConfig, gatewayName: string): GatewayConfig {
  return { ...config, apis: config.apis.filter((api) => apiServedBy(api, gatewayName)) };
}

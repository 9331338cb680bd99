import { isIP } from "node:net";
import type { CircuitBreakerParams } from "@apigw/shared";
import type { GatewayApi, GatewayStage } from "../store/reads/gatewayConfig";
import type { IrCluster, IrUpstreamTarget } from "./ir";
import { parseDuration, shortHash } from "./util";

/*
 * Upstreams: a stage's `upstream.url`, or `upstream.ref` naming one of the API's
 * upstreamDefinitions (weighted URLs, basePath, connect timeout), become weighted targets, each a
 * cluster.
 *
 * Cluster names: `<scheme>_<host>_<port>` (`https_api.example.com_443`, `http_10.0.0.5_8080`,
 * `http_::1_80`), shared by every API and stage that uses the same target with the same settings.
 * When the settings differ from the defaults (an explicit connect timeout, a circuit breaker), the
 * name gets `_<first 8 hex digits of the SHA-256 of the settings>`, so that two APIs with different
 * settings for one host get two clusters and identical ones share one.
 *
 * The upstream path prefix is the URL's path followed by basePath (both without a trailing slash,
 * repeated slashes collapsed); a definition's weighted URLs are expected to share their path: the
 * first one with a weight above 0 gives it. Query strings in upstream URLs are not used.
 */

export interface ResolvedUpstream {
  destinations: { cluster: IrCluster; weight: number }[];
  /** Replaces the context in the upstream path; "" or `/a/b` (never a trailing slash). */
  prefix: string;
  warnings: string[];
}

const DEFAULT_PORTS = { http: 80, https: 443 } as const;

export function parseTarget(url: string): { target: IrUpstreamTarget; path: string } {
  const parsed = new URL(url);
  const scheme = parsed.protocol === "https:" ? "https" : parsed.protocol === "http:" ? "http" : undefined;
  if (!scheme) throw new Error(`not an http(s) URL: ${url}`);
  const bracketed = parsed.hostname.startsWith("[") && parsed.hostname.endsWith("]");
  const host = (bracketed ? parsed.hostname.slice(1, -1) : parsed.hostname).toLowerCase();
  if (!host) throw new Error(`URL without a host: ${url}`);
  const port = parsed.port ? Number(parsed.port) : DEFAULT_PORTS[scheme];
  const family = isIP(host);
  const hostForHeader = family === 6 ? `[${host}]` : host;
  const target: IrUpstreamTarget = {
    scheme,
    host,
    port,
    ipFamily: family === 4 ? 4 : family === 6 ? 6 : 0,
    authority: port === DEFAULT_PORTS[scheme] ? hostForHeader : `${hostForHeader}:${port}`,
  };
  return { target, path: normalizePrefix(parsed.pathname) };
}

/** `/a//b/` → `/a/b`; `/` → "". */
export function normalizePrefix(path: string): string {
  const collapsed = path.replace(/\/{2,}/g, "/");
  return collapsed.endsWith("/") ? collapsed.slice(0, -1) : collapsed;
}

export function clusterFor(target: IrUpstreamTarget, settings: { connectTimeoutMs?: number; circuitBreaker?: CircuitBreakerParams }): IrCluster {
  const base = `${target.scheme}_${target.host}_${target.port}`;
  const extra: Record<string, unknown> = {};
  if (settings.connectTimeoutMs !== undefined) extra.connectTimeoutMs = settings.connectTimeoutMs;
  if (settings.circuitBreaker) extra.circuitBreaker = settings.circuitBreaker;
  return {
    name: Object.keys(extra).length ? `${base}_${shortHash(extra)}` : base,
    target,
    ...(settings.connectTimeoutMs !== undefined ? { connectTimeoutMs: settings.connectTimeoutMs } : {}),
    ...(settings.circuitBreaker ? { circuitBreaker: settings.circuitBreaker } : {}),
  };
}

/** The weighted clusters and path prefix of one stage of one API. Throws when the stage's upstream cannot be used. */
export function resolveUpstream(api: GatewayApi, stage: GatewayStage, circuitBreaker: CircuitBreakerParams | undefined): ResolvedUpstream {
  const warnings: string[] = [];
  if (stage.upstream.url !== undefined) {
    const { target, path } = parseTarget(stage.upstream.url);
    return { destinations: [{ cluster: clusterFor(target, { circuitBreaker }), weight: 100 }], prefix: path, warnings };
  }
  const ref = stage.upstream.ref;
  const definition = api.upstreamDefinitions.find((d) => d.name === ref);
  if (!definition) throw new Error(`upstream ref '${ref}' names no upstream definition`);
  const connect = definition.timeout?.connect;
  const connectTimeoutMs = connect !== undefined ? parseDuration(connect, `upstream definition '${definition.name}' timeout.connect`) : undefined;
  const byCluster = new Map<string, { cluster: IrCluster; weight: number }>();
  let path: string | undefined;
  for (const upstream of definition.upstreams) {
    const weight = upstream.weight ?? 100;
    if (weight <= 0) continue;
    const parsed = parseTarget(upstream.url);
    if (path === undefined) path = parsed.path;
    else if (parsed.path !== path) warnings.push(`upstream definition '${definition.name}': URLs with different paths; '${path || "/"}' (of the first) is used for all`);
    const cluster = clusterFor(parsed.target, { ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}), circuitBreaker });
    const existing = byCluster.get(cluster.name);
    if (existing) existing.weight += weight;
    else byCluster.set(cluster.name, { cluster, weight });
  }
  if (byCluster.size === 0) throw new Error(`upstream definition '${definition.name}' has no upstream with a weight above 0`);
  const basePath = definition.basePath !== undefined ? normalizePrefix(definition.basePath) : "";
  return { destinations: [...byCluster.values()], prefix: normalizePrefix((path ?? "") + basePath), warnings: [...new Set(warnings)] };
}

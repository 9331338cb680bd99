import { ENVOY_TYPE_URLS } from "../../envoy/schema/strict";
import type { GatewayIr, IrCluster } from "../ir";
import type { ResolvedTranslatorOptions } from "../options";
import { deepFreeze, envoyDuration, typed, type Json } from "../util";
import { loadAssignment, usesEds } from "./endpoints";
import { circuitBreakerFields } from "./features/circuitBreaker";
import type { NamedResource } from "./types";

/*
 * One Cluster per upstream target and settings (names: see upstreams.ts).
 * - Host names: STRICT_DNS (option dnsClusterType: LOGICAL_DNS), dns_lookup_family from the
 *   option (V4_PREFERRED); IP literals: STATIC (or EDS with ipUpstreamsViaEds).
 * - connect_timeout: the upstream definition's timeout.connect, else the option (5s).
 * - https: transport socket `envoy.transport_sockets.tls` with UpstreamTlsContext: SNI = the host
 *   name (not sent for IP literals), the certificate verified against the system CA bundle and
 *   its subject alt names against the host (DNS name, or IP address for IP literals).
 * - circuitBreaker: features/circuitBreaker.ts.
 */

function tlsTransportSocket(cluster: IrCluster, options: ResolvedTranslatorOptions): Json {
  const t = cluster.target;
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: typed(ENVOY_TYPE_URLS.upstreamTlsContext, {
      ...(t.ipFamily === 0 ? { sni: t.host } : {}),
      common_tls_context: {
        validation_context: {
          trusted_ca: { filename: options.upstreamTrustedCaFile },
          match_typed_subject_alt_names: [
            { san_type: t.ipFamily === 0 ? "DNS" : "IP_ADDRESS", matcher: { exact: t.host } },
          ],
        },
      },
    }),
  };
}

export function envoyCluster(cluster: IrCluster, options: ResolvedTranslatorOptions): Json {
  const t = cluster.target;
  const connect = cluster.connectTimeoutMs !== undefined ? envoyDuration(cluster.connectTimeoutMs) : options.defaultConnectTimeout;
  const discovery: Json =
    t.ipFamily === 0
      ? { type: options.dnsClusterType, dns_lookup_family: options.dnsLookupFamily, load_assignment: loadAssignment(cluster) }
      : usesEds(cluster, options)
        ? { type: "EDS", eds_cluster_config: { eds_config: { ads: {}, resource_api_version: "V3" } } }
        : { type: "STATIC", load_assignment: loadAssignment(cluster) };
  return {
    name: cluster.name,
    type: discovery.type,
    connect_timeout: connect,
    ...Object.fromEntries(Object.entries(discovery).filter(([k]) => k !== "type")),
    ...(t.scheme === "https" ? { transport_socket: tlsTransportSocket(cluster, options) } : {}),
    ...circuitBreakerFields(cluster),
  };
}

/** The clusters; with `memo` (one per set of options), the JSON of a frozen IrCluster is made once and deep-frozen. */
export function clusterResources(ir: GatewayIr, options: ResolvedTranslatorOptions, memo?: WeakMap<IrCluster, Json>): NamedResource[] {
  return ir.clusters.map((c) => {
    let resource = memo && Object.isFrozen(c) ? memo.get(c) : undefined;
    if (!resource) {
      resource = envoyCluster(c, options);
      if (memo && Object.isFrozen(c)) memo.set(c, deepFreeze(resource));
    }
    return { name: c.name, typeUrl: ENVOY_TYPE_URLS.cluster, resource };
  });
}

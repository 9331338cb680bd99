import { ENVOY_TYPE_URLS } from "../../envoy/schema/strict";
import type { GatewayIr, IrCluster } from "../ir";
import type { ResolvedTranslatorOptions } from "../options";
import { deepFreeze, type Json } from "../util";
import type { NamedResource } from "./types";

/*
 * ClusterLoadAssignments. Every cluster has exactly one endpoint (its target). By default the
 * assignment is inline in the cluster (`load_assignment` of STRICT_DNS/LOGICAL_DNS/STATIC
 * clusters) and no `endpoints` resource is emitted. With the option `ipUpstreamsViaEds`, clusters
 * of IP-literal targets are EDS clusters and their assignment is an `endpoints` resource named
 * like the cluster (EDS accepts only IP literals, hence only those).
 *
 * Each endpoint carries `hostname` = the target's authority (host, plus the port when it is not
 * the scheme's default): what `auto_host_rewrite` puts in Host, also for IP targets (without it
 * Envoy would leave Host unchanged for STATIC/EDS hosts).
 */

export function usesEds(cluster: IrCluster, options: ResolvedTranslatorOptions): boolean {
  return options.ipUpstreamsViaEds && cluster.target.ipFamily !== 0;
}

export function loadAssignment(cluster: IrCluster): Json {
  const t = cluster.target;
  return {
    cluster_name: cluster.name,
    endpoints: [
      {
        lb_endpoints: [
          { endpoint: { address: { socket_address: { address: t.host, port_value: t.port } }, hostname: t.authority } },
        ],
      },
    ],
  };
}

/** The EDS assignments; with `memo`, the JSON of a frozen IrCluster is made once and deep-frozen. */
export function endpointResources(ir: GatewayIr, options: ResolvedTranslatorOptions, memo?: WeakMap<IrCluster, Json>): NamedResource[] {
  return ir.clusters
    .filter((c) => usesEds(c, options))
    .map((c) => {
      let resource = memo && Object.isFrozen(c) ? memo.get(c) : undefined;
      if (!resource) {
        resource = loadAssignment(c);
        if (memo && Object.isFrozen(c)) memo.set(c, deepFreeze(resource));
      }
      return { name: c.name, typeUrl: ENVOY_TYPE_URLS.clusterLoadAssignment, resource };
    });
}

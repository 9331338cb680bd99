import { Counter, Gauge, type Registry } from "prom-client";

/**
 * Prometheus metrics of the ADS server. Create them once per registry with createXdsMetrics and
 * pass them to createXdsServer. `group` is a gateway group (node.cluster): bounded by the number of
 * gateways, not by the number of Envoys.
 */
export interface XdsMetrics {
  /** NACKs received, by group, type (short name) and protocol. */
  nacks: Counter<"group" | "type" | "protocol">;
  /** Responses sent, by type and protocol. */
  responses?: Counter<"type" | "protocol">;
  /** Response bytes sent, by type and protocol. */
  responseBytes?: Counter<"type" | "protocol">;
  /** Open ADS streams, by protocol. */
  streams?: Gauge<"protocol">;
}

export function createXdsMetrics(registry: Registry): Required<XdsMetrics> {
  return {
    nacks: new Counter({
      name: "apigw_xds_nacks_total",
      help: "xDS responses rejected (NACKed) by Envoy, by gateway group, resource type and protocol",
      labelNames: ["group", "type", "protocol"] as const,
      registers: [registry],
    }),
    responses: new Counter({
      name: "apigw_xds_responses_total",
      help: "xDS responses sent, by resource type and protocol",
      labelNames: ["type", "protocol"] as const,
      registers: [registry],
    }),
    responseBytes: new Counter({
      name: "apigw_xds_response_bytes_total",
      help: "Bytes of xDS responses sent, by resource type and protocol",
      labelNames: ["type", "protocol"] as const,
      registers: [registry],
    }),
    streams: new Gauge({
      name: "apigw_xds_streams",
      help: "Open ADS streams, by protocol",
      labelNames: ["protocol"] as const,
      registers: [registry],
    }),
  };
}

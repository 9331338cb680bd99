import type { IrCluster } from "../../ir";
import { envoyDuration, parseDuration, type Json } from "../../util";

/*
 * circuitBreaker (API level) → the clusters of the API's stage: `circuit_breakers` thresholds
 * (DEFAULT priority) for the limits given, and `outlier_detection` ejecting a host after
 * `consecutiveErrors` consecutive 5xx (locally originated failures such as connect errors count
 * as 5xx) for `ejectionTime`, at most `maxEjectionPercent` of the hosts (Envoy's default 10 %).
 * Because these settings are part of the cluster, an API with a circuit breaker gets its own
 * cluster (the name carries a hash of the settings; see upstreams.ts).
 */

export function circuitBreakerFields(cluster: IrCluster): Json {
  const cb = cluster.circuitBreaker;
  if (!cb) return {};
  const thresholds: Json = {
    ...(cb.maxConnections !== undefined ? { max_connections: cb.maxConnections } : {}),
    ...(cb.maxPendingRequests !== undefined ? { max_pending_requests: cb.maxPendingRequests } : {}),
    ...(cb.maxRequests !== undefined ? { max_requests: cb.maxRequests } : {}),
  };
  return {
    ...(Object.keys(thresholds).length ? { circuit_breakers: { thresholds: [{ priority: "DEFAULT", ...thresholds }] } } : {}),
    outlier_detection: {
      consecutive_5xx: cb.consecutiveErrors,
      base_ejection_time: envoyDuration(parseDuration(cb.ejectionTime, "circuitBreaker.ejectionTime")),
      ...(cb.maxEjectionPercent !== undefined ? { max_ejection_percent: cb.maxEjectionPercent } : {}),
    },
  };
}

import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * Prometheus metrics of the ext_authz service. `createExtAuthzMetrics(registry)` registers them
 * on a given registry (the control plane's in the embedded mode); `createExtAuthzRegistry()` makes
 * a registry of its own with the process metrics, for the standalone process.
 */
export function createExtAuthzMetrics(registry: Registry) {
  const checks = new Counter({
    name: "apigw_ext_authz_checks_total",
    help: "ext_authz decisions by result (allowed, denied), X-Ca-Error-Code (empty when allowed) and credential type",
    labelNames: ["result", "code", "credential"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "apigw_ext_authz_check_duration_seconds",
    help: "Time to decide a check, from the decoded request to the decision",
    labelNames: ["result"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [registry],
  });
  const storeErrors = new Counter({
    name: "apigw_ext_authz_store_errors_total",
    help: "Checks that could not reach the credential store",
    registers: [registry],
  });
  const failOpen = new Counter({
    name: "apigw_ext_authz_fail_open_total",
    help: "Checks allowed without a decision because the store was unreachable and FAIL_OPEN is on",
    registers: [registry],
  });
  return { checks, duration, storeErrors, failOpen };
}

export type ExtAuthzMetrics = ReturnType<typeof createExtAuthzMetrics>;

export function createExtAuthzRegistry(): { registry: Registry; metrics: ExtAuthzMetrics } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "apigw_ext_authz_" });
  return { registry, metrics: createExtAuthzMetrics(registry) };
}

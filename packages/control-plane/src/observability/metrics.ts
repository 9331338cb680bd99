import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** One registry per process, exposed at /metrics on the admin port. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "apigw_" });
  const httpRequests = new Counter({
    name: "apigw_management_http_requests_total",
    help: "Management API requests by method, route and status code",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "apigw_management_http_request_duration_seconds",
    help: "Management API request latency",
    labelNames: ["method", "route"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const storeChanges = new Counter({
    name: "apigw_store_changes_total",
    help: "Committed store changes by entity",
    labelNames: ["entity"] as const,
    registers: [registry],
  });
  return { registry, httpRequests, httpDuration, storeChanges };
}

export type Metrics = ReturnType<typeof createMetrics>;

import http from "node:http";
import type { Registry } from "prom-client";
import type { CredentialStore } from "@apigw/shared";

/** One readiness check: resolves when fine, throws (with the reason) when not. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

/**
 * What ext_authz needs to decide from the credential store: Redis answers (`redis`), and it holds
 * a complete credential projection (`credential projection`: the marker a completed full
 * rebuild leaves; absent while a Redis that came back empty is being rebuilt, when checks that
 * miss data answer 503).
 */
export function storeReadiness(store: Pick<CredentialStore, "ping" | "projectionMarker">): ReadinessCheck[] {
  return [
    { name: "redis", check: () => store.ping() },
    {
      name: "credential projection",
      check: async () => {
        if ((await store.projectionMarker()) === null) throw new Error("no complete credential projection in the store (being rebuilt?)");
      },
    },
  ];
}

/**
 * The ext_authz admin port: `/health` (the process is up), `/ready` (every readiness check
 * passes: 200, else 503 naming the ones that fail), `/metrics` (Prometheus text). No credentials;
 * keep it off the public network.
 */
export function createExtAuthzAdminServer(registry: Registry, checks: ReadinessCheck[]): http.Server {
  return http.createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: unknown, type = "application/json") => {
      res.writeHead(status, { "Content-Type": type });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    try {
      if (req.method !== "GET" && req.method !== "HEAD") return send(405, { status: "error", message: "method not allowed" });
      if (path === "/health") return send(200, { status: "ok" });
      if (path === "/ready") {
        const results: { name: string; ok: boolean; error?: string }[] = [];
        for (const { name, check } of checks) {
          try {
            await check();
            results.push({ name, ok: true });
          } catch (error) {
            results.push({ name, ok: false, error: (error as Error).message });
            break; // later checks depend on the earlier ones (no projection without Redis)
          }
        }
        const ready = results.length === checks.length && results.every((r) => r.ok);
        return send(ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks: results });
      }
      if (path === "/metrics") return send(200, await registry.metrics(), registry.contentType);
      send(404, { status: "error", message: "not found" });
    } catch (error) {
      send(500, { status: "error", message: (error as Error).message });
    }
  });
}

import http from "node:http";
import type { Registry } from "prom-client";

/**
 * The ext_authz admin port: `/health` (the process is up), `/ready` (the credential store
 * answers a ping: 200 or 503), `/metrics` (Prometheus text). No credentials; keep it off the
 * public network.
 */
export function createExtAuthzAdminServer(registry: Registry, ping: () => Promise<void>): http.Server {
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
        try {
          await ping();
          return send(200, { status: "ready", checks: [{ name: "redis", ok: true }] });
        } catch (error) {
          return send(503, { status: "not ready", checks: [{ name: "redis", ok: false, error: (error as Error).message }] });
        }
      }
      if (path === "/metrics") return send(200, await registry.metrics(), registry.contentType);
      send(404, { status: "error", message: "not found" });
    } catch (error) {
      send(500, { status: "error", message: (error as Error).message });
    }
  });
}

import http from "node:http";
import type { Registry } from "prom-client";

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

/** A further GET endpoint of the admin port (e.g. `/xds/nodes`), given the query string. */
export type AdminHandler = (
  query: URLSearchParams,
) => { status: number; body: unknown; headers?: Record<string, string> } | Promise<{ status: number; body: unknown; headers?: Record<string, string> }>;

/**
 * The admin port: /health (the process is up), /ready (its dependencies answer), /metrics
 * (Prometheus), plus `handlers`. Kept off the management port so that it needs no credentials
 * and can be firewalled separately.
 */
export function createAdminServer(registry: Registry, checks: ReadinessCheck[], handlers: Record<string, AdminHandler> = {}): http.Server {
  return http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://admin");
    const path = url.pathname;
    const send = (status: number, body: unknown, type = "application/json") => {
      res.writeHead(status, { "Content-Type": type });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    try {
      if (path === "/health") return send(200, { status: "ok" });
      if (path === "/ready") {
        const results = await Promise.all(
          checks.map(async (c) => {
            try {
              await c.check();
              return { name: c.name, ok: true };
            } catch (error) {
              return { name: c.name, ok: false, error: (error as Error).message };
            }
          }),
        );
        const ready = results.every((r) => r.ok);
        return send(ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks: results });
      }
      if (path === "/metrics") return send(200, await registry.metrics(), registry.contentType);
      const handler = handlers[path];
      if (handler && req.method === "GET") {
        const result = await handler(url.searchParams);
        for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
        return send(result.status, result.body);
      }
      send(404, { status: "error", message: "not found" });
    } catch (error) {
      send(500, { status: "error", message: (error as Error).message });
    }
  });
}

import { randomUUID } from "node:crypto";
import express, { type NextFunction, type Request, type Response } from "express";
import { pinoHttp } from "pino-http";
import { usersFromConfig } from "../config";
import { ApiError } from "../errors";
import { STORE_RETRY_AFTER_SECONDS, isStoreUnavailable } from "../store/unavailable";
import type { Metrics } from "../observability/metrics";
import { basicAuth } from "./auth";
import { bodyParser } from "./body";
import { allowedMethods, mountRoutes } from "./framework";
import { buildOpenApiDocument } from "./openapi/document";
import { BASE_PATH } from "./paths";
import { allRoutes } from "./routes";
import type { Services } from "./services";

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

export function createManagementApp(services: Services, metrics?: Metrics) {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("query parser", "simple");
  const openapi = buildOpenApiDocument(allRoutes);

  app.use((req: Request, res: Response, next: NextFunction) => {
    const incoming = req.headers["x-request-id"];
    const id = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.locals.requestId = id;
    res.setHeader("X-Request-Id", id);
    const started = process.hrtime.bigint();
    res.on("finish", () => {
      const route = (res.locals.route as string | undefined) ?? "unmatched";
      metrics?.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      metrics?.httpDuration.observe({ method: req.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  });
  app.use(
    pinoHttp({
      logger: services.logger,
      genReqId: (_req, res) => res.getHeader("X-Request-Id") as string,
      customLogLevel: (_req, res, error) => (error || res.statusCode >= 500 ? "error" : res.statusCode >= 400 ? "warn" : "info"),
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
    }),
  );

  app.get(`${BASE_PATH}/openapi.json`, (_req, res) => {
    res.json(openapi);
  });

  const api = express.Router({ caseSensitive: true, strict: false });
  api.use(basicAuth(usersFromConfig(services.config)));
  api.use(bodyParser(services.config.BODY_LIMIT));
  mountRoutes(api, allRoutes, services);
  app.use(BASE_PATH, api);

  // Known path with another method: 405 with Allow; anything else: 404. Both in the error shape.
  app.use((req: Request, res: Response) => {
    const path = req.path.startsWith(BASE_PATH) ? req.path.slice(BASE_PATH.length) : null;
    const allow = path !== null ? allowedMethods(allRoutes, path) : [];
    if (allow.length > 0) {
      res.setHeader("Allow", allow.join(", "));
      res.status(405).json({ status: "error", message: `Method ${req.method} not allowed; allowed: ${allow.join(", ")}` });
      return;
    }
    res.status(404).json({ status: "error", message: `No resource at ${req.method} ${req.path}` });
  });

  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const requestId = res.locals.requestId as string;
    if (error instanceof ApiError) {
      for (const [name, value] of Object.entries(error.headers ?? {})) res.setHeader(name, value);
      res.status(error.status).json({
        status: "error",
        message: error.message,
        ...(error.errors ? { errors: error.errors } : {}),
      });
      return;
    }
    const status = (error as { status?: number; statusCode?: number }).status ?? (error as { statusCode?: number }).statusCode;
    const type = (error as { type?: string }).type;
    if (type === "entity.too.large" || status === 413) {
      res.status(413).json({ status: "error", message: `Request body exceeds the limit of ${services.config.BODY_LIMIT}` });
      return;
    }
    if (typeof status === "number" && status >= 400 && status < 500) {
      // Errors raised by express itself for the client's request (e.g. a malformed URL encoding).
      res.status(status).json({ status: "error", message: (error as Error).message || "Bad request" });
      return;
    }
    if (isStoreUnavailable(error)) {
      // The store is down, restarting or out of connections: the request changed nothing (or, if
      // the connection died at COMMIT, its outcome is unknown); retrying it is safe.
      services.logger.warn({ err: (error as Error).message, requestId, method: req.method, path: req.path }, "store unavailable");
      res.setHeader("Retry-After", String(STORE_RETRY_AFTER_SECONDS));
      res.status(503).json({ status: "error", message: "The configuration store is unavailable; retry later", requestId });
      return;
    }
    services.logger.error({ err: error, requestId, method: req.method, path: req.path }, "unexpected error");
    res.status(500).json({ status: "error", message: "Internal server error", requestId });
  });

  return { app, openapi };
}

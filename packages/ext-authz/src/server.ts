import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { CredentialStore } from "@apigw/shared";
import { createChecker, deny, type CheckInput, type CheckOptions, type Checker, type Decision } from "./check";
import type { ExtAuthzMetrics } from "./metrics";
import { createUnaryServer } from "./grpcServer";
import { assertWireLayout, CHECK_METHOD_PATH, checkSchemas } from "./protocol";
import { readCheckInput, writeCheckResponse } from "./wire";

export interface ExtAuthzServerOptions extends CheckOptions {
  /** Port for gRPC (default 9191; 0 picks a free one, see `port` on the result). */
  port?: number;
  /** Interface to listen on (default 0.0.0.0). */
  host?: string;
  /** Largest CheckRequest accepted (bytes; default 8 MiB: headers plus a forwarded body). */
  maxMessageBytes?: number;
  /** A connection that has not started a call this long after connecting is closed (ms; default 10 s, 0 = never). */
  firstRequestTimeoutMs?: number;
  /** A connection without any traffic this long is closed with GOAWAY (ms; default 5 min, 0 = never). */
  idleTimeoutMs?: number;
}

export interface ExtAuthzServerDeps {
  store: CredentialStore;
  /** The control plane's MASTER_KEY: opens the sealed AppSecrets. */
  masterKey: string;
  logger?: Logger;
  metrics?: ExtAuthzMetrics;
  options?: ExtAuthzServerOptions;
}

export interface ExtAuthzServer {
  /** The port actually bound. */
  port: number;
  checker: Checker;
  /** Stops accepting calls, lets in-flight checks finish for up to `graceMs` (default 5000), then closes. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Starts the gRPC `envoy.service.auth.v3.Authorization/Check` server. Stateless apart from short
 * in-memory caches; run any number of replicas against the same store.
 */
export async function createExtAuthzServer(deps: ExtAuthzServerDeps): Promise<ExtAuthzServer> {
  const options = deps.options ?? {};
  const logger = deps.logger;
  checkSchemas(); // load the descriptors now, not on the first call
  assertWireLayout(); // the hot-path codec matches them
  const checker = createChecker({ store: deps.store, masterKey: deps.masterKey, logger, metrics: deps.metrics, options });
  const maxMessageBytes = options.maxMessageBytes ?? 8 * 1024 * 1024;
  // gRPC on node:http2 (grpcServer.ts): the request bytes are read straight into a CheckInput and
  // the Decision written straight to CheckResponse bytes (wire.ts). Malformed bytes are a gRPC
  // error for that call only.
  const server = createUnaryServer<CheckInput, Decision>(
    {
      path: CHECK_METHOD_PATH,
      decode: readCheckInput,
      handle: (input) =>
        checker.check(input).catch((error: unknown) => {
          logger?.error({ err: { message: (error as Error)?.message } }, "check rejected unexpectedly");
          return deny(randomUUID(), "internalError", "NONE");
        }),
      encodeFrame: (decision) => writeCheckResponse(decision, 5),
    },
    { maxMessageBytes, firstRequestTimeoutMs: options.firstRequestTimeoutMs, idleTimeoutMs: options.idleTimeoutMs, logger },
  );

  const host = options.host ?? "0.0.0.0";
  const port = await server.listen(options.port ?? 9191, host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host);
  logger?.info({ port, host, failOpen: options.failOpen === true }, "ext_authz gRPC server listening");

  let closed: Promise<void> | undefined;
  return {
    port,
    checker,
    close(graceMs = 5000) {
      closed ??= server.close(graceMs);
      return closed;
    },
  };
}

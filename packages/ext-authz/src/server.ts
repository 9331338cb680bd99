import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Message } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { CredentialStore } from "@apigw/shared";
import { createChecker, type CheckOptions, type Checker } from "./check";
import type { ExtAuthzMetrics } from "./metrics";
import { authorizationService, checkInputOf, checkResponseOf, checkSchemas } from "./protocol";
import { REASONS } from "./reasons";

export interface ExtAuthzServerOptions extends CheckOptions {
  /** Port for gRPC (default 9191; 0 picks a free one, see `port` on the result). */
  port?: number;
  /** Interface to listen on (default 0.0.0.0). */
  host?: string;
  /** Largest CheckRequest accepted (bytes; default 8 MiB: headers plus a forwarded body). */
  maxMessageBytes?: number;
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
  const checker = createChecker({ store: deps.store, masterKey: deps.masterKey, logger, metrics: deps.metrics, options });
  const maxMessageBytes = options.maxMessageBytes ?? 8 * 1024 * 1024;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
  });

  server.addService(authorizationService(), {
    Check(call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) {
      let input;
      try {
        input = checkInputOf(call.request);
      } catch (error) {
        // Should not happen (checkInputOf only reads); never let it reach grpc-js as a crash.
        logger?.error({ err: { message: (error as Error).message } }, "unreadable CheckRequest");
        callback(null, checkResponseOf(internalErrorDecision()));
        return;
      }
      checker.check(input).then(
        (decision) => callback(null, checkResponseOf(decision)),
        (error: unknown) => {
          logger?.error({ err: { message: (error as Error)?.message } }, "check rejected unexpectedly");
          callback(null, checkResponseOf(internalErrorDecision()));
        },
      );
    },
  } as grpc.UntypedServiceImplementation);

  const host = options.host ?? "0.0.0.0";
  const address = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${address}:${options.port ?? 9191}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  logger?.info({ port, host, failOpen: options.failOpen === true }, "ext_authz gRPC server listening");

  let closed: Promise<void> | undefined;
  return {
    port,
    checker,
    close(graceMs = 5000) {
      closed ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closed;
    },
  };
}

function internalErrorDecision() {
  const reason = REASONS.internalError;
  const requestId = randomUUID();
  return {
    allowed: false as const,
    requestId,
    reason: "internalError" as const,
    status: reason.status,
    code: reason.code,
    message: reason.message,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "x-ca-error-message": reason.message,
      "x-ca-error-code": reason.code,
      "x-ca-request-id": requestId,
    },
    body: JSON.stringify({ code: reason.code, message: reason.message }),
    credential: "NONE" as const,
  };
}

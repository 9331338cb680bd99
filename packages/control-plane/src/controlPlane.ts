import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import http, { createServer } from "node:http";
import {
  MemoryCredentialStore,
  RedisCredentialStore,
  SecretBox,
  connectRedis,
  randomHex,
  type CredentialStore,
} from "@apigw/shared";
import { CredentialProjector } from "./projection/projector";
import { GatewayPipeline } from "./pipeline/gatewayPipeline";
import type { TranslatorOptions } from "./translator";
import { createExtAuthzMetrics, createExtAuthzServer, type ExtAuthzServer } from "@apigw/ext-authz";
import { createXdsMetrics, createXdsServer, xdsAdminHandlers, type XdsServer } from "./xds";
import { createAdminServer } from "./admin/server";
import type { Config } from "./config";
import { createLogger, type Logger } from "./observability/logger";
import { createMetrics, type Metrics } from "./observability/metrics";
import { createManagementApp } from "./rest/app";
import { CHANGE_CHANNEL, setAdmissionCheck, type ChangeNotification } from "./store/changes";
import { admissionCheck } from "./pipeline/admission";
import { SharedGatewayStatus } from "./pipeline/sharedGatewayStatus";
import { openDatabase, type Database } from "./store/database";
import { migrateToLatest } from "./store/migrate";

export interface ControlPlane {
  config: Config;
  database: Database;
  credentialStore: CredentialStore;
  projector: CredentialProjector;
  pipeline: GatewayPipeline;
  xds: XdsServer;
  xdsPort: number;
  /** The ext_authz service when it runs inside this process (the embedded default). */
  extAuthz?: ExtAuthzServer;
  logger: Logger;
  metrics: Metrics;
  managementUrl: string;
  adminUrl: string;
  stop(): Promise<void>;
}

/**
 * The master key encrypts AppSecrets. With a Postgres server it must be given; the embedded
 * default keeps a generated one beside its data so that `npm start` needs no set-up.
 */
function masterKey(config: Config, logger: Logger): string {
  if (config.MASTER_KEY) return config.MASTER_KEY;
  if (config.DATABASE_URL) {
    throw new Error("MASTER_KEY must be set when DATABASE_URL is (it encrypts application secrets)");
  }
  if (config.DATA_DIR === "memory://") return randomHex(32);
  const file = resolve(config.DATA_DIR, "master.key");
  if (!existsSync(file)) {
    mkdirSync(config.DATA_DIR, { recursive: true });
    writeFileSync(file, randomHex(32) + "\n", { mode: 0o600 });
    logger.warn({ file }, "generated a master key for the embedded store; set MASTER_KEY in production");
  }
  return readFileSync(file, "utf8").trim();
}

/** What the translator takes from the environment (the rest are its documented defaults). */
export function translatorOptions(config: Config): TranslatorOptions {
  const tls =
    config.GATEWAY_TLS_CERT_FILE && config.GATEWAY_TLS_KEY_FILE
      ? {
          port: config.GATEWAY_TLS_PORT,
          certificateChain: { filename: config.GATEWAY_TLS_CERT_FILE },
          privateKey: { filename: config.GATEWAY_TLS_KEY_FILE },
        }
      : undefined;
  return { httpPort: config.GATEWAY_HTTP_PORT, ...(tls ? { tls } : {}) };
}

/** Redis when configured (single server, Sentinel or Cluster); otherwise the in-process store of the embedded default. */
export function createCredentialStore(config: Config): CredentialStore {
  if (config.REDIS_URL || config.REDIS_SENTINELS || config.REDIS_CLUSTER_NODES) {
    return new RedisCredentialStore(
      connectRedis({
        url: config.REDIS_URL,
        sentinels: config.REDIS_SENTINELS,
        sentinelMaster: config.REDIS_SENTINEL_MASTER,
        clusterNodes: config.REDIS_CLUSTER_NODES,
      }),
    );
  }
  return new MemoryCredentialStore();
}

/** How long /ready waits for the database before it reports it unreachable. */
const READY_CHECK_TIMEOUT_MS = 2000;
/** How long the published xDS snapshots may trail the store's revision without progress before /ready turns false. */
const PUBLISH_LAG_BOUND_MS = 10_000;

async function withTimeout(work: Promise<unknown>, ms: number, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function listen(server: http.Server, port: number, host: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address() as AddressInfo;
      const shownHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
      resolvePromise(`http://${shownHost}:${address.port}`);
    });
  });
}

export async function startControlPlane(config: Config, logger = createLogger(config.LOG_LEVEL, "control-plane")): Promise<ControlPlane> {
  if (config.ADMIN_USER === "admin" && config.ADMIN_PASSWORD === "admin") {
    logger.warn("the management API uses the default credentials admin/admin; set ADMIN_USER and ADMIN_PASSWORD");
  }
  const key = masterKey(config, logger);
  const secretBox = new SecretBox(key);
  const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, logger });
  const applied = await migrateToLatest(database.knex);
  if (applied.length) logger.info({ applied }, "database migrations applied");

  // What is accepted reaches Envoy: every write that changes an API is checked before it commits.
  setAdmissionCheck(database.knex, admissionCheck(translatorOptions(config)));

  const metrics = createMetrics();
  const unlisten = await database.listen(
    CHANGE_CHANNEL,
    (payload) => {
      try {
        const notification = JSON.parse(payload) as ChangeNotification;
        for (const change of notification.changes) metrics.storeChanges.inc({ entity: change.entity });
        logger.debug({ revision: notification.revision, changes: notification.changes.length }, "store changed");
      } catch {
        logger.warn("ignored a malformed change notification");
      }
    },
    () => logger.info("change feed reconnected"),
  );

  const credentialStore = createCredentialStore(config);
  const projector = new CredentialProjector({ knex: database.knex, database, store: credentialStore, logger, metrics: metrics.registry });
  await projector.start();

  const pipeline = new GatewayPipeline({
    knex: database.knex,
    database,
    logger,
    coalesceMs: config.XDS_COALESCE_MS,
    registry: metrics.registry,
    translator: translatorOptions(config),
  });
  await pipeline.start();
  const xds = await createXdsServer({
    cache: pipeline.cache,
    logger,
    metrics: createXdsMetrics(metrics.registry),
    port: config.XDS_PORT,
    host: config.HOST,
  });

  // The embedded default runs ext_authz here, on the in-process credential store; with Redis it
  // is its own process (`npm run start:ext-authz`) unless EXT_AUTHZ_EMBEDDED=true.
  const embedExtAuthz = config.EXT_AUTHZ_EMBEDDED ? config.EXT_AUTHZ_EMBEDDED === "true" : credentialStore instanceof MemoryCredentialStore;
  const extAuthz = embedExtAuthz
    ? await createExtAuthzServer({
        store: credentialStore,
        masterKey: key,
        logger: logger.child({ component: "ext_authz" }),
        metrics: createExtAuthzMetrics(metrics.registry),
        options: { port: config.EXT_AUTHZ_PORT, host: config.HOST },
      })
    : undefined;

  // Every replica answers the same status.gateways: Envoys connected to any replica, through the store.
  const sharedStatus = new SharedGatewayStatus(database.knex, xds, logger);
  sharedStatus.start();
  const gateways = {
    connectedGateways: () => sharedStatus.connectedGateways(),
    apiStatus: (handle: string) => pipeline.apiStatus(handle),
  };
  const { app } = createManagementApp({ config, database, secretBox, logger, gateways }, metrics);
  const management = createServer(app);
  management.requestTimeout = 30_000;
  management.headersTimeout = 10_000;
  const admin = createAdminServer(
    metrics.registry,
    [
      { name: "database", check: () => withTimeout(database.knex.raw("SELECT 1"), READY_CHECK_TIMEOUT_MS, "the database did not answer") },
      {
        name: "gateway configuration",
        check: async () => {
          const health = pipeline.health(PUBLISH_LAG_BOUND_MS);
          if (health.failures > 0) throw new Error(`cannot reload from the store: ${health.lastError}`);
          if (!health.ok) {
            throw new Error(`published revision ${health.publishedRevision} behind store revision ${health.storeRevision} for ${health.behindMs} ms`);
          }
        },
      },
      { name: "credential store", check: () => credentialStore.ping() },
      {
        name: "credential projection",
        check: async () => {
          const status = projector.status();
          if (status.lagging) throw new Error(`projection lagging: ${status.lastError ?? "catching up"}`);
        },
      },
    ],
    xdsAdminHandlers({ server: xds, cache: pipeline.cache }),
  );
  const managementUrl = await listen(management, config.MANAGEMENT_PORT, config.HOST);
  const adminUrl = await listen(admin, config.ADMIN_PORT, config.HOST);
  logger.info(
    { managementUrl, adminUrl, xdsPort: xds.port, extAuthzPort: extAuthz?.port, database: database.kind, credentialStore: credentialStore.constructor.name },
    "control plane started",
  );

  return {
    config,
    database,
    credentialStore,
    projector,
    pipeline,
    xds,
    xdsPort: xds.port,
    extAuthz,
    logger,
    metrics,
    managementUrl,
    adminUrl,
    async stop() {
      await Promise.all([
        new Promise<void>((r) => management.close(() => r())),
        new Promise<void>((r) => admin.close(() => r())),
      ]);
      management.closeAllConnections();
      admin.closeAllConnections();
      await extAuthz?.close();
      await sharedStatus.stop();
      await xds.close();
      await pipeline.stop();
      await projector.stop();
      await unlisten();
      await credentialStore.close();
      await database.close();
    },
  };
}

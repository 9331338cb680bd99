import { Cluster } from "ioredis";
import { connectRedis, RedisCredentialStore } from "@apigw/shared";
import { batchWritesPerTurn } from "./redisBatching";
import { createExtAuthzAdminServer, storeReadiness } from "./admin";
import { loadExtAuthzConfig } from "./config";
import { createExtAuthzLogger } from "./logger";
import { createExtAuthzRegistry } from "./metrics";
import { createExtAuthzServer } from "./server";

/**
 * `npm run start:ext-authz`: the ext_authz service as its own process. Reads only Redis; any
 * number of replicas. gRPC on EXT_AUTHZ_PORT, /health /ready /metrics on EXT_AUTHZ_ADMIN_PORT.
 */
let config;
try {
  config = loadExtAuthzConfig();
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
const logger = createExtAuthzLogger(config.LOG_LEVEL);

try {
  const redisTarget = config.REDIS_CLUSTER_NODES
    ? { mode: "cluster", nodes: config.REDIS_CLUSTER_NODES }
    : config.REDIS_SENTINELS
      ? { mode: "sentinel", sentinels: config.REDIS_SENTINELS, master: config.REDIS_SENTINEL_MASTER }
      : { mode: "single", url: (config.REDIS_URL ?? "redis://127.0.0.1:6379").replace(/\/\/[^@/]*@/, "//***@") };
  const redis = connectRedis({
    url: config.REDIS_URL,
    sentinels: config.REDIS_SENTINELS,
    sentinelMaster: config.REDIS_SENTINEL_MASTER,
    clusterNodes: config.REDIS_CLUSTER_NODES,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  // Checks arriving together send their commands (the scope read; then the nonce and counters
  // script) together: one socket write per event-loop turn instead of one per command
  // (redisBatching.ts). A Cluster client has a connection per node: there ioredis's
  // auto-pipelining does the batching (it reads the flag per command, so setting it here is enough).
  if (redis instanceof Cluster) redis.options.enableAutoPipelining = true;
  else batchWritesPerTurn(redis);
  // Connection errors are reported by ioredis as events; without a listener they would be thrown.
  let redisDown = false;
  redis.on("error", (error: Error) => {
    if (!redisDown) logger.warn({ err: { message: error.message } }, "Redis connection error (checks fail closed until it returns)");
    redisDown = true;
  });
  redis.on("ready", () => {
    if (redisDown) logger.info("Redis connection restored");
    redisDown = false;
  });
  const store = new RedisCredentialStore(redis);
  const { registry, metrics } = createExtAuthzRegistry();
  const server = await createExtAuthzServer({
    store,
    masterKey: config.MASTER_KEY,
    logger,
    metrics,
    options: {
      port: config.EXT_AUTHZ_PORT,
      host: config.EXT_AUTHZ_HOST,
      failOpen: config.FAIL_OPEN,
      trustForwardedFor: config.TRUST_FORWARDED_FOR,
      secretCacheMs: config.SECRET_CACHE_MS,
      firstRequestTimeoutMs: config.EXT_AUTHZ_FIRST_REQUEST_TIMEOUT_MS,
      idleTimeoutMs: config.EXT_AUTHZ_IDLE_TIMEOUT_MS,
    },
  });
  const admin = createExtAuthzAdminServer(registry, storeReadiness(store));
  await new Promise<void>((resolve, reject) => {
    admin.once("error", reject);
    admin.listen(config.EXT_AUTHZ_ADMIN_PORT, config.EXT_AUTHZ_HOST, () => resolve());
  });
  logger.info({ redis: redisTarget, adminPort: config.EXT_AUTHZ_ADMIN_PORT, failOpen: config.FAIL_OPEN }, "ext_authz started");
  if (config.FAIL_OPEN) logger.warn("FAIL_OPEN is on: requests are allowed without checks while Redis is unreachable");

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await server.close(config.SHUTDOWN_GRACE_MS);
    await new Promise<void>((resolve) => admin.close(() => resolve()));
    await store.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
} catch (error) {
  logger.fatal({ err: { message: (error as Error).message } }, "ext_authz failed to start");
  process.exit(1);
}

import { RedisCredentialStore, connectRedis, redisReady } from "@apigw/shared";
import { loadConfig } from "../config";
import { createLogger } from "../observability/logger";
import { openDatabase } from "../store/database";
import { CredentialProjector } from "./projector";

/**
 * `npm run projection:rebuild`: rewrites the whole credential projection in Redis from Postgres
 * once (each scope replaced atomically, stale scopes removed), prints the number of scopes and
 * exits. Safe while the control plane and ext_authz are running.
 *
 * Needs DATABASE_URL and Redis: REDIS_URL, or REDIS_SENTINELS (+ REDIS_SENTINEL_MASTER), or
 * REDIS_CLUSTER_NODES.
 */
const config = loadConfig();
const logger = createLogger(config.LOG_LEVEL === "info" ? "warn" : config.LOG_LEVEL, "projection-rebuild");
const env = process.env;

if (!config.DATABASE_URL) {
  process.stderr.write("projection:rebuild needs DATABASE_URL (the embedded database keeps its projection in process)\n");
  process.exit(2);
}
if (!config.REDIS_URL && !env.REDIS_SENTINELS && !env.REDIS_CLUSTER_NODES) {
  process.stderr.write("projection:rebuild needs REDIS_URL (or REDIS_SENTINELS / REDIS_CLUSTER_NODES)\n");
  process.exit(2);
}

const redis = connectRedis({
  url: config.REDIS_URL,
  sentinels: env.REDIS_SENTINELS,
  sentinelMaster: env.REDIS_SENTINEL_MASTER,
  clusterNodes: env.REDIS_CLUSTER_NODES,
  commandTimeoutMs: 10_000,
});
redis.on("error", () => undefined); // reported through the failing commands below
const store = new RedisCredentialStore(redis);
const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, logger });

let exitCode = 0;
try {
  await redisReady(redis, 10_000);
  const projector = new CredentialProjector({ knex: database.knex, database, store, logger });
  const result = await projector.rebuildAll();
  process.stdout.write(`projected ${result.scopes} scopes at revision ${result.revision}; removed ${result.removed} stale scopes\n`);
} catch (error) {
  process.stderr.write(`projection rebuild failed: ${(error as Error).message}\n`);
  exitCode = 1;
} finally {
  await store.close();
  await database.close();
}
process.exit(exitCode);

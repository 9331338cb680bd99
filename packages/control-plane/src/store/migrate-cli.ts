import { loadConfig } from "../config";
import { createLogger } from "../observability/logger";
import { openDatabase } from "./database";
import { migrateToLatest } from "./migrate";

/** `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database) and exits. */
const config = loadConfig();
const logger = createLogger(config.LOG_LEVEL, "migrate");
const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, logger });
try {
  const applied = await migrateToLatest(database.knex);
  logger.info({ applied }, applied.length ? "migrations applied" : "schema already up to date");
} finally {
  await database.close();
}

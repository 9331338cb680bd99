import { loadConfig } from "./config";
import { startControlPlane } from "./controlPlane";
import { createLogger } from "./observability/logger";

/** `npm start`: the control plane, on the embedded database unless DATABASE_URL is set. */
const config = loadConfig();
const logger = createLogger(config.LOG_LEVEL, "control-plane");
try {
  const controlPlane = await startControlPlane(config, logger);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await controlPlane.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
} catch (error) {
  logger.fatal({ err: error }, "control plane failed to start");
  process.exit(1);
}

import knexPkg, { type Knex } from "knex";
import pg from "pg";
import type { Logger } from "../observability/logger";
import { openEmbedded } from "./embedded";
import { PgListener, type NotificationHandler } from "./pgListener";

// Revisions and counts are bigint in Postgres; they stay far below 2^53, so read them as numbers.
pg.types.setTypeParser(20, (value) => Number(value));

export type { NotificationHandler };

/**
 * How long a request waits for a connection before it fails (and the management API answers 503
 * with Retry-After): a few seconds, not knex's default minute, so that an outage is reported
 * while the client is still waiting. Connecting to a server that does not answer fails as fast.
 */
export const CONNECT_TIMEOUT_MS = 5000;

/**
 * One Postgres database, either a server (DATABASE_URL) or embedded PGlite in a local folder.
 * Both give knex and LISTEN/NOTIFY; the rest of the code cannot tell them apart.
 */
export interface Database {
  knex: Knex;
  kind: "postgres" | "embedded";
  /** Delivers NOTIFY payloads on `channel`; `onReconnect` fires after the listener recovered from a lost connection (a consumer should reload, it may have missed notifications). */
  listen(channel: string, handler: NotificationHandler, onReconnect?: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export async function openDatabase(options: { url?: string; dataDir: string; logger: Logger }): Promise<Database> {
  return options.url ? openServer(options.url, options.logger) : openEmbedded(options.dataDir, options.logger);
}

async function openServer(url: string, logger: Logger): Promise<Database> {
  // keepAlive: a connection whose server vanished without a reset (a failover behind a virtual
  // IP, a cut network) is noticed by TCP instead of hanging. Knex keeps an error listener on every
  // pooled client (it marks the client disposed and never hands it out again), so a server going
  // away while clients sit idle in the pool does not crash the process.
  const client = { connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: 10_000 };
  const listeners: PgListener[] = [];
  const knex = knexPkg.knex({
    client: "pg",
    connection: { connectionString: url, ...client },
    pool: {
      min: 0,
      max: 10,
      // A new pooled connection after an outage: the change listeners need not wait out their backoff.
      afterCreate(connection: unknown, done: (error: Error | null, connection: unknown) => void) {
        for (const listener of listeners) listener.wake();
        done(null, connection);
      },
    },
    acquireConnectionTimeout: CONNECT_TIMEOUT_MS,
    log: knexLog(logger),
  });
  return {
    knex,
    kind: "postgres",
    async listen(channel, handler, onReconnect) {
      const listener = new PgListener(url, channel, handler, onReconnect ?? (() => undefined), logger, { client });
      await listener.start();
      listeners.push(listener);
      return () => listener.close();
    },
    async close() {
      await Promise.all(listeners.map((l) => l.close()));
      await knex.destroy();
    },
  };
}

/** Knex's own messages into the structured log (it would print them on the console). */
function knexLog(logger: Logger): Knex.Logger {
  const text = (message: unknown) => (typeof message === "string" ? message : String((message as Error)?.message ?? message));
  return {
    // "Connection Error: …" is a pooled connection found dead and discarded: expected while the
    // server restarts, and the requests it affects are answered (503) and logged on their own.
    warn: (message) => (text(message).startsWith("Connection Error") ? logger.debug({ component: "knex" }, text(message)) : logger.warn({ component: "knex" }, text(message))),
    error: (message) => logger.error({ component: "knex" }, text(message)),
    debug: (message) => logger.debug({ component: "knex" }, text(message)),
    deprecate: (method, alternative) => logger.warn({ component: "knex" }, `${method} is deprecated; use ${alternative}`),
  };
}

import knexPkg, { type Knex } from "knex";
import pg from "pg";
import type { Logger } from "../observability/logger";
import { openEmbedded } from "./embedded";

// Revisions and counts are bigint in Postgres; they stay far below 2^53, so read them as numbers.
pg.types.setTypeParser(20, (value) => Number(value));

export type NotificationHandler = (payload: string) => void;

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
  const knex = knexPkg.knex({ client: "pg", connection: url, pool: { min: 0, max: 10 } });
  const listeners: { close(): Promise<void> }[] = [];
  return {
    knex,
    kind: "postgres",
    async listen(channel, handler, onReconnect) {
      const listener = new PgListener(url, channel, handler, onReconnect ?? (() => undefined), logger);
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

/**
 * A dedicated connection that LISTENs (a pooled one would drop the subscription when returned).
 * It reconnects with capped backoff and tells the consumer, which then reloads what it may have
 * missed: notifications are the fast path, never the only source of truth.
 */
class PgListener {
  private client?: pg.Client;
  private closed = false;
  private attempt = 0;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly handler: NotificationHandler,
    private readonly onReconnect: () => void,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on("notification", (message) => {
      if (message.channel === this.channel && message.payload !== undefined) this.handler(message.payload);
    });
    client.on("error", (error) => {
      this.logger.warn({ err: error.message, channel: this.channel }, "change listener connection failed");
      void this.reconnect();
    });
    client.on("end", () => void this.reconnect());
    await client.connect();
    await client.query(`LISTEN "${this.channel.replace(/"/g, '""')}"`);
    this.client = client;
    this.attempt = 0;
  }

  private reconnecting = false;
  private async reconnect(): Promise<void> {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = true;
    this.client?.removeAllListeners();
    this.client = undefined;
    while (!this.closed) {
      const delay = Math.min(5000, 100 * 2 ** this.attempt++);
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.connect();
        this.logger.info({ channel: this.channel }, "change listener reconnected");
        this.reconnecting = false;
        this.onReconnect();
        return;
      } catch (error) {
        this.logger.warn({ err: (error as Error).message, delayMs: delay }, "change listener reconnect failed");
      }
    }
    this.reconnecting = false;
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners();
      client.on("error", () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}

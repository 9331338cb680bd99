import pg from "pg";
import type { Logger } from "../observability/logger";
import { retryDelay } from "./unavailable";

export type NotificationHandler = (payload: string) => void;

/** Settings of the dedicated LISTEN connection (the defaults suit production; tests shorten them). */
export interface PgListenerOptions {
  /** Client settings shared with the pool (connection timeout, keep-alive). */
  client?: Omit<pg.ClientConfig, "connectionString">;
  /** Backoff between reconnection attempts: doubles from `retryInitialMs` up to `retryMaxMs`. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /**
   * A connection that only LISTENs sends nothing, so a server that vanished without a reset (a
   * failover behind a virtual IP, a cut network) would go unnoticed for as long as TCP keep-alive
   * takes (minutes). Every `heartbeatMs` it runs `SELECT 1`; no answer within
   * `heartbeatTimeoutMs` counts as a lost connection.
   */
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
}

/**
 * A dedicated connection that LISTENs (a pooled one would drop the subscription when returned).
 *
 * When the connection is lost (Postgres restarted, failed over, the backend terminated, the
 * network cut) it reconnects with capped, jittered backoff, LISTENs again and only then tells the
 * consumer, which reloads everything: notifications sent while nobody listened are gone, so they
 * are the fast path, never the only source of truth.
 *
 * A pg client may emit `error` more than once as it dies (the server's termination notice, then
 * "Connection terminated unexpectedly" when the socket closes); an `error` without a listener
 * would end the process. So every client ever created here keeps its error listener for life.
 * One warning per outage, one info line when it is over; the attempts in between log at debug.
 */
export class PgListener {
  private client?: pg.Client;
  private closed = false;
  private reconnecting = false;
  private attempt = 0;
  private wakeUp?: () => void;
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly handler: NotificationHandler,
    private readonly onReconnect: () => void,
    private readonly logger: Logger,
    private readonly options: PgListenerOptions = {},
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...this.options.client, connectionString: this.url });
    // Installed before anything can fail and never removed: see the class comment.
    let dead = false;
    client.on("error", (error) => {
      dead = true;
      this.lost(client, error);
    });
    client.on("end", () => {
      dead = true;
      this.lost(client);
    });
    client.on("notification", (message) => {
      if (client === this.client && message.channel === this.channel && message.payload !== undefined) this.handler(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${this.channel.replace(/"/g, '""')}"`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (dead) throw new Error("Connection terminated while subscribing");
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.startHeartbeat(client);
  }

  private startHeartbeat(client: pg.Client): void {
    clearInterval(this.heartbeat);
    const every = this.options.heartbeatMs ?? 30_000;
    if (every <= 0) return;
    let beating = false;
    this.heartbeat = setInterval(() => {
      if (client !== this.client || beating) return;
      beating = true;
      client
        .query({ text: "SELECT 1", query_timeout: this.options.heartbeatTimeoutMs ?? 10_000 } as pg.QueryConfig)
        .catch((error: Error) => {
          // The socket may hang rather than fail: destroy it, so nothing waits on it any more.
          destroySocket(client);
          this.lost(client, error);
        })
        .finally(() => (beating = false));
    }, every);
    this.heartbeat.unref();
  }

  /** The current connection failed or ended: drop it and reconnect (once, whatever it emits next). */
  private lost(client: pg.Client, error?: Error): void {
    if (client !== this.client || this.closed) return;
    this.client = undefined;
    clearInterval(this.heartbeat);
    this.logger.warn({ err: error?.message ?? "connection ended", channel: this.channel }, "change listener lost its connection; reconnecting");
    void client.end().catch(() => undefined);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = true;
    const since = Date.now();
    try {
      while (!this.closed) {
        const delay = retryDelay(this.attempt++, this.options.retryInitialMs ?? 100, this.options.retryMaxMs ?? 5000);
        await new Promise<void>((r) => {
          const timer = setTimeout(r, delay);
          timer.unref();
          this.wakeUp = () => {
            clearTimeout(timer);
            r();
          };
        });
        this.wakeUp = undefined;
        if (this.closed) return;
        try {
          await this.connect();
        } catch (error) {
          this.logger.debug({ err: (error as Error).message, channel: this.channel, attempt: this.attempt, delayMs: delay }, "change listener reconnect failed");
          continue;
        }
        if (this.closed) return;
        this.logger.info({ channel: this.channel, attempts: this.attempt, downMs: Date.now() - since }, "change listener reconnected; reloading");
        this.attempt = 0;
        this.onReconnect();
        return;
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /** Whether it holds a live, subscribed connection (false while reconnecting). */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /**
   * The server answers again (another connection to it just succeeded): try now rather than at
   * the end of the backoff, so that the consumer's reload, and the changes made meanwhile, are
   * not held back by a wait chosen while the server was down.
   */
  wake(): void {
    this.wakeUp?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    // Its error listener stays (see the class comment). end() waits for the server's goodbye,
    // which a silent network never delivers: after a while the socket is simply destroyed.
    if (client) {
      let timer: NodeJS.Timeout | undefined;
      const ended = client.end().catch(() => undefined);
      const gaveUp = new Promise<void>((r) => (timer = setTimeout(r, 2000)));
      await Promise.race([ended, gaveUp]);
      clearTimeout(timer);
      destroySocket(client);
    }
  }
}

/** pg exposes no way to drop a connection without the server's cooperation; its socket is `connection.stream`. */
function destroySocket(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

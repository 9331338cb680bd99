import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { PGlite, QueryOptions, Results } from "@electric-sql/pglite";
import knexPkg, { type Knex } from "knex";
import { ApiError } from "../errors";
import type { Logger } from "../observability/logger";
import type { Database, NotificationHandler } from "./database";

/**
 * The embedded store: PGlite (Postgres compiled to WebAssembly, in this process) behind knex-pglite.
 *
 * PGlite's engine runs on Node's own stack. When it throws something that is not a Postgres error
 * (a RangeError "Maximum call stack size exceeded" from a statement with a very deep expression,
 * a WebAssembly trap), PGlite 0.5 swallows it in `execProtocolRawSync`, answers the statement as if
 * it had succeeded (often with no rows) and carries on with Postgres's internal state half updated:
 * the next transaction fails with "BeginTransactionBlock: unexpected state END", later statements
 * with "null function or function signature mismatch", and the store never recovers by itself.
 *
 * This file keeps that failure from wedging the control plane. knex-pglite is handed a stable
 * session instead of the PGlite instance; the session watches the engine for such exceptions and,
 * when one happens, fails the statement (503 with Retry-After, so the write is not acknowledged
 * and knex rolls back), answers every statement with the same 503 meanwhile (so /ready's database
 * check turns false), and reopens the database: from the data directory, or for `memory://` from a
 * copy of the broken instance's files, in which Postgres recovers the committed state from its
 * WAL. It then LISTENs again and tells the listeners to reload, as a Postgres reconnect does.
 */
export async function openEmbedded(dataDir: string, logger: Logger): Promise<Database> {
  const [{ PGlite }, { default: ClientPgLite }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("knex-pglite"),
  ]);
  let path: string | undefined;
  if (dataDir !== "memory://") {
    path = resolve(dataDir, "pg");
    mkdirSync(path, { recursive: true });
  }
  const startParams = [...PGlite.defaultStartParams, ...EMBEDDED_SETTINGS];
  const session = new EmbeddedSession(
    (dump) => (path ? new PGlite(path, { startParams }) : new PGlite("memory://", dump ? { loadDataDir: dump, startParams } : { startParams })),
    path === undefined,
    logger,
  );
  await session.waitReady;
  logger.info({ dataDir }, "using embedded Postgres (PGlite); set DATABASE_URL to use a Postgres server");
  const knex = knexPkg.knex({
    client: rowCountsFixed(ClientPgLite as unknown as ResponseProcessor) as unknown as typeof knexPkg.Client,
    dialect: "postgres",
    connection: (() => ({ pglite: session })) as unknown as Knex.StaticConnectionConfig,
  });
  return {
    knex,
    kind: "embedded",
    listen: (channel, handler, onReconnect) => session.listen(channel, handler, onReconnect ?? (() => undefined)),
    async close() {
      await knex.destroy();
      await session.close();
    },
  };
}

/**
 * Postgres settings of the embedded engine, after PGlite's own. Postgres's default 128 MB of
 * shared buffers is allocated and touched inside PGlite's WebAssembly memory at start: about 150 MiB
 * of resident memory at idle for a store whose whole content is a few MB at 1,000 APIs (its files
 * are in memory or in the OS page cache anyway, so a buffer miss costs a copy, not a disk read).
 */
export const EMBEDDED_SETTINGS = ["-c", "shared_buffers=16MB"];

/**
 * Answered for every statement while the embedded database is unusable. knex prefixes a failed
 * statement's SQL to the error's message; the message here is what the client reads, so it is fixed.
 */
export class EmbeddedStoreUnavailable extends ApiError {
  // Postgres's own code for "the server is starting up": what a client of a server would see.
  readonly code = "57P03";

  constructor(message: string) {
    super(503, message, undefined, { "Retry-After": "5" });
    Object.defineProperty(this, "message", { get: () => message, set: () => undefined, enumerable: false });
  }
}

interface Subscription {
  channel: string;
  handler: NotificationHandler;
  onReconnect: () => void;
  unsubscribe?: () => Promise<void>;
}

// PGlite's "a Postgres error was raised" exception; anything else out of the engine is a fault.
const POSTGRES_MAIN_LONGJMP = 100;
const CLOSE_TIMEOUT_MS = 5000;

class EmbeddedSession {
  private instance: PGlite;
  /** An exception the engine raised (and PGlite swallowed) during the current statement. */
  private fault?: unknown;
  /** Set from a fault until the database has been reopened; for good if reopening failed. */
  private unusable?: EmbeddedStoreUnavailable;
  private reopening?: Promise<void>;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  waitReady: Promise<void>;

  constructor(
    private readonly create: (dump?: Blob) => PGlite,
    private readonly inMemory: boolean,
    private readonly logger: Logger,
  ) {
    this.instance = create();
    this.waitReady = this.instance.waitReady.then(() => this.watch(this.instance));
  }

  /** What knex-pglite calls for every statement, BEGIN and COMMIT included. */
  async query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    if (this.unusable) throw this.unusable;
    const instance = this.instance;
    let result: Results<T> | undefined;
    let failure: unknown;
    try {
      result = await instance.query<T>(sql, params, options);
    } catch (error) {
      // A fault can also escape PGlite (from its flush after the statement) instead of being swallowed.
      if (isEngineFault(error)) this.fault ??= error;
      failure = error;
    }
    if (this.fault !== undefined && instance === this.instance) this.failed(sql);
    if (this.unusable) throw this.unusable;
    if (failure !== undefined) throw failure;
    return result!;
  }

  async listen(channel: string, handler: NotificationHandler, onReconnect: () => void): Promise<() => Promise<void>> {
    const subscription: Subscription = { channel, handler, onReconnect };
    subscription.unsubscribe = await this.instance.listen(channel, handler);
    this.subscriptions.add(subscription);
    return async () => {
      this.subscriptions.delete(subscription);
      await subscription.unsubscribe?.().catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reopening?.catch(() => undefined);
    await closeQuietly(this.instance);
  }

  /** Wraps the engine's entry point, where PGlite would swallow the exception, to notice it. */
  private watch(instance: PGlite): void {
    const engine = instance.Module as unknown as Record<string, unknown>;
    const mainLoop = engine._PostgresMainLoopOnce;
    if (typeof mainLoop !== "function") {
      this.logger.warn("embedded Postgres: cannot watch the engine for faults (unknown PGlite build); a fault may go unnoticed");
      return;
    }
    engine._PostgresMainLoopOnce = (...args: unknown[]) => {
      try {
        return (mainLoop as (...a: unknown[]) => unknown)(...args);
      } catch (error) {
        if ((error as { status?: unknown } | null)?.status !== POSTGRES_MAIN_LONGJMP && instance === this.instance) {
          this.fault ??= error;
        }
        throw error;
      }
    };
  }

  private failed(sql: string): void {
    const fault = this.fault;
    this.fault = undefined;
    if (this.unusable) return;
    this.logger.error(
      { err: fault, statement: sql.replace(/\s+/g, " ").slice(0, 200) },
      "embedded Postgres failed inside the engine; its state cannot be trusted, reopening it",
    );
    this.unusable = new EmbeddedStoreUnavailable("The embedded database failed and is being reopened; retry shortly");
    this.reopening = this.reopen();
  }

  private async reopen(): Promise<void> {
    const broken = this.instance;
    const started = Date.now();
    try {
      // In memory the files exist only inside the broken instance: copy them out before closing it.
      // Postgres then recovers the last committed state from them, as after a crash.
      const dump = this.inMemory ? await broken.dumpDataDir("none") : undefined;
      await closeQuietly(broken);
      if (this.closed) return;
      const next = this.create(dump);
      await next.waitReady;
      this.instance = next;
      this.watch(next);
      for (const subscription of this.subscriptions) {
        subscription.unsubscribe = await next.listen(subscription.channel, subscription.handler);
      }
      this.unusable = undefined;
      this.logger.warn({ ms: Date.now() - started }, "embedded Postgres reopened; consumers reload the store");
      for (const subscription of this.subscriptions) subscription.onReconnect();
    } catch (error) {
      this.unusable = new EmbeddedStoreUnavailable("The embedded database failed and could not be reopened; restart the control plane");
      this.logger.fatal({ err: error }, "embedded Postgres could not be reopened; restart the control plane");
    } finally {
      this.reopening = undefined;
    }
  }
}

function isEngineFault(error: unknown): boolean {
  // WebAssembly's RuntimeError (a trap) is not in this project's TypeScript lib; its name is enough.
  return error instanceof RangeError || (error instanceof Error && error.name === "RuntimeError");
}

/** A broken instance may not close cleanly, or at all: give it a bounded time. */
async function closeQuietly(instance: PGlite): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    instance.close().catch(() => undefined),
    new Promise<void>((r) => {
      timer = setTimeout(r, CLOSE_TIMEOUT_MS);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

/**
 * knex-pglite labels each response with knex's method name upper-cased as the SQL command, and
 * knex's Postgres dialect returns the row count only for "UPDATE" and "DELETE"; knex names its
 * delete method "del" (and increments "counter"), so on the embedded store `await q.delete()`
 * resolved to the raw response object instead of the number of rows deleted: every "did it
 * delete anything" check passed. Here those methods are named by their SQL command.
 */
type ResponseProcessor = new (...args: any[]) => { processResponse(obj: any, runner: unknown): unknown };
function rowCountsFixed(Base: ResponseProcessor): ResponseProcessor {
  return class extends Base {
    override processResponse(obj: any, runner: unknown): unknown {
      if (obj && (obj.method === "del" || obj.method === "counter")) obj = { ...obj, method: obj.method === "del" ? "delete" : "update" };
      return super.processResponse(obj, runner);
    }
  };
}

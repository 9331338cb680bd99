import { randomUUID } from "node:crypto";
import {
  DIRECTORY_SCOPE,
  RedisCredentialStore,
  STAGES,
  directoryField,
  scopeKey,
  type CredentialStore,
  type ScopeRef,
  type Stage,
} from "@apigw/shared";
import type { Knex } from "knex";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "../observability/logger";
import type { RestApiRequest } from "../rest/schemas/restApi";
import { CHANGE_CHANNEL, currentRevision, type ChangeNotification } from "../store/changes";
import type { Database } from "../store/database";
import { loadApplicationDirectory } from "../store/reads/applicationDirectory";
import { listCredentialScopes, loadCredentialData } from "../store/reads/credentials";
import { json } from "../store/repositories/util";
import { directoryFields, ownedFields, projectDirectory, projectScope } from "./project";

/*
 * Keeps the credential store (Redis) in step with Postgres. See README.md beside this file.
 *
 * - Start: subscribe to the change feed first (notifications are buffered), then rebuild every
 *   scope, so nothing committed between the rebuild's snapshot and the subscription is missed.
 * - Each notification names the APIs it affects; their scopes (both stages) are re-read from one
 *   Postgres snapshot each and replaced atomically. Notifications are coalesced for `coalesceMs`
 *   (default 5 ms) and processed by one worker, one batch at a time, in revision order. Pending
 *   work is a set of API handles (bounded by the number of APIs); above `maxBatchApis` (default
 *   256) the batch becomes a full rebuild instead, so nothing queues without bound.
 * - The application directory (every application's AppKeys and AppCode hash → {appId, enabled},
 *   authorized anywhere or not) follows each `application` change: only that application's
 *   fields are set or removed. A full rebuild replaces it whole, atomically.
 * - A failed batch is never dropped: the next attempt is a full rebuild, retried with capped
 *   backoff while the projection reports itself lagging. A truncated notification, a reconnected
 *   change listener and a store that lost its data (restarted Redis) also cause a full rebuild.
 * - A completed full rebuild leaves a marker in the store (`completeProjection`, set only if the
 *   store kept the rebuild's token throughout); incremental updates never set it. A store without
 *   the marker lost the projection (Redis restarted empty, a flush): noticed when the connection
 *   becomes ready again and by a cheap check every `healthCheckMs`, it is rebuilt at once, and
 *   the projection reports itself lagging until then. ext_authz answers 503 rather than 404 for
 *   what it cannot find while the marker is absent.
 */

export interface CredentialProjectorOptions {
  knex: Knex;
  database: Pick<Database, "listen">;
  store: CredentialStore;
  logger: Logger;
  /** A prom-client registry (or the control plane's metrics object holding one) to register the projection's metrics in. */
  metrics?: Registry | { registry: Registry };
  /** How long notifications are collected before a batch is processed (ms). */
  coalesceMs?: number;
  /** A batch naming more APIs (or more applications) than this is processed as a full rebuild. */
  maxBatchApis?: number;
  /** Scopes read and written in parallel. */
  concurrency?: number;
  /** Backoff after a failed write: doubles from `retryInitialMs` up to `retryMaxMs`. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** How often the store is checked for having lost the projection (0 disables the check). */
  healthCheckMs?: number;
  /** A full rebuild at this interval as a safety net, e.g. for expiring grace keys (0 disables). */
  resyncMs?: number;
}

export interface ProjectionStatus {
  /** Every change up to this revision is in the store. */
  revision: number;
  /** True while writes to the store fail (or a full rebuild is owed after a failure). */
  lagging: boolean;
  lastError: string | null;
  lastErrorAt: string | null;
  /** APIs with changes not yet projected. */
  pendingApis: number;
  /** Applications whose directory entries are not yet projected. */
  pendingApps: number;
  /** Milliseconds since the oldest change not yet projected was announced (0 when caught up). */
  lagMs: number;
  /** Scopes the projection has written and not deleted. */
  scopes: number;
  lastRebuildAt: string | null;
}

export interface RebuildResult {
  revision: number;
  /** Scopes written. */
  scopes: number;
  /** Scopes found in the store that Postgres does not know, removed. */
  removed: number;
}

interface Batch {
  full: boolean;
  apis: string[];
  apps: string[];
  revision: number;
  since: number | undefined;
}

const DEFAULTS = {
  coalesceMs: 5,
  maxBatchApis: 256,
  concurrency: 4,
  retryInitialMs: 100,
  retryMaxMs: 5000,
  healthCheckMs: 2000,
  resyncMs: 600_000,
};

export class CredentialProjector {
  private readonly knex: Knex;
  private readonly database: Pick<Database, "listen">;
  private readonly store: CredentialStore;
  private readonly logger: Logger;
  private readonly settings: typeof DEFAULTS;
  private readonly metrics?: ReturnType<typeof createProjectionMetrics>;

  private started = false;
  private stopped = false;
  private unlisten?: () => Promise<void>;

  // Pending work, filled by notifications and taken whole by the worker.
  private pendingApis = new Set<string>();
  private pendingApps = new Set<string>();
  private pendingFull = false;
  private pendingRevision = 0;
  private pendingSince: number | undefined;
  private inFlightSince: number | undefined;

  private coalesceTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private healthTimer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private draining?: Promise<void>;
  private failures = 0;
  /** Serialises every store-writing job (the worker's batches and direct rebuildAll calls). */
  private exclusiveTail: Promise<unknown> = Promise.resolve();

  private projectedRevision = 0;
  private lagging = false;
  /** The store lost the projection (no marker); cleared by the next completed full rebuild. */
  private storeLost = false;
  private lastError: string | null = null;
  private lastErrorAt: Date | null = null;
  private lastRebuildAt: Date | null = null;
  private readonly knownScopes = new Set<string>();
  private readonly onStoreReady = () => this.storeReady();

  constructor(options: CredentialProjectorOptions) {
    this.knex = options.knex;
    this.database = options.database;
    this.store = options.store;
    this.logger = options.logger;
    this.settings = {
      coalesceMs: options.coalesceMs ?? DEFAULTS.coalesceMs,
      maxBatchApis: options.maxBatchApis ?? DEFAULTS.maxBatchApis,
      concurrency: Math.max(1, options.concurrency ?? DEFAULTS.concurrency),
      retryInitialMs: options.retryInitialMs ?? DEFAULTS.retryInitialMs,
      retryMaxMs: options.retryMaxMs ?? DEFAULTS.retryMaxMs,
      healthCheckMs: options.healthCheckMs ?? DEFAULTS.healthCheckMs,
      resyncMs: options.resyncMs ?? DEFAULTS.resyncMs,
    };
    if (options.metrics) {
      const registry = options.metrics instanceof Registry ? options.metrics : options.metrics.registry;
      this.metrics = createProjectionMetrics(registry, this);
    }
  }

  /**
   * Subscribes to the change feed, then rebuilds every scope. Resolves once the first rebuild has
   * been attempted: when the store is unreachable it resolves anyway with the projection lagging
   * and retrying (the control plane keeps serving its API); a failing Postgres listener rejects.
   */
  async start(): Promise<ProjectionStatus> {
    if (this.started) throw new Error("the projector was already started");
    this.started = true;
    this.unlisten = await this.database.listen(
      CHANGE_CHANNEL,
      (payload) => this.onNotification(payload),
      () => this.requestFull("change listener reconnected"),
    );
    if (this.store instanceof RedisCredentialStore) this.store.redis.on("ready", this.onStoreReady);
    this.pendingFull = true;
    this.pendingSince ??= Date.now();
    await this.drain();
    if (this.settings.healthCheckMs > 0) {
      this.healthTimer = setInterval(() => void this.checkStore(), this.settings.healthCheckMs);
      this.healthTimer.unref();
    }
    if (this.settings.resyncMs > 0) {
      this.resyncTimer = setInterval(() => this.requestFull("periodic resync"), this.settings.resyncMs);
      this.resyncTimer.unref();
    }
    return this.status();
  }

  /** Stops listening and waits for the batch in progress; pending work is left to the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of [this.coalesceTimer, this.retryTimer]) if (timer) clearTimeout(timer);
    for (const timer of [this.healthTimer, this.resyncTimer]) if (timer) clearInterval(timer);
    this.coalesceTimer = this.retryTimer = this.healthTimer = this.resyncTimer = undefined;
    if (this.store instanceof RedisCredentialStore) this.store.redis.off("ready", this.onStoreReady);
    const unlisten = this.unlisten;
    this.unlisten = undefined;
    await unlisten?.();
    await this.draining;
    await this.exclusiveTail.catch(() => undefined);
  }

  /**
   * Writes every scope Postgres knows (each replaced atomically, so valid credentials never go
   * missing), then removes the scopes Postgres no longer knows. Runs after any batch in progress.
   * Throws when Postgres or the store fails (the worker then keeps retrying on its own).
   */
  async rebuildAll(): Promise<RebuildResult> {
    try {
      return await this.exclusive(() => this.rebuildAllNow());
    } catch (error) {
      this.failed(error);
      if (this.started && !this.stopped) {
        this.pendingFull = true;
        this.pendingSince ??= Date.now();
        this.scheduleRetry();
      }
      throw error;
    }
  }

  status(): ProjectionStatus {
    const oldest = minDefined(this.inFlightSince, this.pendingSince);
    return {
      revision: this.projectedRevision,
      lagging: this.lagging || this.storeLost,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt?.toISOString() ?? null,
      pendingApis: this.pendingApis.size,
      pendingApps: this.pendingApps.size,
      lagMs: oldest === undefined ? 0 : Math.max(0, Date.now() - oldest),
      scopes: this.knownScopes.size,
      lastRebuildAt: this.lastRebuildAt?.toISOString() ?? null,
    };
  }

  // --- notifications -------------------------------------------------------------------------

  private onNotification(payload: string): void {
    if (this.stopped) return;
    let notification: ChangeNotification;
    try {
      notification = JSON.parse(payload) as ChangeNotification;
      if (typeof notification !== "object" || notification === null) throw new Error("not an object");
    } catch {
      // Never drop a change: a notification that cannot be read is answered with a full rebuild.
      this.logger.warn("malformed change notification; rebuilding the whole projection");
      this.requestFull("malformed notification");
      return;
    }
    const revision = Number(notification.revision) || 0;
    if (notification.truncated || !Array.isArray(notification.changes)) {
      this.pendingRevision = Math.max(this.pendingRevision, revision);
      this.requestFull("truncated notification");
      return;
    }
    let affected = 0;
    for (const change of notification.changes) {
      for (const apiId of change?.apiIds ?? []) {
        if (typeof apiId !== "string" || !apiId) continue;
        this.pendingApis.add(apiId);
        affected++;
      }
      // Every change of an application (created, renamed, enabled, disabled, deleted, a key pair
      // added or deleted, the AppCode reset) is reflected in the application directory.
      if (change?.entity === "application" && typeof change.id === "string" && change.id) {
        this.pendingApps.add(change.id);
        affected++;
      }
    }
    if (affected === 0) {
      // A change that affects no credentials (e.g. a new plan nobody uses yet). Everything
      // before it is either projected or pending, so it only moves the revision when idle.
      if (!this.hasPending() && !this.draining && !this.lagging) this.setRevision(revision);
      else this.pendingRevision = Math.max(this.pendingRevision, revision);
      return;
    }
    this.pendingRevision = Math.max(this.pendingRevision, revision);
    this.pendingSince ??= Date.now();
    if (this.pendingApis.size > this.settings.maxBatchApis || this.pendingApps.size > this.settings.maxBatchApis) this.pendingFull = true;
    this.schedule();
  }

  private requestFull(reason: string): void {
    if (this.stopped) return;
    this.logger.info({ reason }, "full projection rebuild requested");
    this.metrics?.rebuildRequests.inc({ reason });
    this.pendingFull = true;
    this.pendingSince ??= Date.now();
    this.schedule();
  }

  private hasPending(): boolean {
    return this.pendingFull || this.pendingApis.size > 0 || this.pendingApps.size > 0;
  }

  /** Starts the worker after the coalescing window, unless it runs already or waits for a retry. */
  private schedule(): void {
    if (!this.started || this.stopped || this.draining || this.coalesceTimer || this.retryTimer) return;
    this.coalesceTimer = setTimeout(() => {
      this.coalesceTimer = undefined;
      void this.drain();
    }, this.settings.coalesceMs);
  }

  // --- the worker ----------------------------------------------------------------------------

  private drain(): Promise<void> {
    if (this.draining) return this.draining;
    this.draining = this.drainLoop().finally(() => {
      this.draining = undefined;
      // Work that arrived while the last batch was being finished.
      if (this.hasPending()) this.schedule();
    });
    return this.draining;
  }

  private async drainLoop(): Promise<void> {
    while (!this.stopped && this.hasPending()) {
      const batch = this.take();
      this.inFlightSince = batch.since;
      try {
        if (this.lagging || this.failures > 0) await this.store.ping();
        await this.exclusive(async () => {
          if (batch.full) await this.rebuildAllNow();
          else await this.projectChanges(batch.apis, batch.apps, batch.revision);
        });
        // Every change announced before the batch was taken was committed before its reads began.
        this.setRevision(batch.revision);
        if (batch.since !== undefined) this.metrics?.delay.observe((Date.now() - batch.since) / 1000);
        this.failures = 0;
      } catch (error) {
        // Nothing is dropped: whatever this batch held is covered by the full rebuild owed now.
        this.failed(error);
        this.pendingFull = true;
        this.pendingRevision = Math.max(this.pendingRevision, batch.revision);
        this.pendingSince = minDefined(this.pendingSince, batch.since) ?? Date.now();
        this.scheduleRetry();
        return;
      } finally {
        this.inFlightSince = undefined;
      }
    }
  }

  private take(): Batch {
    const full = this.pendingFull;
    const batch: Batch = {
      full,
      apis: full ? [] : [...this.pendingApis].sort(),
      apps: full ? [] : [...this.pendingApps].sort(),
      revision: this.pendingRevision,
      since: this.pendingSince,
    };
    this.pendingFull = false;
    this.pendingApis = new Set();
    this.pendingApps = new Set();
    this.pendingSince = undefined;
    return batch;
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    if (this.coalesceTimer) {
      clearTimeout(this.coalesceTimer);
      this.coalesceTimer = undefined;
    }
    const delay = Math.min(this.settings.retryMaxMs, this.settings.retryInitialMs * 2 ** Math.min(this.failures - 1, 20));
    this.logger.debug({ delayMs: delay, attempt: this.failures }, "credential projection lagging; retrying");
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.drain();
    }, delay);
    this.retryTimer.unref?.();
  }

  /** The store's connection is (again) ready: retry at once instead of waiting out the backoff. */
  private storeReady(): void {
    if (this.stopped) return;
    if (!this.lagging) {
      // Reconnected without a failed write in between: it may still have restarted empty.
      void this.checkStore();
      return;
    }
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.pendingFull = true;
    this.pendingSince ??= Date.now();
    void this.drain();
  }

  /** Detects a store that cannot be reached, or that lost the projection (a Redis restarted empty, a flush). */
  private async checkStore(): Promise<void> {
    if (this.stopped || this.draining || this.retryTimer) return;
    try {
      const marker = await this.store.projectionMarker();
      if (marker === null && !this.draining && !this.pendingFull) {
        if (!this.storeLost) this.logger.warn("the credential store lost the projection (restarted empty or flushed?); rebuilding it now");
        this.storeLost = true;
        this.lastError = "the credential store lost the projection; rebuilding";
        this.lastErrorAt = new Date();
        this.requestFull("the store lost the projection");
      }
    } catch (error) {
      if (!this.lagging) this.logger.warn({ err: (error as Error).message }, "credential store unreachable");
      this.failed(error);
      this.pendingFull = true;
      this.pendingSince ??= Date.now();
      this.scheduleRetry();
    }
  }

  private failed(error: unknown): void {
    this.failures++;
    this.lagging = true;
    this.lastError = (error as Error)?.message ?? String(error);
    this.lastErrorAt = new Date();
    this.metrics?.errors.inc();
    // Once per outage; the retries (capped backoff) log at debug until a rebuild succeeds.
    if (this.failures === 1) this.logger.warn({ err: this.lastError }, "credential projection failed; retrying");
    else this.logger.debug({ err: this.lastError, attempt: this.failures }, "credential projection failed again");
  }

  private exclusive<T>(job: () => Promise<T>): Promise<T> {
    const run = this.exclusiveTail.then(job, job);
    this.exclusiveTail = run.catch(() => undefined);
    return run;
  }

  // --- projecting ----------------------------------------------------------------------------

  private async rebuildAllNow(): Promise<RebuildResult> {
    const started = Date.now();
    // The marker is set at the end only if this token is still in the store then: a store that
    // lost its data while the rebuild ran is not marked complete (the rebuild is retried).
    const token = randomUUID();
    await this.store.beginProjection(token);
    // Every change up to `revision` is visible to each snapshot read below.
    const revision = await currentRevision(this.knex);
    const scopes = await listCredentialScopes(this.knex);
    const expected = new Set(scopes.map(scopeKey));
    const written = new Set<string>();
    await mapLimit(scopes, this.settings.concurrency, async (scope) => {
      if (await this.projectScope(scope)) written.add(scopeKey(scope));
    });

    // The application directory, replaced whole (atomically: no window where it is missing).
    const applications = await this.rebuildDirectory();

    // Scopes of deleted APIs, or of a removed sandbox. Checked against Postgres once more before
    // deleting, so an API created during the rebuild (and projected by another replica) stays.
    let stale = (await this.store.listScopes()).filter((s) => !expected.has(scopeKey(s)));
    if (stale.length > 0) {
      const now = new Set((await listCredentialScopes(this.knex)).map(scopeKey));
      stale = stale.filter((s) => !now.has(scopeKey(s)));
      for (const scope of stale) await this.deleteScope(scope);
    }

    await this.store.setMeta("revision", String(revision));
    const completedAt = new Date().toISOString();
    if (!(await this.store.completeProjection(token, JSON.stringify({ revision, completedAt })))) {
      throw new Error("the credential store lost data while the projection was rebuilt");
    }
    for (const key of this.knownScopes) if (!written.has(key)) this.knownScopes.delete(key);
    this.setRevision(revision);
    this.lagging = false;
    this.storeLost = false;
    this.failures = 0;
    this.lastRebuildAt = new Date();
    this.metrics?.rebuildDuration.observe((Date.now() - started) / 1000);
    this.logger.info({ revision, scopes: written.size, removed: stale.length, applications, ms: Date.now() - started }, "credential projection rebuilt");
    return { revision, scopes: written.size, removed: stale.length };
  }

  /** The scopes of the APIs named, then the directory entries of the applications named. */
  private async projectChanges(handles: string[], appIds: string[], revision: number): Promise<void> {
    // Scopes first: they decide what is allowed; the directory only refines a denial's reason.
    if (handles.length > 0) await this.projectApis(handles);
    if (appIds.length > 0) await this.projectApplications(appIds);
    await this.store.setMeta("revision", String(revision));
    this.setRevision(revision);
    this.logger.debug({ revision, apis: handles.length, applications: appIds.length }, "credential projection updated");
  }

  private async projectApis(handles: string[]): Promise<void> {
    const stagesByApi = await this.scopeStages(handles);
    const scopes: { scope: ScopeRef; exists: boolean }[] = [];
    for (const apiId of handles) {
      const stages = stagesByApi.get(apiId) ?? [];
      for (const stage of STAGES) scopes.push({ scope: { apiId, stage }, exists: stages.includes(stage) });
    }
    await mapLimit(scopes, this.settings.concurrency, async ({ scope, exists }) => {
      if (exists) await this.projectScope(scope);
      else await this.deleteScope(scope);
    });
  }

  /**
   * Brings the directory entries of some applications up to date in one atomic update: the
   * fields each application has now (one Postgres snapshot) are set; the fields its `owner:`
   * record listed that it no longer has (a deleted key pair, a reset AppCode, a deleted
   * application) are removed, unless another application of the batch has them now.
   */
  private async projectApplications(appIds: string[]): Promise<void> {
    const owners = await this.store.readFields(DIRECTORY_SCOPE, appIds.map(directoryField.owner));
    const apps = await loadApplicationDirectory(this.knex, appIds);
    const set: Record<string, string> = {};
    for (const app of apps) Object.assign(set, directoryFields(app));
    const remove: string[] = [];
    appIds.forEach((appId, i) => {
      for (const field of [...ownedFields(owners[i]), directoryField.owner(appId)]) {
        if (!Object.hasOwn(set, field)) remove.push(field);
      }
    });
    await this.store.updateFields(DIRECTORY_SCOPE, set, remove);
    this.metrics?.directoryWrites.inc({ op: "update" });
  }

  /** Replaces the whole application directory from one snapshot; answers the number of applications. */
  private async rebuildDirectory(): Promise<number> {
    const apps = await loadApplicationDirectory(this.knex);
    await this.store.replaceScope(DIRECTORY_SCOPE, projectDirectory(apps));
    this.metrics?.directoryWrites.inc({ op: "replace" });
    return apps.length;
  }

  /** Writes one scope from one Postgres snapshot; deletes it when the API is gone meanwhile. */
  private async projectScope(scope: ScopeRef): Promise<boolean> {
    const data = await loadCredentialData(this.knex, scope.apiId, scope.stage);
    if (!data) {
      await this.deleteScope(scope);
      return false;
    }
    await this.store.replaceScope(scope, projectScope(data));
    this.knownScopes.add(scopeKey(scope));
    this.metrics?.writes.inc({ op: "replace" });
    return true;
  }

  private async deleteScope(scope: ScopeRef): Promise<void> {
    await this.store.deleteScope(scope);
    if (this.knownScopes.delete(scopeKey(scope))) this.metrics?.writes.inc({ op: "delete" });
  }

  /**
   * The stages each API has a scope in: RELEASE always, TEST when it has a sandbox upstream (the
   * rule of `listCredentialScopes`, for just these APIs). An unknown API has none.
   */
  private async scopeStages(handles: string[]): Promise<Map<string, Stage[]>> {
    const rows = (await this.knex("rest_apis").whereIn("handle", handles).select("handle", "document")) as { handle: string; document: unknown }[];
    const stages = new Map<string, Stage[]>();
    for (const row of rows) {
      stages.set(row.handle, json<RestApiRequest>(row.document).spec.upstream.sandbox ? ["RELEASE", "TEST"] : ["RELEASE"]);
    }
    return stages;
  }

  private setRevision(revision: number): void {
    if (revision > this.projectedRevision) this.projectedRevision = revision;
  }
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

async function mapLimit<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}

function createProjectionMetrics(registry: Registry, projector: CredentialProjector) {
  const registers = [registry];
  new Gauge({
    name: "apigw_projection_scopes",
    help: "Credential scopes (API and stage) the projection keeps in the credential store",
    registers,
    collect() {
      this.set(projector.status().scopes);
    },
  });
  new Gauge({
    name: "apigw_projection_revision",
    help: "Store revision whose changes are all projected into the credential store",
    registers,
    collect() {
      this.set(projector.status().revision);
    },
  });
  new Gauge({
    name: "apigw_projection_lagging",
    help: "1 while writes to the credential store fail and the projection is behind",
    registers,
    collect() {
      this.set(projector.status().lagging ? 1 : 0);
    },
  });
  new Gauge({
    name: "apigw_projection_lag_milliseconds",
    help: "Milliseconds since the oldest change not yet projected was announced (0 when caught up)",
    registers,
    collect() {
      this.set(projector.status().lagMs);
    },
  });
  return {
    errors: new Counter({ name: "apigw_projection_errors_total", help: "Failed projection batches and store checks", registers }),
    writes: new Counter({
      name: "apigw_projection_scope_writes_total",
      help: "Scopes replaced or deleted in the credential store",
      labelNames: ["op"] as const,
      registers,
    }),
    directoryWrites: new Counter({
      name: "apigw_projection_directory_writes_total",
      help: "Writes of the application directory: replace (full rebuild) or update (the applications of one batch)",
      labelNames: ["op"] as const,
      registers,
    }),
    rebuildRequests: new Counter({
      name: "apigw_projection_rebuild_requests_total",
      help: "Full rebuilds requested, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    delay: new Histogram({
      name: "apigw_projection_delay_seconds",
      help: "From a change notification to its scopes written in the credential store",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    }),
    rebuildDuration: new Histogram({
      name: "apigw_projection_rebuild_duration_seconds",
      help: "Duration of full rebuilds",
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers,
    }),
  };
}

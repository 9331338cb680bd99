import type { Knex } from "knex";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../observability/logger";
import { CHANGE_CHANNEL, type ChangeNotification } from "../store/changes";
import type { Database } from "../store/database";
import { retryDelay } from "../store/unavailable";
import { loadGatewayConfig, type GatewayApi, type GatewayConfig } from "../store/reads/gatewayConfig";
import { buildIr, selectApisForGateway, translateIr, type TranslatorOptions } from "../translator";
import type { IrDiagnostic } from "../translator/ir";
import { compareStrings, deepFreeze } from "../translator/util";
import { DEFAULT_GROUP, SnapshotCache, SnapshotError, buildSnapshot, consistent, type Snapshot } from "../xds";

export interface GatewayPipelineOptions {
  knex: Knex;
  database: Pick<Database, "listen">;
  logger: Logger;
  translator?: TranslatorOptions;
  /** How long a burst of changes is gathered before one rebuild (the bound on added latency). */
  coalesceMs?: number;
  registry?: Registry;
  /** Backoff after a failed reload (the store unreachable): doubles from `retryInitialMs` up to `retryMaxMs`. */
  retryInitialMs?: number;
  retryMaxMs?: number;
}

/** Whether the pipeline keeps up with the store (the control plane's /ready). */
export interface PipelineHealth {
  ok: boolean;
  /** Newest store revision seen (notified, or read by a full reload). */
  storeRevision: number;
  publishedRevision: number;
  /** Failed reloads in a row (0 when the last one succeeded). */
  failures: number;
  lastError: string | null;
  /** Milliseconds the published revision has been behind the store without progress (0 when caught up). */
  behindMs: number;
}

/**
 * From store changes to xDS snapshots: keeps the deployed APIs in memory, re-reads only the APIs
 * a change notification names (a full reload after a truncated notification or a reconnect of
 * the change feed), and, after a short coalescing window, translates and publishes a snapshot
 * for every gateway group that has connected (plus the default group). Nothing invalid is
 * published: an API whose configuration fails the Envoy check is held back on its own (isolate())
 * while the others propagate; should a group's build still throw, the group keeps its last good
 * snapshot and health() reports it until a build succeeds. A reload that fails (the store unreachable) is retried as a full reload with capped
 * backoff, logged once per outage; health() (the control plane's /ready) and the
 * apigw_store_revision / apigw_published_revision metrics tell whether the gateways keep up.
 *
 * Cost of a change: the APIs are held as deep-frozen objects, and an API whose re-read is
 * identical keeps its object, so an unchanged API keeps its identity across rebuilds; the
 * translator memoizes per API object and the snapshot validates/encodes each route once per route
 * object, so a one-API change costs that API's routes plus a cheap global assembly (see
 * translator/buildIr.ts "Memoization" and xds/routeConfiguration.ts). Groups served the same API
 * objects share one snapshot, built once (buildFor).
 */
export class GatewayPipeline {
  readonly cache: SnapshotCache;
  private readonly apis = new Map<string, GatewayApi>();
  /** Per group: its last snapshot, the (frozen) APIs it was asked for, and what it actually serves. */
  private readonly previous = new Map<string, GroupBuild>();
  private revision = 0;
  private pendingHandles = new Set<string>();
  private pendingFull = false;
  private pendingRevision = 0;
  private firstPendingAt?: number;
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private unlisten?: () => Promise<void>;
  private stopped = false;
  private readonly coalesceMs: number;
  private readonly metrics?: {
    rebuilds: Counter<"kind">;
    failures: Counter;
    duration: Histogram<"stage">;
    delay: Histogram;
    isolations: Counter;
    diagnostics: Counter;
    held: Gauge<"group">;
  };
  // Fault tracking (see health()): the newest revision the store announced, failed reloads in a
  // row, since when the published revision has been behind without progress, and the revision of
  // the last publish() (a group whose snapshot carries it is current up to `revision`: the
  // changes after it touched no API).
  private storeRevision = 0;
  private failures = 0;
  private failingSince?: number;
  private lastError: string | null = null;
  private behindSince?: number;
  private retryTimer?: NodeJS.Timeout;
  private lastPublishRevision = 0;
  /** Groups whose last build threw, with the error: they serve an older snapshot (see health()). */
  private readonly unpublished = new Map<string, string>();

  constructor(private readonly options: GatewayPipelineOptions) {
    this.coalesceMs = options.coalesceMs ?? 5;
    this.cache = new SnapshotCache({
      logger: options.logger,
      // A gateway group seen for the first time gets its snapshot built from the current state.
      provider: async (group) => ({ snapshot: this.buildFor(group), revision: this.revision }),
    });
    if (options.registry) {
      const registers = [options.registry];
      this.metrics = {
        rebuilds: new Counter({ name: "apigw_xds_rebuilds_total", help: "Snapshot rebuilds by kind (full or incremental)", labelNames: ["kind"], registers }),
        failures: new Counter({
          name: "apigw_xds_rebuild_failures_total",
          help: "Reloads that failed (the store unreachable) and group builds that threw (nothing published); APIs held back by isolation are counted in apigw_xds_isolations_total",
          registers,
        }),
        duration: new Histogram({
          name: "apigw_xds_rebuild_seconds",
          help: "Time per rebuild stage",
          labelNames: ["stage"],
          buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers,
        }),
        delay: new Histogram({
          name: "apigw_xds_change_to_snapshot_seconds",
          help: "From the first change notification of a batch to its snapshot being published",
          buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
          registers,
        }),
        isolations: new Counter({
          name: "apigw_xds_isolations_total",
          help: "Rebuilds in which the whole configuration failed the Envoy check and the failing APIs were held back so that the others propagate",
          registers,
        }),
        diagnostics: new Counter({
          name: "apigw_translator_diagnostics_total",
          help: "New translator diagnostics (operations left out, policies not honoured exactly), counted once each",
          registers,
        }),
        held: new Gauge({ name: "apigw_apis_held", help: "APIs held back (at a last good version or left out) per gateway group", labelNames: ["group"], registers }),
      };
      const pipeline = this;
      new Gauge({
        name: "apigw_store_revision",
        help: "Newest store revision this control plane has seen (notified or read)",
        registers,
        collect() {
          this.set(pipeline.storeRevision);
        },
      });
      new Gauge({
        name: "apigw_published_revision",
        help: "Store revision reflected by the xDS snapshot published to each gateway group",
        labelNames: ["group"],
        registers,
        collect() {
          this.reset();
          for (const [group, revision] of pipeline.publishedRevisions()) this.set({ group }, revision);
        },
      });
    }
  }

  /** The store revision the published snapshots reflect. */
  get publishedRevision(): number {
    return this.revision;
  }

  async start(): Promise<void> {
    this.unlisten = await this.options.database.listen(
      CHANGE_CHANNEL,
      (payload) => this.onNotification(payload),
      () => this.requestFull(),
    );
    await this.enqueue(() => this.reload(true, new Set(), 0));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.unlisten?.();
    await this.chain.catch(() => undefined);
  }

  /** Resolves when everything notified so far has been published. */
  async settled(): Promise<void> {
    while (this.timer || this.pendingFull || this.pendingHandles.size > 0) {
      await new Promise((r) => setTimeout(r, 1));
    }
    await this.chain;
  }

  requestFull(): void {
    this.pendingFull = true;
    this.schedule();
  }

  private onNotification(payload: string): void {
    let notification: ChangeNotification;
    try {
      notification = JSON.parse(payload) as ChangeNotification;
    } catch {
      this.options.logger.warn("malformed change notification; reloading all APIs");
      return this.requestFull();
    }
    this.pendingRevision = Math.max(this.pendingRevision, notification.revision);
    this.sawRevision(notification.revision);
    if (notification.truncated) return this.requestFull();
    for (const change of notification.changes) {
      for (const handle of change.apiIds ?? []) this.pendingHandles.add(handle);
    }
    // Scheduled even when no API is touched, so that the published revision moves on with the store.
    this.schedule();
  }

  private sawRevision(revision: number): void {
    if (revision > this.storeRevision) this.storeRevision = revision;
    if (this.storeRevision > this.revision) this.behindSince ??= Date.now();
  }

  /** Per gateway group: the store revision its published snapshot reflects. */
  publishedRevisions(): Map<string, number> {
    const out = new Map<string, number>();
    for (const group of this.cache.groups()) {
      const revision = this.cache.getSnapshot(group)?.revision ?? 0;
      out.set(group, revision === this.lastPublishRevision ? this.revision : revision);
    }
    return out;
  }

  /**
   * Unhealthy while reloads fail (the store unreachable) or while the published revision has been
   * behind the store's for more than `boundMs` without progress (a stuck or overwhelmed pipeline).
   */
  health(boundMs = 10_000): PipelineHealth {
    const behindMs = this.behindSince !== undefined && this.storeRevision > this.revision ? Date.now() - this.behindSince : 0;
    return {
      ok: this.failures === 0 && behindMs <= boundMs && this.unpublished.size === 0,
      storeRevision: this.storeRevision,
      publishedRevision: this.revision,
      failures: this.failures,
      lastError: this.lastError ?? (this.unpublished.size ? `gateway group(s) ${[...this.unpublished.keys()].join(", ")}: ${[...this.unpublished.values()][0]}` : null),
      behindMs,
    };
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.firstPendingAt ??= performance.now();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const full = this.pendingFull;
      const handles = this.pendingHandles;
      const revision = this.pendingRevision;
      const since = this.firstPendingAt;
      this.pendingFull = false;
      this.pendingHandles = new Set();
      this.firstPendingAt = undefined;
      void this.enqueue(async () => {
        await this.reload(full, handles, revision);
        if (since !== undefined) this.metrics?.delay.observe((performance.now() - since) / 1000);
      });
    }, this.coalesceMs);
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(work).then(
      () => this.succeeded(),
      (error) => this.failed(error),
    );
    return this.chain;
  }

  /**
   * A reload failed (typically: the store is unreachable). What it was to apply is covered by a
   * full reload, owed from now on and retried with capped backoff. Logged once per outage.
   */
  private failed(error: unknown): void {
    this.metrics?.failures.inc();
    this.failures++;
    this.lastError = (error as Error)?.message ?? String(error);
    if (this.failures === 1) {
      this.failingSince = Date.now();
      this.options.logger.error({ err: error }, "gateway configuration reload failed; retrying with a full reload (logged once until it recovers)");
    } else {
      this.options.logger.debug({ err: this.lastError, attempt: this.failures }, "gateway configuration reload failed again");
    }
    if (this.stopped) return;
    this.pendingFull = true;
    if (this.retryTimer) return;
    const delay = retryDelay(this.failures - 1, this.options.retryInitialMs ?? 200, this.options.retryMaxMs ?? 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, delay);
    this.retryTimer.unref();
  }

  private succeeded(): void {
    if (this.failures > 0) {
      this.options.logger.info({ attempts: this.failures, downMs: Date.now() - (this.failingSince ?? Date.now()), revision: this.revision }, "gateway configuration reload recovered");
    }
    this.failures = 0;
    this.lastError = null;
    this.failingSince = undefined;
    this.behindSince = this.storeRevision > this.revision ? Date.now() : undefined;
  }

  private async reload(full: boolean, handles: Set<string>, notifiedRevision: number): Promise<void> {
    const started = performance.now();
    if (full) {
      const config = await loadGatewayConfig(this.options.knex);
      const before = new Map(this.apis);
      this.apis.clear();
      for (const api of config.apis) this.apis.set(api.handle, this.keep(before.get(api.handle), api));
      this.revision = Math.max(config.revision, notifiedRevision);
      this.sawRevision(this.revision);
    } else {
      if (handles.size === 0) {
        // Changes that touch no API: every snapshot is still current, now up to this revision.
        this.revision = Math.max(this.revision, notifiedRevision);
        return;
      }
      const config = await loadGatewayConfig(this.options.knex, { handles: [...handles] });
      const found = new Map(config.apis.map((a) => [a.handle, a]));
      for (const handle of handles) {
        const api = found.get(handle);
        if (api) this.apis.set(handle, this.keep(this.apis.get(handle), api));
        else this.apis.delete(handle);
      }
      // Label with the newest revision notified: every change up to it has been applied.
      this.revision = Math.max(this.revision, notifiedRevision);
    }
    this.metrics?.duration.observe({ stage: "read" }, (performance.now() - started) / 1000);
    this.metrics?.rebuilds.inc({ kind: full ? "full" : "incremental" });
    this.lastPublishRevision = this.revision;
    this.publish();
  }

  /**
   * The object to keep for a (re-)read API: the one already held when the read is identical (a
   * full reload, or a change that did not alter what the translator sees), so that the
   * translator's and the snapshot's per-API memoization (keyed by the frozen object) still applies;
   * else the new one, deep-frozen (frozen = immutable, which that memoization relies on).
   */
  private keep(held: GatewayApi | undefined, read: GatewayApi): GatewayApi {
    if (held && JSON.stringify(held) === JSON.stringify(read)) return held;
    return deepFreeze(read);
  }

  private currentConfig(): GatewayConfig {
    return { revision: this.revision, apis: [...this.apis.values()].sort((a, b) => compareStrings(a.handle, b.handle)) };
  }

  /**
   * The group's snapshot. The translator's output depends only on the APIs (frozen, so identity
   * stands for content) and the options, so a group served exactly the API objects another group's
   * snapshot was built from (the usual case: no API has a `gateways` label, and Envoys connect
   * both as `default` and as their own node.cluster) takes that snapshot instead of translating,
   * validating and encoding everything again.
   */
  private buildFor(group: string, config = this.currentConfig()): Snapshot {
    const selected = selectApisForGateway(config, group);
    for (const built of this.previous.values()) {
      if (sameApis(built.apis, selected.apis)) {
        this.previous.set(group, built);
        return built.snapshot;
      }
    }
    const previous = this.previous.get(group);
    // An API held back before and unchanged since stays held (at what the group served of it).
    const carried = new Map<string, HeldApi>();
    let candidate = selected.apis;
    if (previous && previous.held.size > 0) {
      const served = new Map(previous.served.map((a) => [a.handle, a]));
      candidate = [];
      for (const api of selected.apis) {
        const held = previous.held.get(api.handle);
        if (held && previous.apis.includes(api)) {
          carried.set(api.handle, held);
          const good = served.get(api.handle);
          if (good) candidate.push(good);
        } else {
          candidate.push(api);
        }
      }
    }
    const attempt = this.attempt(candidate, config.revision, previous?.snapshot);
    let build: GroupBuild;
    if (attempt.ok) {
      build = { apis: selected.apis, served: candidate, snapshot: attempt.snapshot, diagnostics: attempt.diagnostics, held: carried };
    } else {
      build = this.isolate(group, selected.apis, config.revision, previous);
    }
    this.report(group, previous, build);
    this.previous.set(group, build);
    return build.snapshot;
  }

  /** Translates, validates and encodes a set of APIs, and checks the snapshot's cross-resource consistency. */
  private attempt(apis: readonly GatewayApi[], revision: number, previous?: Snapshot): Attempt {
    const started = performance.now();
    const ir = buildIr({ revision, apis: apis as GatewayApi[] });
    const resources = translateIr(ir, this.options.translator);
    const translated = performance.now();
    try {
      const snapshot = buildSnapshot(resources, { previous });
      const check = consistent(snapshot);
      if (!check.ok) return { ok: false, problems: check.issues };
      return { ok: true, snapshot, diagnostics: ir.diagnostics };
    } catch (error) {
      if (!(error instanceof SnapshotError)) throw error;
      return { ok: false, problems: error.issues.slice(0, 20).map((i) => `${i.name} ${i.path || "(root)"}: ${i.message}`) };
    } finally {
      this.metrics?.duration.observe({ stage: "translate" }, (translated - started) / 1000);
      this.metrics?.duration.observe({ stage: "encode" }, (performance.now() - translated) / 1000);
    }
  }

  /**
   * One API's problem never blocks another API. The set failed as a whole: start from what the
   * group served last (each API at its last good version, new ones absent: that set built before),
   * then add the APIs that changed since, in halves, keeping every half that builds and splitting
   * every half that does not, down to single APIs. An API that fails alone (or only together with
   * the APIs already kept) is held: at its last good version when it had one, else left out. Cost:
   * about 2·k·log(n) builds for k bad APIs among n changed ones, only on this failure path (a
   * write-time admission check refuses what fails alone, so this is for rules tightened by an
   * upgrade and clashes between APIs).
   */
  private isolate(group: string, apis: readonly GatewayApi[], revision: number, previous: GroupBuild | undefined): GroupBuild {
    const lastGood = new Map((previous?.served ?? []).map((a) => [a.handle, a]));
    let kept = new Map<string, GatewayApi>();
    const changed: GatewayApi[] = [];
    for (const api of apis) {
      const good = lastGood.get(api.handle);
      if (good) kept.set(api.handle, good);
      if (good !== api) changed.push(api);
    }
    let base = this.attempt(sortedByHandle(kept), revision, previous?.snapshot);
    if (!base.ok) {
      // What built before no longer does (the translator or its options changed): rebuild from nothing.
      kept = new Map();
      changed.splice(0, changed.length, ...apis);
      base = this.attempt([], revision, previous?.snapshot);
      if (!base.ok) throw new Error(`an empty gateway configuration fails validation: ${base.problems.join("; ")}`);
    }
    let current: Extract<Attempt, { ok: true }> = base;
    const held = new Map<string, HeldApi>();
    const add = (list: GatewayApi[]) => {
      if (list.length === 0) return;
      const trial = new Map(kept);
      for (const api of list) trial.set(api.handle, api);
      const result = this.attempt(sortedByHandle(trial), revision, current.snapshot);
      if (result.ok) {
        kept = trial;
        current = result;
        return;
      }
      if (list.length === 1) {
        const api = list[0]!;
        held.set(api.handle, { revision, problems: result.problems, heldAt: kept.has(api.handle) ? "last good version" : "left out" });
        return;
      }
      const middle = list.length >> 1;
      add(list.slice(0, middle));
      add(list.slice(middle));
    };
    add(changed);
    // A held API keeps what it was held with until it changes again.
    for (const [handle, was] of previous?.held ?? []) {
      const api = apis.find((a) => a.handle === handle);
      if (api && held.has(handle) && previous?.apis.includes(api)) held.set(handle, was);
    }
    this.metrics?.isolations.inc();
    return { apis, served: sortedByHandle(kept), snapshot: current.snapshot, diagnostics: current.diagnostics, held };
  }

  /** Logs and counts what changed in a group's held APIs and translator diagnostics. */
  private report(group: string, previous: GroupBuild | undefined, build: GroupBuild): void {
    for (const [handle, held] of build.held) {
      if (previous?.held.get(handle) === held) continue;
      this.options.logger.error(
        { group, api: handle, heldAt: held.heldAt, problems: held.problems },
        "an API's gateway configuration is refused by the Envoy check; it is held back, every other API keeps propagating",
      );
    }
    for (const handle of previous?.held.keys() ?? []) {
      if (!build.held.has(handle)) this.options.logger.info({ group, api: handle }, "a held API builds again and is served");
    }
    const before = new Set((previous?.diagnostics ?? []).map(diagnosticKey));
    for (const diagnostic of build.diagnostics) {
      if (before.has(diagnosticKey(diagnostic))) continue;
      this.metrics?.diagnostics.inc();
      this.options.logger.warn({ group, ...diagnostic }, "the gateway serves an API partially");
    }
    this.metrics?.held.set({ group }, build.held.size);
  }

  /** Per gateway group, whether it serves the API as stored, holds it back (and why), and the translator's notes on it. */
  apiStatus(handle: string): { group: string; revision: number; held?: HeldApi; diagnostics: IrDiagnostic[] }[] {
    const out = [];
    for (const [group, build] of [...this.previous].sort(([a], [b]) => compareStrings(a, b))) {
      if (!build.apis.some((a) => a.handle === handle)) continue;
      out.push({
        group,
        revision: this.cache.getSnapshot(group)?.revision ?? 0,
        ...(build.held.has(handle) ? { held: build.held.get(handle)! } : {}),
        diagnostics: build.diagnostics.filter((d) => d.apiId === handle),
      });
    }
    return out;
  }

  private publish(): void {
    const config = this.currentConfig();
    const groups = new Set([DEFAULT_GROUP, ...this.cache.knownGroups()]);
    for (const group of groups) {
      try {
        this.cache.setSnapshot(group, this.buildFor(group, config), this.revision);
        this.unpublished.delete(group);
      } catch (error) {
        this.unpublished.set(group, (error as Error)?.message ?? String(error));
        // Nothing invalid leaves: the group keeps its last good snapshot.
        this.metrics?.failures.inc();
        this.options.logger.error({ err: error, group, revision: this.revision }, "gateway configuration build failed; the group keeps its last good snapshot and /ready says so");
      }
    }
  }
}

/** Why an API is not served as stored. */
export interface HeldApi {
  /** The revision at which the pipeline held it. */
  revision: number;
  /** What the Envoy check said (resource, field path, message). */
  problems: string[];
  heldAt: "last good version" | "left out";
}

interface GroupBuild {
  /** The APIs the group was asked to serve (frozen objects, in handle order). */
  apis: readonly GatewayApi[];
  /** What its snapshot actually serves: `apis` but for held APIs (absent, or at their last good version). */
  served: readonly GatewayApi[];
  snapshot: Snapshot;
  diagnostics: readonly IrDiagnostic[];
  held: Map<string, HeldApi>;
}

type Attempt = { ok: true; snapshot: Snapshot; diagnostics: readonly IrDiagnostic[] } | { ok: false; problems: string[] };

function diagnosticKey(d: IrDiagnostic): string {
  return `${d.apiId ?? ""}\u0000${d.stage ?? ""}\u0000${d.operation ?? ""}\u0000${d.message}`;
}

function sortedByHandle(apis: Map<string, GatewayApi>): GatewayApi[] {
  return [...apis.values()].sort((a, b) => compareStrings(a.handle, b.handle));
}

function sameApis(a: readonly GatewayApi[], b: readonly GatewayApi[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Snapshots per gateway group.
 *
 * A gateway is named by its Envoy node's `cluster` (Envoy's `--service-cluster` flag or
 * `node.cluster` in the bootstrap): every Envoy of one gateway shares it, and all of them are served
 * the same snapshot. An Envoy without `node.cluster` belongs to the group "default". Which APIs a
 * group receives is decided by whoever builds the snapshots (the lead maps APIs to gateways by
 * label; by default every API goes to every gateway); the cache only stores one snapshot per group.
 *
 *  - setSnapshot(group, snapshot, revision): stores it and notifies the group's watchers
 *    synchronously (the ADS sessions of that group then push what changed to their clients).
 *    `revision` is the store revision the snapshot was built from; it shows up in status as the
 *    revision a client has ACKed.
 *  - getSnapshot(group): the current one, or undefined.
 *  - ensureSnapshot(group): for a group seen for the first time (a new gateway connects), asks the
 *    SnapshotProvider given to the constructor (once, concurrent callers share the call) and stores
 *    the result unless a newer snapshot was set meanwhile. Without a provider, or when it fails,
 *    resolves to undefined and the session waits for setSnapshot.
 *  - watch(group, watcher): returns the function that stops watching.
 */
import type { Logger } from "pino";
import type { Snapshot } from "./snapshot";

export const DEFAULT_GROUP = "default";

export interface VersionedSnapshot {
  readonly group: string;
  readonly snapshot: Snapshot;
  /** The store revision the snapshot was built from (0 when unknown). */
  readonly revision: number;
  readonly setAt: Date;
}

/** Builds the snapshot of a group the cache has not seen yet. */
export type SnapshotProvider = (group: string) => Promise<Snapshot | { snapshot: Snapshot; revision: number }>;

export type SnapshotWatcher = (current: VersionedSnapshot) => void;

/** The gateway group of an Envoy node: `node.cluster` when set, else "default". */
export function groupOfNode(node: { cluster?: string } | undefined): string {
  const cluster = node?.cluster?.trim();
  return cluster ? cluster : DEFAULT_GROUP;
}

export interface SnapshotCacheOptions {
  provider?: SnapshotProvider;
  logger?: Logger;
}

export class SnapshotCache {
  private readonly snapshots = new Map<string, VersionedSnapshot>();
  private readonly watchers = new Map<string, Set<SnapshotWatcher>>();
  private readonly pending = new Map<string, Promise<VersionedSnapshot | undefined>>();

  constructor(private readonly options: SnapshotCacheOptions = {}) {}

  setSnapshot(group: string, snapshot: Snapshot, revision = 0): VersionedSnapshot {
    const current: VersionedSnapshot = Object.freeze({ group, snapshot, revision, setAt: new Date() });
    this.snapshots.set(group, current);
    for (const watcher of [...(this.watchers.get(group) ?? [])]) {
      try {
        watcher(current);
      } catch (error) {
        this.options.logger?.error({ err: error, group }, "an xDS snapshot watcher failed");
      }
    }
    return current;
  }

  getSnapshot(group: string): VersionedSnapshot | undefined {
    return this.snapshots.get(group);
  }

  deleteSnapshot(group: string): boolean {
    return this.snapshots.delete(group);
  }

  /** Groups that have a snapshot. */
  groups(): string[] {
    return [...this.snapshots.keys()].sort();
  }

  /** Groups that have a snapshot or a watcher (connected gateways). */
  knownGroups(): string[] {
    return [...new Set([...this.snapshots.keys(), ...this.watchers.keys()])].sort();
  }

  watch(group: string, watcher: SnapshotWatcher): () => void {
    let set = this.watchers.get(group);
    if (!set) this.watchers.set(group, (set = new Set()));
    set.add(watcher);
    return () => {
      const s = this.watchers.get(group);
      if (!s) return;
      s.delete(watcher);
      if (s.size === 0) this.watchers.delete(group);
    };
  }

  async ensureSnapshot(group: string): Promise<VersionedSnapshot | undefined> {
    const existing = this.snapshots.get(group);
    if (existing) return existing;
    const provider = this.options.provider;
    if (!provider) return undefined;
    let promise = this.pending.get(group);
    if (!promise) {
      promise = (async () => {
        try {
          const result = await provider(group);
          const { snapshot, revision } = "resources" in result ? { snapshot: result, revision: 0 } : result;
          const now = this.snapshots.get(group);
          // A snapshot set while the provider ran is at least as new: keep it.
          if (now && now.revision >= revision) return now;
          return this.setSnapshot(group, snapshot, revision);
        } catch (error) {
          this.options.logger?.error({ err: error, group }, "the xDS snapshot provider failed; waiting for setSnapshot");
          return this.snapshots.get(group);
        } finally {
          this.pending.delete(group);
        }
      })();
      this.pending.set(group, promise);
    }
    return promise;
  }
}

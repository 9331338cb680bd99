/**
 * One ADS stream (one Envoy): the xDS protocol state machine, independent of gRPC. The server feeds
 * it requests and snapshots; it writes encoded responses through `hooks.write`.
 *
 * Per resource type it keeps the subscription (wildcard and/or names), what the client was sent
 * (`sent`) and what it is known to have applied (`acked`), name → version (+ the resource when
 * known), the nonce of the latest response and whether that response still awaits its ACK/NACK.
 *
 * Protocol rules implemented (both SotW and delta unless noted):
 *  - A request whose response_nonce is not the latest one sent for its type is stale: SotW ignores it
 *    entirely (the client repeats its full subscription in the reply to the latest response); delta
 *    applies its subscribe/unsubscribe (they are increments that will not be repeated) but not its
 *    ACK/NACK meaning.
 *  - ACK = the latest nonce without error_detail; NACK = the latest nonce with error_detail: the NACK
 *    is logged, counted and recorded; the rejected version stays "sent", so it is not sent again;
 *    the type is sent again only when its content for this client changes (a new version).
 *  - A type is sent only when its content for this client changed (SotW: the version over the
 *    names+versions it would contain differs from the last one sent; delta: per resource).
 *  - One response per type in flight: the next one for that type waits for the ACK/NACK.
 *  - Order (never drops traffic): types are considered in the order Cluster, ClusterLoadAssignment,
 *    Listener, RouteConfiguration; while a type earlier in that order has a response awaiting its
 *    ACK, later types wait. After clusters, listeners and routes also wait until the client has
 *    subscribed to the ClusterLoadAssignments of the EDS clusters it was sent (a new EDS cluster
 *    warms until its endpoints arrive; a route sent before would answer 503), at most
 *    `edsWarmingTimeoutMs` after the clusters were sent.
 *  - Removal (two phases): a cluster that left the snapshot is kept in what the client is sent (SotW:
 *    the last version it had; delta: simply not listed in removed_resources) for as long as any
 *    route configuration or listener the client has been sent or has ACKed refers to it. Routes are
 *    therefore updated first; once the client ACKed routes that no longer refer to the cluster, the
 *    cluster goes. A ClusterLoadAssignment or RouteConfiguration the client still subscribes to by
 *    name is likewise kept until the client stops asking for it (Envoy stops once it dropped the
 *    cluster or listener that needed it). A delta client reconnecting with versions we cannot map
 *    to a known resource counts as referring to every cluster until its routes were re-sent.
 *  - Wildcard: Listener and Cluster subscribe to everything when the first request names nothing
 *    (legacy wildcard) or names "*"; ClusterLoadAssignment and RouteConfiguration by name.
 *  - SotW reconnect: a first request whose version_info equals the version the server would send is
 *    not answered (the client has it). Delta reconnect: initial_resource_versions seed what the
 *    client has; only resources whose version differs are sent, names that no longer exist are in
 *    removed_resources.
 *  - Delta: a named subscription to a resource that does not exist is answered once in
 *    removed_resources (so the client does not wait for its initial_fetch_timeout); the first
 *    response to a wildcard subscription is sent even when empty (Envoy waits for it to initialise).
 */
import type { Logger } from "pino";
import type { VersionedSnapshot } from "./cache";
import type { XdsMetrics } from "./metrics";
import {
  encodeDeltaDiscoveryResponse,
  encodeDiscoveryResponse,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  type RpcStatus,
  type XdsNode,
} from "./protocol";
import { isXdsTypeUrl, kindOf, PUSH_ORDER, versionOfSet, XDS_TYPE_URLS, type SnapshotResource, type XdsTypeUrl } from "./snapshot";
import type { NackRecord, NodeStatus, TypeStatus } from "./status";

export type XdsProtocol = "sotw" | "delta";

const { cluster: CLUSTER, endpoint: ENDPOINT, listener: LISTENER, route: ROUTE } = XDS_TYPE_URLS;
const WILDCARD_TYPES = new Set<string>([CLUSTER, LISTENER]);

/** A resource as the client has it: its version, and the resource itself when known. */
interface Held {
  version: string;
  entry?: SnapshotResource;
}

interface InFlight {
  nonce: string;
  version: string;
  revision: number;
  /** SotW: the full state sent; delta: the resources updated. */
  updates: Map<string, Held>;
  removed: string[];
}

interface TypeState {
  typeUrl: XdsTypeUrl;
  subscribed: boolean;
  wildcard: boolean;
  legacyWildcard: boolean;
  names: Set<string>;
  sent: Map<string, Held>;
  acked: Map<string, Held>;
  sentVersion?: string;
  sentAt: number;
  latestNonce?: string;
  inFlight?: InFlight;
  /** SotW: version_info of the first request (what a reconnecting client already has). */
  initialVersion?: string;
  everResponded: boolean;
  absentNotified: Set<string>;
  stats: TypeStatus;
}

interface Plan {
  version: string;
  /** The client's state for the type once it applies the response. */
  state: Map<string, Held>;
  /** SotW: every resource of the response; delta: the changed ones. */
  updates: SnapshotResource[];
  removed: string[];
}

export interface SessionHooks {
  write(bytes: Buffer): void;
  logger: Logger;
  metrics?: XdsMetrics;
  onNack?(record: NackRecord): void;
  /** control_plane.identifier in responses. */
  identifier: string;
  edsWarmingTimeoutMs: number;
}

export interface SessionInfo {
  stream: string;
  protocol: XdsProtocol;
  node: XdsNode;
  group: string;
  peer?: string;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export class AdsSession {
  readonly connectedAt = new Date();
  private current?: VersionedSnapshot;
  private readonly types = new Map<XdsTypeUrl, TypeState>();
  private nonceCounter = 0;
  private closed = false;
  private gateTimer?: NodeJS.Timeout;
  private readonly log: Logger;

  constructor(
    readonly info: SessionInfo,
    private readonly hooks: SessionHooks,
  ) {
    this.log = hooks.logger.child({ stream: info.stream, node: info.node.id, group: info.group, protocol: info.protocol });
  }

  get group(): string {
    return this.info.group;
  }

  get snapshotRevision(): number | undefined {
    return this.current?.revision;
  }

  /** A new snapshot for the group (or the first one): push what changed. */
  setSnapshot(current: VersionedSnapshot): void {
    if (this.closed) return;
    this.current = current;
    this.push();
  }

  close(): void {
    this.closed = true;
    if (this.gateTimer) clearTimeout(this.gateTimer);
    this.gateTimer = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  handleSotw(req: DiscoveryRequest): void {
    if (this.closed) return;
    const ts = this.typeState(req.typeUrl);
    if (!ts) return;
    const nonce = req.responseNonce;
    if (nonce && nonce !== ts.latestNonce) {
      ts.stats.staleRequests++;
      this.log.debug({ type: kindOf(ts.typeUrl), nonce, latest: ts.latestNonce }, "ignored a stale xDS request");
      return;
    }
    const first = !ts.subscribed;
    if (nonce && ts.inFlight?.nonce === nonce) this.resolve(ts, nonce, req.errorDetail);
    if (!nonce && !first) {
      // The client subscribes to the type again on the same stream: answer unless it has our version.
      if (req.versionInfo !== ts.sentVersion) {
        ts.sentVersion = undefined;
        ts.inFlight = undefined;
        ts.everResponded = false;
      }
    }
    if (!nonce && !ts.everResponded) ts.initialVersion = req.versionInfo || undefined;

    const names = req.resourceNames ?? [];
    if (first) ts.legacyWildcard = names.length === 0 && WILDCARD_TYPES.has(ts.typeUrl);
    else if (names.length > 0) ts.legacyWildcard = false;
    ts.wildcard = ts.legacyWildcard || names.includes("*");
    const explicit = new Set(names.filter((n) => n !== "*"));
    if (!ts.wildcard) {
      // What the client stops asking for, it drops.
      for (const name of [...ts.sent.keys()]) if (!explicit.has(name)) ts.sent.delete(name);
      for (const name of [...ts.acked.keys()]) if (!explicit.has(name)) ts.acked.delete(name);
    }
    ts.names = explicit;
    ts.subscribed = true;
    this.push();
  }

  handleDelta(req: DeltaDiscoveryRequest): void {
    if (this.closed) return;
    const ts = this.typeState(req.typeUrl);
    if (!ts) return;
    const subscribe = req.resourceNamesSubscribe ?? [];
    const unsubscribe = req.resourceNamesUnsubscribe ?? [];
    if (!ts.subscribed) {
      for (const [name, version] of Object.entries(req.initialResourceVersions ?? {})) {
        ts.sent.set(name, { version });
        ts.acked.set(name, { version });
      }
      ts.legacyWildcard = subscribe.length === 0 && WILDCARD_TYPES.has(ts.typeUrl);
      ts.wildcard = ts.legacyWildcard;
      ts.subscribed = true;
    }
    for (const name of subscribe) {
      if (name === "*") ts.wildcard = true;
      else {
        ts.names.add(name);
        ts.absentNotified.delete(name);
      }
    }
    for (const name of unsubscribe) {
      if (name === "*") {
        ts.wildcard = ts.legacyWildcard = false;
        for (const map of [ts.sent, ts.acked]) for (const n of [...map.keys()]) if (!ts.names.has(n)) map.delete(n);
      } else {
        ts.names.delete(name);
        ts.absentNotified.delete(name);
        if (!ts.wildcard) {
          ts.sent.delete(name);
          ts.acked.delete(name);
        }
      }
    }
    const nonce = req.responseNonce;
    if (nonce) {
      if (ts.inFlight?.nonce === nonce) this.resolve(ts, nonce, req.errorDetail);
      else {
        ts.stats.staleRequests++;
        this.log.debug({ type: kindOf(ts.typeUrl), nonce, latest: ts.latestNonce }, "stale nonce in a delta xDS request: subscription applied, ACK/NACK ignored");
      }
    }
    this.push();
  }

  private typeState(typeUrl: string): TypeState | undefined {
    if (!isXdsTypeUrl(typeUrl)) {
      this.log.debug({ typeUrl }, "ignored a request for an unsupported xDS type");
      return undefined;
    }
    let ts = this.types.get(typeUrl);
    if (!ts) {
      ts = {
        typeUrl,
        subscribed: false,
        wildcard: false,
        legacyWildcard: false,
        names: new Set(),
        sent: new Map(),
        acked: new Map(),
        sentAt: 0,
        everResponded: false,
        absentNotified: new Set(),
        stats: { typeUrl, subscription: { wildcard: false, names: 0, sample: [] }, retained: [], responses: 0, nacks: 0, staleRequests: 0, bytesSent: 0 },
      };
      this.types.set(typeUrl, ts);
    }
    return ts;
  }

  /** The reply to the response in flight: ACK or NACK. */
  private resolve(ts: TypeState, nonce: string, error: RpcStatus | undefined): void {
    const flight = ts.inFlight!;
    ts.inFlight = undefined;
    const at = new Date().toISOString();
    if (error) {
      const nack = { version: flight.version, nonce, revision: flight.revision, at, code: error.code, message: error.message };
      ts.stats.lastNack = nack;
      ts.stats.nacks++;
      const type = kindOf(ts.typeUrl);
      this.log.warn({ type, version: flight.version, revision: flight.revision, code: error.code, error: error.message }, "Envoy rejected (NACKed) an xDS response; it keeps its last accepted configuration");
      this.hooks.metrics?.nacks.inc({ group: this.info.group, type, protocol: this.info.protocol });
      this.hooks.onNack?.({ ...nack, nodeId: this.info.node.id, group: this.info.group, stream: this.info.stream, protocol: this.info.protocol, typeUrl: ts.typeUrl });
      return;
    }
    if (this.info.protocol === "sotw") ts.acked = new Map(flight.updates);
    else {
      for (const [name, held] of flight.updates) ts.acked.set(name, held);
      for (const name of flight.removed) ts.acked.delete(name);
    }
    ts.stats.lastAcked = { version: flight.version, nonce, revision: flight.revision, at };
    ts.stats.syncedRevision = flight.revision;
  }

  // -------------------------------------------------------------------------------------------
  // Pushing

  private push(): void {
    if (this.closed || !this.current) return;
    let blocked = false;
    for (const typeUrl of PUSH_ORDER) {
      const ts = this.types.get(typeUrl);
      if (ts?.subscribed) {
        if (ts.inFlight) blocked = true;
        else {
          const plan = this.info.protocol === "sotw" ? this.planSotw(ts) : this.planDelta(ts);
          if (!plan) this.markSynced(ts);
          else if (!blocked) {
            this.send(ts, plan);
            blocked = true;
          }
        }
      }
      if (typeUrl === CLUSTER && !blocked && this.waitingForEds()) blocked = true;
    }
  }

  private snap(typeUrl: XdsTypeUrl): ReadonlyMap<string, SnapshotResource> {
    return this.current!.snapshot.resources[typeUrl];
  }

  /** The snapshot's resources this client subscribes to. */
  private desired(ts: TypeState): ReadonlyMap<string, SnapshotResource> {
    const snap = this.snap(ts.typeUrl);
    if (ts.wildcard) return snap;
    const out = new Map<string, SnapshotResource>();
    for (const name of ts.names) {
      const entry = snap.get(name);
      if (entry) out.set(name, entry);
    }
    return out;
  }

  /** The resource behind what the client holds, when we know it. */
  private entryOf(typeUrl: XdsTypeUrl, name: string, held: Held): SnapshotResource | undefined {
    if (held.entry) return held.entry;
    const entry = this.snap(typeUrl).get(name);
    return entry?.version === held.version ? entry : undefined;
  }

  /** Clusters the client's routes and listeners (sent or ACKed) may send traffic to; "all" when unknown. */
  private clientClusterRefs(): Set<string> | "all" {
    const out = new Set<string>();
    for (const typeUrl of [ROUTE, LISTENER]) {
      const ts = this.types.get(typeUrl);
      if (!ts) continue;
      for (const map of [ts.sent, ts.acked]) {
        for (const [name, held] of map) {
          const entry = this.entryOf(typeUrl, name, held);
          if (!entry) return "all";
          for (const c of entry.clusterRefs) out.add(c);
        }
      }
    }
    return out;
  }

  /** Resources gone from the snapshot that the client must keep for now (see the header). */
  private retained(ts: TypeState, desired: ReadonlyMap<string, SnapshotResource>): Map<string, Held> {
    const kept = new Map<string, Held>();
    if (ts.typeUrl === CLUSTER) {
      let refs: Set<string> | "all" | undefined;
      for (const map of [ts.acked, ts.sent]) {
        for (const name of map.keys()) {
          if (desired.has(name) || kept.has(name) || !(ts.wildcard || ts.names.has(name))) continue;
          refs ??= this.clientClusterRefs();
          if (refs === "all" || refs.has(name)) kept.set(name, ts.acked.get(name) ?? ts.sent.get(name)!);
        }
      }
    } else if (ts.typeUrl === ENDPOINT || ts.typeUrl === ROUTE) {
      for (const name of ts.names) {
        if (desired.has(name)) continue;
        const held = ts.acked.get(name) ?? ts.sent.get(name);
        if (held) kept.set(name, held);
      }
    }
    ts.stats.retained = [...kept.keys()].sort();
    return kept;
  }

  private planSotw(ts: TypeState): Plan | undefined {
    const desired = this.desired(ts);
    const kept = [...this.retained(ts, desired)].filter(([, held]) => held.entry);
    // Wildcard with nothing retained: exactly the snapshot's type, whose version is precomputed.
    const version =
      ts.wildcard && kept.length === 0
        ? this.current!.snapshot.versions[ts.typeUrl]
        : versionOfSet([...desired.values(), ...kept.map(([name, held]) => ({ name, version: held.version }))]);
    const reconnected = !ts.everResponded && ts.initialVersion !== undefined && ts.initialVersion === version;
    if (!reconnected && ts.sentVersion === version) return undefined;
    if (!ts.everResponded && desired.size === 0 && kept.length === 0 && !ts.wildcard) return undefined;
    const state = new Map<string, Held>();
    for (const entry of desired.values()) state.set(entry.name, { version: entry.version, entry });
    for (const [name, held] of kept) state.set(name, held);
    if (reconnected) {
      // A reconnecting client that already has exactly this: nothing to send.
      ts.initialVersion = undefined;
      ts.everResponded = true;
      ts.sent = state;
      ts.acked = new Map(state);
      ts.sentVersion = version;
      ts.stats.lastAcked = { version, nonce: "", revision: this.current!.revision, at: new Date().toISOString() };
      return undefined;
    }
    const updates = [...state.values()].map((h) => h.entry!).sort(byName);
    return { version, state, updates, removed: [] };
  }

  private planDelta(ts: TypeState): Plan | undefined {
    const desired = this.desired(ts);
    const kept = this.retained(ts, desired);
    const updates = [...desired.values()].filter((e) => ts.sent.get(e.name)?.version !== e.version).sort(byName);
    const removed = [...ts.sent.keys()].filter((n) => !desired.has(n) && !kept.has(n));
    for (const name of ts.names) {
      if (!desired.has(name) && !kept.has(name) && !ts.sent.has(name) && !ts.absentNotified.has(name)) removed.push(name);
    }
    if (updates.length === 0 && removed.length === 0 && (ts.everResponded || !ts.wildcard)) return undefined;
    const state = new Map(ts.sent);
    for (const entry of updates) state.set(entry.name, { version: entry.version, entry });
    for (const name of removed) state.delete(name);
    const version = versionOfSet([...state].map(([name, held]) => ({ name, version: held.version })));
    return { version, state, updates, removed: removed.sort() };
  }

  private send(ts: TypeState, plan: Plan): void {
    const nonce = String(++this.nonceCounter);
    const typeUrl = ts.typeUrl;
    const controlPlane = { identifier: this.hooks.identifier };
    const bytes =
      this.info.protocol === "sotw"
        ? encodeDiscoveryResponse({
            versionInfo: plan.version,
            typeUrl,
            nonce,
            resources: plan.updates.map((e) => ({ typeUrl, value: e.value })),
            controlPlane,
          })
        : encodeDeltaDiscoveryResponse({
            systemVersionInfo: plan.version,
            typeUrl,
            nonce,
            resources: plan.updates.map((e) => ({ name: e.name, version: e.version, resource: { typeUrl, value: e.value } })),
            removedResources: plan.removed,
            controlPlane,
          });
    const revision = this.current!.revision;
    const updates = new Map<string, Held>();
    for (const entry of plan.updates) updates.set(entry.name, plan.state.get(entry.name) ?? { version: entry.version, entry });
    ts.inFlight = { nonce, version: plan.version, revision, updates, removed: plan.removed };
    ts.latestNonce = nonce;
    ts.sent = plan.state;
    ts.sentVersion = plan.version;
    ts.sentAt = Date.now();
    ts.everResponded = true;
    ts.initialVersion = undefined;
    if (this.info.protocol === "delta") {
      for (const name of plan.removed) if (ts.names.has(name) && !this.snap(typeUrl).has(name)) ts.absentNotified.add(name);
    }
    const type = kindOf(typeUrl);
    ts.stats.responses++;
    ts.stats.bytesSent += bytes.length;
    ts.stats.lastSent = {
      version: plan.version,
      nonce,
      revision,
      at: new Date(ts.sentAt).toISOString(),
      resources: plan.updates.length,
      removed: plan.removed.length,
      bytes: bytes.length,
    };
    this.hooks.metrics?.responses?.inc({ type, protocol: this.info.protocol });
    this.hooks.metrics?.responseBytes?.inc({ type, protocol: this.info.protocol }, bytes.length);
    this.log.debug({ type, version: plan.version, nonce, resources: plan.updates.length, removed: plan.removed.length, revision }, "sent an xDS response");
    this.hooks.write(bytes);
  }

  /** Nothing to send for this type: the client is in step with the current snapshot (unless it NACKed). */
  private markSynced(ts: TypeState): void {
    if (ts.inFlight || !this.current) return;
    if (!ts.everResponded || ts.stats.lastAcked?.version === ts.sentVersion) ts.stats.syncedRevision = this.current.revision;
  }

  /**
   * True while listeners and routes should wait for the endpoints of EDS clusters the client was
   * sent but has not subscribed to yet (bounded by edsWarmingTimeoutMs after the clusters were sent).
   */
  private waitingForEds(): boolean {
    const cds = this.types.get(CLUSTER);
    if (!cds?.subscribed || cds.sent.size === 0) return false;
    const eds = this.types.get(ENDPOINT);
    const available = this.snap(ENDPOINT);
    let missing = false;
    for (const [name, held] of cds.sent) {
      const edsName = this.entryOf(CLUSTER, name, held)?.edsName;
      if (edsName === undefined || !available.has(edsName)) continue;
      if (eds?.subscribed && (eds.wildcard || eds.names.has(edsName))) continue;
      missing = true;
      break;
    }
    if (!missing) return false;
    const deadline = cds.sentAt + this.hooks.edsWarmingTimeoutMs;
    const wait = deadline - Date.now();
    if (wait <= 0) return false;
    if (!this.gateTimer) {
      this.gateTimer = setTimeout(() => {
        this.gateTimer = undefined;
        this.push();
      }, wait + 1);
      this.gateTimer.unref?.();
    }
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Status

  status(): NodeStatus {
    const types: Record<string, TypeStatus> = {};
    for (const typeUrl of PUSH_ORDER) {
      const ts = this.types.get(typeUrl);
      if (!ts?.subscribed) continue;
      const names = [...ts.names].sort();
      types[kindOf(typeUrl)] = {
        ...ts.stats,
        subscription: { wildcard: ts.wildcard, names: names.length, sample: names.slice(0, 50) },
        pendingNonce: ts.inFlight?.nonce,
        retained: [...ts.stats.retained],
      };
    }
    const node = this.info.node;
    const version = node.userAgentVersionType?.case === "userAgentVersion" ? String(node.userAgentVersionType.value ?? "") : "";
    return {
      stream: this.info.stream,
      nodeId: node.id,
      group: this.info.group,
      protocol: this.info.protocol,
      connectedAt: this.connectedAt.toISOString(),
      peer: this.info.peer,
      userAgent: node.userAgentName ? `${node.userAgentName}${version ? `/${version}` : ""}` : undefined,
      snapshotRevision: this.current?.revision,
      types,
    };
  }

  /** The newest revision this client has ACKed for every type it subscribes to (undefined if none). */
  syncedRevision(): number | undefined {
    let min: number | undefined;
    for (const ts of this.types.values()) {
      if (!ts.subscribed) continue;
      const r = ts.stats.syncedRevision;
      if (r === undefined) return undefined;
      min = min === undefined ? r : Math.min(min, r);
    }
    return min;
  }
}

/**
 * The ADS server: gRPC `envoy.service.discovery.v3.AggregatedDiscoveryService` on @grpc/grpc-js
 * with both `StreamAggregatedResources` (state of the world) and `DeltaAggregatedResources`
 * (incremental), for Cluster, ClusterLoadAssignment, Listener and RouteConfiguration.
 *
 * Each stream becomes an AdsSession (session.ts: the protocol rules, ordering and removal) bound to
 * the gateway group of its node (`node.cluster`, else "default"; cache.ts). The first request must
 * carry `node`. The session receives the group's snapshot from the cache (asking the cache's
 * SnapshotProvider for a group seen for the first time) and every later one through a watch, so a
 * setSnapshot reaches every connected Envoy of the group at once.
 *
 * Usage:
 *   const xds = await createXdsServer({ cache, logger, metrics: createXdsMetrics(registry), port: 18000 });
 *   xds.port; xds.status(); xds.syncedRevision("default"); await xds.close();
 */
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { groupOfNode, type SnapshotCache } from "./cache";
import type { XdsMetrics } from "./metrics";
import { adsServiceDefinition, type DeltaDiscoveryRequest, type DiscoveryRequest } from "./protocol";
import { AdsSession, type XdsProtocol } from "./session";
import type { NackRecord, XdsStatus } from "./status";

export interface XdsServerOptions {
  cache: SnapshotCache;
  logger: Logger;
  metrics?: XdsMetrics;
  /** 0 picks a free port. */
  port: number;
  /** Default 0.0.0.0. */
  host?: string;
  /** control_plane.identifier in responses. Default "apigw-control-plane". */
  identifier?: string;
  /** How long listeners/routes wait for the client to ask for new EDS clusters' endpoints. Default 1000 ms. */
  edsWarmingTimeoutMs?: number;
  /** NACKs kept in status after their stream ended. Default 50. */
  nackHistory?: number;
}

export interface XdsServer {
  port: number;
  close(): Promise<void>;
  status(): XdsStatus;
  /**
   * The newest store revision that every connected node of the group has ACKed for all the types
   * it subscribes to; undefined when no node of the group is connected or one has not caught up
   * with any revision yet.
   */
  syncedRevision(group: string): number | undefined;
  /** Each connected stream: its node, group and the newest revision it has ACKed for every type it subscribes to. */
  streams(): { stream: string; nodeId: string; group: string; syncedRevision?: number }[];
}

const GRPC_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": -1,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.http2.min_ping_interval_without_data_ms": 10_000,
};

export async function createXdsServer(options: XdsServerOptions): Promise<XdsServer> {
  const { cache, metrics } = options;
  const logger = options.logger.child({ component: "xds" });
  const identifier = options.identifier ?? "apigw-control-plane";
  const edsWarmingTimeoutMs = options.edsWarmingTimeoutMs ?? 1000;
  const nackHistory = options.nackHistory ?? 50;
  const sessions = new Set<AdsSession>();
  const calls = new Set<grpc.ServerDuplexStream<unknown, unknown>>();
  const recentNacks: NackRecord[] = [];
  let streamCounter = 0;

  function handle(protocol: XdsProtocol, call: grpc.ServerDuplexStream<unknown, unknown>): void {
    const stream = `${protocol}-${++streamCounter}`;
    calls.add(call);
    metrics?.streams?.inc({ protocol });
    let session: AdsSession | undefined;
    let unwatch: (() => void) | undefined;
    let finished = false;

    const finish = (reason: string) => {
      if (finished) return;
      finished = true;
      calls.delete(call);
      metrics?.streams?.dec({ protocol });
      unwatch?.();
      if (session) {
        session.close();
        sessions.delete(session);
        logger.info({ stream, node: session.info.node.id, group: session.group, reason }, "xDS stream closed");
      }
    };

    const fail = (code: grpc.status, details: string) => {
      logger.warn({ stream, code, details }, "xDS stream refused");
      call.emit("error", { code, details });
    };

    const start = (req: DiscoveryRequest | DeltaDiscoveryRequest): AdsSession | undefined => {
      const node = req.node;
      if (!node) {
        fail(grpc.status.INVALID_ARGUMENT, "the first request on an ADS stream must carry node");
        return undefined;
      }
      const group = groupOfNode(node);
      const created = new AdsSession(
        { stream, protocol, node, group, peer: call.getPeer() },
        {
          logger,
          metrics,
          identifier,
          edsWarmingTimeoutMs,
          write: (bytes) => {
            if (!finished) call.write(bytes);
          },
          onNack: (record) => {
            recentNacks.unshift(record);
            if (recentNacks.length > nackHistory) recentNacks.length = nackHistory;
          },
        },
      );
      sessions.add(created);
      unwatch = cache.watch(group, (current) => created.setSnapshot(current));
      logger.info({ stream, node: node.id, group, peer: call.getPeer() }, "xDS stream opened");
      const existing = cache.getSnapshot(group);
      if (existing) created.setSnapshot(existing);
      else {
        cache.ensureSnapshot(group).then(
          () => {
            const now = cache.getSnapshot(group);
            if (now && created.snapshotRevision === undefined) created.setSnapshot(now);
          },
          (error) => logger.error({ err: error, group }, "could not load the xDS snapshot"),
        );
      }
      return created;
    };

    call.on("data", (req: DiscoveryRequest | DeltaDiscoveryRequest) => {
      if (finished) return;
      try {
        session ??= start(req);
        if (!session) return;
        if (protocol === "sotw") session.handleSotw(req as DiscoveryRequest);
        else session.handleDelta(req as DeltaDiscoveryRequest);
      } catch (error) {
        logger.error({ err: error, stream }, "xDS request handling failed");
        fail(grpc.status.INTERNAL, "internal error in the xDS server");
      }
    });
    call.on("end", () => {
      finish("client closed the stream");
      call.end();
    });
    call.on("cancelled", () => finish("cancelled"));
    call.on("error", (error: Error) => finish(`error: ${error.message}`));
    call.on("close", () => finish("closed"));
  }

  const server = new grpc.Server(GRPC_OPTIONS);
  server.addService(adsServiceDefinition(), {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => handle("sotw", call),
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => handle("delta", call),
  });
  const host = options.host ?? "0.0.0.0";
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${options.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  logger.info({ port }, "ADS server listening");

  const status = (): XdsStatus => ({
    nodes: [...sessions].map((s) => s.status()),
    recentNacks: recentNacks.map((n) => ({ ...n })),
  });

  return {
    port,
    status,
    streams() {
      return [...sessions].map((s) => {
        const status = s.status();
        const revision = s.syncedRevision();
        return { stream: status.stream, nodeId: status.nodeId, group: status.group, ...(revision !== undefined ? { syncedRevision: revision } : {}) };
      });
    },
    syncedRevision(group: string) {
      let min: number | undefined;
      let any = false;
      for (const s of sessions) {
        if (s.group !== group) continue;
        any = true;
        const r = s.syncedRevision();
        if (r === undefined) return undefined;
        min = min === undefined ? r : Math.min(min, r);
      }
      return any ? min : undefined;
    },
    async close() {
      for (const call of [...calls]) {
        try {
          call.end(); // status OK: Envoy reconnects (to another replica)
        } catch {
          /* already closed */
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      for (const s of sessions) s.close();
      sessions.clear();
    },
  };
}

import type { Knex } from "knex";
import { randomHex } from "@apigw/shared";
import type { Logger } from "../observability/logger";
import type { XdsServer } from "../xds";

/*
 * Every replica answers the same `status.gateways`: each replica writes the Envoys connected to it
 * (stream, node, group, the newest revision each has ACKed for all its types) into the store's
 * `gateway_nodes` table when that changes, with a heartbeat; every replica reads its own Envoys
 * live and the other replicas' from the table, ignoring rows not refreshed within STALE_MS (a
 * replica that died). One writer per replica, a few rows per Envoy: cheap.
 */

const PUBLISH_MS = 250;
const HEARTBEAT_MS = 5_000;
const STALE_MS = 15_000;

export interface ConnectedGateway {
  name: string;
  nodes: number;
  /** The newest revision every node of the group has ACKed (undefined: one has not caught up yet). */
  syncedRevision?: number;
}

type StreamRow = { stream: string; nodeId: string; group: string; syncedRevision?: number };

export class SharedGatewayStatus {
  readonly replica = randomHex(8);
  private timer?: NodeJS.Timeout;
  private lastWritten = "";
  private lastWriteAt = 0;
  private writing = false;
  private failing = false;

  constructor(
    private readonly knex: Knex,
    private readonly xds: Pick<XdsServer, "streams">,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.publish(), PUBLISH_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.knex("gateway_nodes").where({ replica: this.replica }).delete().catch(() => undefined);
  }

  /** Writes this replica's streams when they changed, or as a heartbeat. */
  async publish(): Promise<void> {
    if (this.writing) return;
    const rows = this.xds.streams().sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
    const key = JSON.stringify(rows);
    if (key === this.lastWritten && Date.now() - this.lastWriteAt < HEARTBEAT_MS) return;
    this.writing = true;
    try {
      await this.knex.transaction(async (tx) => {
        await tx("gateway_nodes").where({ replica: this.replica }).delete();
        if (rows.length) {
          await tx("gateway_nodes").insert(
            rows.map((r) => ({ replica: this.replica, stream: r.stream, node_id: r.nodeId, gateway_group: r.group, synced_revision: r.syncedRevision ?? null, updated_at: new Date() })),
          );
        }
        // Rows of replicas that stopped without saying so.
        await tx("gateway_nodes").where("updated_at", "<", new Date(Date.now() - 4 * STALE_MS)).delete();
      });
      this.lastWritten = key;
      this.lastWriteAt = Date.now();
      if (this.failing) this.logger.info("gateway node status is shared again");
      this.failing = false;
    } catch (error) {
      if (!this.failing) this.logger.warn({ err: (error as Error).message }, "could not share gateway node status; retrying");
      this.failing = true;
    } finally {
      this.writing = false;
    }
  }

  /** Connected gateway groups across all replicas: this replica's live, the others' from the store. */
  async connectedGateways(): Promise<ConnectedGateway[]> {
    const streams: StreamRow[] = this.xds.streams();
    const others = (await this.knex("gateway_nodes")
      .whereNot({ replica: this.replica })
      .where("updated_at", ">=", new Date(Date.now() - STALE_MS))
      .select("stream", "node_id", "gateway_group", "synced_revision")) as { stream: string; node_id: string; gateway_group: string; synced_revision: number | null }[];
    for (const row of others) {
      streams.push({ stream: row.stream, nodeId: row.node_id, group: row.gateway_group, ...(row.synced_revision !== null ? { syncedRevision: Number(row.synced_revision) } : {}) });
    }
    const groups = new Map<string, { nodes: number; revision: number | undefined; unknown: boolean }>();
    for (const s of streams) {
      const g = groups.get(s.group) ?? { nodes: 0, revision: undefined, unknown: false };
      g.nodes++;
      if (s.syncedRevision === undefined) g.unknown = true;
      else g.revision = g.revision === undefined ? s.syncedRevision : Math.min(g.revision, s.syncedRevision);
      groups.set(s.group, g);
    }
    return [...groups]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, g]) => ({ name, nodes: g.nodes, ...(!g.unknown && g.revision !== undefined ? { syncedRevision: g.revision } : {}) }));
  }
}

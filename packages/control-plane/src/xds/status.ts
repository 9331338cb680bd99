/**
 * What the ADS server knows about each connected Envoy, and the two admin endpoints built on it.
 * The functions here return `{status, body}`; the admin HTTP server (port 9092) mounts them:
 *
 *   GET /xds/nodes[?group=<g>][&node=<id>]  → xdsNodesResponse(server, query)
 *   GET /config_dump?group=<g>              → configDumpResponse(cache, query)
 *
 * /xds/nodes body: `{nodes: NodeStatus[], recentNacks: NackRecord[]}`; per node: stream id, node
 * id, group, protocol (sotw | delta), connected since, Envoy version, and per resource type the
 * subscription, the last response sent (version, nonce, store revision, resource count, bytes), the
 * last ACK (version, nonce, the store revision of the ACKed response), `syncedRevision` (the newest
 * store revision whose configuration of this type the node has ACKed: also advanced when a new
 * revision leaves the type unchanged), the last NACK (version, error message, time), whether a
 * response awaits its ACK (`pendingNonce`), and the names kept only for safe ordering (`retained`).
 *
 * /config_dump body: exactly Envoy's `envoy.admin.v3.ConfigDump` JSON (ClustersConfigDump,
 * EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump with the dynamic resources of the
 * group's current snapshot, each with its "@type"), so Envoy tooling can read it. The group and
 * the store revision are in the response headers `X-Apigw-Xds-Group` / `X-Apigw-Revision`.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { DEFAULT_GROUP, type SnapshotCache } from "./cache";
import { envoyJsonOf, PUSH_ORDER, XDS_TYPE_URLS, type SnapshotResource } from "./snapshot";

export interface SentInfo {
  version: string;
  nonce: string;
  revision: number;
  at: string;
  /** Resources in the response (SotW: the full set; delta: the updated ones). */
  resources: number;
  /** Delta: names in removed_resources. */
  removed: number;
  bytes: number;
}

export interface AckInfo {
  version: string;
  nonce: string;
  /** The store revision of the ACKed response. */
  revision: number;
  at: string;
}

export interface NackInfo {
  /** The rejected version. */
  version: string;
  nonce: string;
  revision: number;
  at: string;
  code: number;
  message: string;
}

export interface TypeStatus {
  typeUrl: string;
  subscription: { wildcard: boolean; names: number; sample: string[] };
  lastSent?: SentInfo;
  lastAcked?: AckInfo;
  syncedRevision?: number;
  lastNack?: NackInfo;
  /** Nonce of a response not yet ACKed or NACKed. */
  pendingNonce?: string;
  /** Names kept although gone from the snapshot, until the client no longer needs them. */
  retained: string[];
  responses: number;
  nacks: number;
  staleRequests: number;
  bytesSent: number;
}

export interface NodeStatus {
  stream: string;
  nodeId: string;
  group: string;
  protocol: "sotw" | "delta";
  connectedAt: string;
  peer?: string;
  userAgent?: string;
  /** The store revision of the group's snapshot this stream works from. */
  snapshotRevision?: number;
  types: Record<string, TypeStatus>;
}

export interface NackRecord extends NackInfo {
  nodeId: string;
  group: string;
  stream: string;
  protocol: "sotw" | "delta";
  typeUrl: string;
}

export interface XdsStatus {
  nodes: NodeStatus[];
  /** The latest NACKs of all streams, newest first (kept after a node disconnects). */
  recentNacks: NackRecord[];
}

export type AdminQuery = URLSearchParams | Record<string, string | string[] | undefined> | undefined;

export interface AdminResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

function param(query: AdminQuery, name: string): string | undefined {
  if (!query) return undefined;
  if (query instanceof URLSearchParams) return query.get(name) ?? undefined;
  const value = query[name];
  return Array.isArray(value) ? value[0] : value;
}

const MAX_PARAM = 256;

function badParam(name: string, message: string): AdminResponse {
  return { status: 400, body: { status: "error", message: "invalid query", errors: [{ field: name, message }] } };
}

/** GET /xds/nodes: connected nodes, optionally filtered by `group` and `node` (node id). */
export function xdsNodesResponse(server: { status(): XdsStatus }, query?: AdminQuery): AdminResponse {
  const group = param(query, "group");
  const node = param(query, "node");
  if (group !== undefined && (group.length === 0 || group.length > MAX_PARAM)) return badParam("group", `must be 1-${MAX_PARAM} characters`);
  if (node !== undefined && node.length > MAX_PARAM) return badParam("node", `must be at most ${MAX_PARAM} characters`);
  const status = server.status();
  const nodes = status.nodes.filter((n) => (group === undefined || n.group === group) && (node === undefined || n.nodeId === node));
  const recentNacks = status.recentNacks.filter((n) => (group === undefined || n.group === group) && (node === undefined || n.nodeId === node));
  return { status: 200, body: { nodes, recentNacks } };
}

/** GET /config_dump?group=<g>: the group's current resources as Envoy's ConfigDump JSON. */
export function configDumpResponse(cache: SnapshotCache, query?: AdminQuery): AdminResponse {
  const group = param(query, "group") ?? DEFAULT_GROUP;
  if (group.length === 0 || group.length > MAX_PARAM) return badParam("group", `must be 1-${MAX_PARAM} characters`);
  const current = cache.getSnapshot(group);
  if (!current) {
    return { status: 404, body: { status: "error", message: `no xDS snapshot for gateway group "${group}"` } };
  }
  const { snapshot, revision, setAt } = current;
  const lastUpdated = setAt.toISOString();
  const list = (typeUrl: (typeof PUSH_ORDER)[number]) =>
    [...snapshot.resources[typeUrl].values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const any = (entry: SnapshotResource): JsonObject => envoyJsonOf(entry);
  const prefix = "type.googleapis.com/envoy.admin.v3.";
  const configs: JsonObject[] = [
    {
      "@type": `${prefix}ClustersConfigDump`,
      version_info: snapshot.versions[XDS_TYPE_URLS.cluster],
      dynamic_active_clusters: list(XDS_TYPE_URLS.cluster).map((e) => ({ version_info: e.version, cluster: any(e), last_updated: lastUpdated })),
    },
    {
      "@type": `${prefix}EndpointsConfigDump`,
      dynamic_endpoint_configs: list(XDS_TYPE_URLS.endpoint).map((e) => ({ version_info: e.version, endpoint_config: any(e), last_updated: lastUpdated })),
    },
    {
      "@type": `${prefix}ListenersConfigDump`,
      version_info: snapshot.versions[XDS_TYPE_URLS.listener],
      dynamic_listeners: list(XDS_TYPE_URLS.listener).map((e) => ({
        name: e.name,
        active_state: { version_info: e.version, listener: any(e), last_updated: lastUpdated },
      })),
    },
    {
      "@type": `${prefix}RoutesConfigDump`,
      dynamic_route_configs: list(XDS_TYPE_URLS.route).map((e) => ({ version_info: e.version, route_config: any(e), last_updated: lastUpdated })),
    },
  ];
  return {
    status: 200,
    body: { configs },
    headers: { "X-Apigw-Xds-Group": group, "X-Apigw-Revision": String(revision) },
  };
}

/** Both handlers, keyed by the admin path they answer. */
export function xdsAdminHandlers(deps: { server: { status(): XdsStatus }; cache: SnapshotCache }) {
  return {
    "/xds/nodes": (query?: AdminQuery) => xdsNodesResponse(deps.server, query),
    "/config_dump": (query?: AdminQuery) => configDumpResponse(deps.cache, query),
  } as const;
}



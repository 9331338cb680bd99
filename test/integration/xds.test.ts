import { expect } from "chai";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { pino } from "pino";
import { Registry } from "prom-client";
import { envoyMessageSchema, loadEnvoyRegistry } from "../../packages/control-plane/src/envoy/schema/registry";
import {
  buildSnapshot,
  configDumpResponse,
  consistent,
  createXdsMetrics,
  createXdsServer,
  emptySnapshot,
  groupOfNode,
  shortHash,
  SnapshotCache,
  SnapshotError,
  xdsAdminHandlers,
  xdsNodesResponse,
  XDS_TYPE_URLS,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
  type Snapshot,
  type XdsServer,
} from "../../packages/control-plane/src/xds";
import {
  connectDelta,
  connectSotw,
  decodeDelta,
  decodeSotw,
  type DeltaClient,
  type SotwClient,
  type TestNode,
} from "../support/xdsClient";

const T = XDS_TYPE_URLS;
const HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

// ---------------------------------------------------------------------------------------------
// Hand-written Envoy resources

function staticCluster(name: string, port = 8081, extra: Record<string, unknown> = {}) {
  return {
    name,
    type: "STATIC",
    connect_timeout: "1s",
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
    },
    ...extra,
  };
}

function edsCluster(name: string) {
  return { name, type: "EDS", connect_timeout: "2s", eds_cluster_config: { eds_config: { ads: {}, resource_api_version: "V3" } } };
}

function endpoints(name: string, port = 9000) {
  return {
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "10.0.0.1", port_value: port } } } }] }],
  };
}

function listener(name: string, routeName: string, port = 8080) {
  return {
    name,
    address: { socket_address: { address: "0.0.0.0", port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": HCM,
              stat_prefix: "ingress_http",
              rds: { route_config_name: routeName, config_source: { ads: {}, resource_api_version: "V3" } },
              http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": ROUTER } }],
            },
          },
        ],
      },
    ],
  };
}

/** A route configuration with one prefix route per cluster (`/<cluster>`). */
function routes(name: string, clusters: string[], domains = ["*"]) {
  return {
    name,
    virtual_hosts: [{ name: "main", domains, routes: clusters.map((c) => ({ match: { prefix: `/${c}` }, route: { cluster: c } })) }],
  };
}

interface Resources {
  clusters?: Record<string, unknown>[];
  endpoints?: Record<string, unknown>[];
  listeners?: Record<string, unknown>[];
  routes?: Record<string, unknown>[];
}

function snapshotOf(r: Resources): Snapshot {
  const items = (list: Record<string, unknown>[] | undefined, typeUrl: string, key = "name") =>
    (list ?? []).map((resource) => ({ name: String(resource[key]), typeUrl, resource }));
  return buildSnapshot({
    clusters: items(r.clusters, T.cluster),
    endpoints: items(r.endpoints, T.endpoint, "cluster_name"),
    listeners: items(r.listeners, T.listener),
    routes: items(r.routes, T.route),
  });
}

/** The standard configuration: a STATIC cluster, an EDS cluster with endpoints, a listener, its routes. */
function baseResources(): Resources {
  return {
    clusters: [staticCluster("static_a"), edsCluster("eds_b")],
    endpoints: [endpoints("eds_b")],
    listeners: [listener("http_8080", "main_routes")],
    routes: [routes("main_routes", ["static_a", "eds_b"])],
  };
}

const kind = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
const names = (list: { name: string }[]) => list.map((r) => r.name).sort();

// ---------------------------------------------------------------------------------------------

describe("xds", function () {
  let cache: SnapshotCache;
  let server: XdsServer;
  let registry: Registry;
  let address: string;
  const open: { close(): void }[] = [];

  beforeEach(async () => {
    registry = new Registry();
    cache = new SnapshotCache();
    server = await createXdsServer({
      cache,
      logger: pino({ level: process.env.XDS_TEST_LOG ?? "silent" }),
      metrics: createXdsMetrics(registry),
      port: 0,
      host: "127.0.0.1",
      edsWarmingTimeoutMs: 5000,
    });
    address = `127.0.0.1:${server.port}`;
  });

  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await server.close();
  });

  function sotw(node: TestNode = { id: "envoy-1" }): SotwClient {
    const c = connectSotw(address, node);
    open.push(c);
    return c;
  }

  function delta(node: TestNode = { id: "envoy-1" }): DeltaClient {
    const c = connectDelta(address, node);
    open.push(c);
    return c;
  }

  /** Collects responses until none arrives for `quietMs`, ACKing each one. */
  async function drain<R extends DiscoveryResponse | DeltaDiscoveryResponse>(
    client: { next(ms?: number): Promise<R>; ack(r: R): void },
    quietMs = 200,
  ): Promise<R[]> {
    const out: R[] = [];
    for (;;) {
      const r = await client.next(quietMs).catch(() => undefined);
      if (!r) return out;
      out.push(r);
      client.ack(r);
    }
  }

  /** Envoy's first requests, all at once: CDS and LDS wildcard, EDS and RDS by name. */
  async function connectAll(client: SotwClient, eds = ["eds_b"], rds = ["main_routes"]): Promise<DiscoveryResponse[]> {
    client.request(T.cluster);
    client.request(T.endpoint, eds);
    client.request(T.listener);
    client.request(T.route, rds);
    return drain(client);
  }

  async function connectAllDelta(client: DeltaClient, eds = ["eds_b"], rds = ["main_routes"]): Promise<DeltaDiscoveryResponse[]> {
    client.subscribe(T.cluster);
    client.subscribe(T.endpoint, eds);
    client.subscribe(T.listener);
    client.subscribe(T.route, rds);
    return drain(client);
  }

  function nackCount(): number {
    const metric = registry.getSingleMetric("apigw_xds_nacks_total") as unknown as { hashMap: Record<string, { value: number }> };
    return Object.values(metric.hashMap).reduce((n, v) => n + v.value, 0);
  }

  // -------------------------------------------------------------------------------------------
  describe("snapshot", () => {
    it("encodes each resource once, with a version that is the hash of its deterministic bytes", () => {
      const a = snapshotOf(baseResources());
      const reordered = baseResources();
      reordered.clusters![0] = { connect_timeout: "1s", type: "STATIC", load_assignment: staticCluster("static_a").load_assignment, name: "static_a" };
      const b = snapshotOf(reordered);
      const entry = a.resources[T.cluster].get("static_a")!;
      expect(entry.version).to.equal(shortHash(entry.value)).and.to.match(/^[0-9a-f]{16}$/);
      expect(b.resources[T.cluster].get("static_a")!.version).to.equal(entry.version);
      expect(b.versions).to.deep.equal(a.versions);
      const changed = snapshotOf({ ...baseResources(), clusters: [staticCluster("static_a", 8082), edsCluster("eds_b")] });
      expect(changed.resources[T.cluster].get("static_a")!.version).to.not.equal(entry.version);
      expect(changed.versions[T.cluster]).to.not.equal(a.versions[T.cluster]);
      expect(changed.versions[T.listener]).to.equal(a.versions[T.listener]);
    });

    it("throws one SnapshotError that lists every issue of every resource", () => {
      let error: unknown;
      try {
        buildSnapshot({
          clusters: [
            { name: "bad", typeUrl: T.cluster, resource: { ...staticCluster("bad"), connect_timout: "1s" } },
            { name: "dup", typeUrl: T.cluster, resource: staticCluster("dup") },
            { name: "dup", typeUrl: T.cluster, resource: staticCluster("dup") },
            { name: "other", typeUrl: T.cluster, resource: staticCluster("mismatch") },
          ],
          listeners: [{ name: "l", typeUrl: T.listener, resource: { ...listener("l", "r"), filter_chains: [{ filters: [{ name: "x", typed_config: { "@type": HCM, stat_prefix: "", http_filters: [] } }] }] } }],
          routes: [{ name: "r", typeUrl: T.cluster, resource: routes("r", []) }],
        });
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(SnapshotError);
      const issues = (error as SnapshotError).issues;
      const where = issues.map((i) => `${kind(i.typeUrl)}:${i.name}:${i.path}`);
      expect(where).to.include("Cluster:bad:connect_timout");
      expect(issues.find((i) => i.name === "bad")!.message).to.match(/connect_timeout/); // "did you mean"
      expect(issues.some((i) => i.name === "dup" && /duplicate/.test(i.message))).to.equal(true);
      expect(issues.some((i) => i.name === "other" && i.path === "name")).to.equal(true);
      expect(issues.some((i) => i.name === "l" && /stat_prefix/.test(i.path))).to.equal(true);
      expect(issues.some((i) => i.name === "r" && /must be/.test(i.message))).to.equal(true);
      expect((error as Error).message).to.match(/issues/);
    });

    it("reuses unchanged entries of a previous snapshot", () => {
      const first = snapshotOf(baseResources());
      const input = baseResources();
      const second = buildSnapshot(
        {
          clusters: input.clusters!.map((resource) => ({ name: String(resource.name), typeUrl: T.cluster, resource })),
          routes: [{ name: "main_routes", typeUrl: T.route, resource: routes("main_routes", ["static_a"]) }],
        },
        { previous: first },
      );
      expect(second.resources[T.cluster].get("static_a")).to.equal(first.resources[T.cluster].get("static_a"));
      expect(second.resources[T.route].get("main_routes")).to.not.equal(first.resources[T.route].get("main_routes"));
      expect(second.resources[T.listener].size).to.equal(0);
    });

    it("consistent() checks EDS names, RDS names and route targets", () => {
      expect(consistent(snapshotOf(baseResources()))).to.deep.equal({ ok: true, issues: [] });
      const broken = consistent(
        snapshotOf({
          clusters: [edsCluster("eds_b"), staticCluster("static_a")],
          endpoints: [endpoints("orphan")],
          listeners: [listener("http_8080", "missing_routes")],
          routes: [routes("unused", ["static_a", "ghost"])],
        }),
      );
      expect(broken.ok).to.equal(false);
      expect(broken.issues).to.have.members([
        'EDS cluster "eds_b" has no ClusterLoadAssignment "eds_b"',
        'ClusterLoadAssignment "orphan" is not used by any EDS cluster',
        'listener "http_8080" references RouteConfiguration "missing_routes", which does not exist',
        'RouteConfiguration "unused" is not referenced by any listener',
        'RouteConfiguration "unused" sends traffic to cluster "ghost", which does not exist',
      ]);
    });

    it("maps a node to its gateway group by node.cluster, else default", () => {
      expect(groupOfNode({ cluster: "gw-a" })).to.equal("gw-a");
      expect(groupOfNode({ cluster: "" })).to.equal("default");
      expect(groupOfNode(undefined)).to.equal("default");
    });
  });

  describe("cache", () => {
    it("asks the provider once for a new group and notifies watchers of setSnapshot", async () => {
      let calls = 0;
      const c = new SnapshotCache({
        provider: async () => {
          calls++;
          return { snapshot: snapshotOf(baseResources()), revision: 7 };
        },
      });
      const [a, b] = await Promise.all([c.ensureSnapshot("g"), c.ensureSnapshot("g")]);
      expect(calls).to.equal(1);
      expect(a).to.equal(b);
      expect(a!.revision).to.equal(7);
      const seen: number[] = [];
      const stop = c.watch("g", (v) => seen.push(v.revision));
      c.setSnapshot("g", emptySnapshot(), 8);
      stop();
      c.setSnapshot("g", emptySnapshot(), 9);
      expect(seen).to.deep.equal([8]);
      expect(c.getSnapshot("g")!.revision).to.equal(9);
      expect(await new SnapshotCache().ensureSnapshot("g")).to.equal(undefined);
    });

    it("keeps a snapshot set while the provider ran when it is newer", async () => {
      let release!: () => void;
      const c = new SnapshotCache({
        provider: () => new Promise((resolve) => (release = () => resolve({ snapshot: emptySnapshot(), revision: 3 }))),
      });
      const pending = c.ensureSnapshot("g");
      const newer = c.setSnapshot("g", snapshotOf(baseResources()), 5);
      release();
      expect(await pending).to.equal(newer);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe("state of the world", () => {
    it("answers the first connect with clusters, endpoints, listeners, then routes, each resource valid", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = sotw();
      const responses = await connectAll(client);
      expect(responses.map((r) => kind(r.typeUrl))).to.deep.equal(["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]);
      expect(names(decodeSotw(responses[0]!))).to.deep.equal(["eds_b", "static_a"]);
      expect(names(decodeSotw(responses[1]!))).to.deep.equal(["eds_b"]);
      expect(names(decodeSotw(responses[2]!))).to.deep.equal(["http_8080"]);
      expect(decodeSotw(responses[3]!)[0]!.json).to.deep.include({ name: "main_routes" });
      for (const r of responses) {
        expect(r.versionInfo).to.match(/^[0-9a-f]{16}$/);
        expect(r.nonce).to.not.equal("");
        expect(r.controlPlane?.identifier).to.equal("apigw-control-plane");
      }
      expect(new Set(responses.map((r) => r.nonce)).size).to.equal(4);
      expect(client.received.length).to.equal(4); // each checked against the registry on receipt
    });

    it("sends nothing more after the ACKs, and nothing for an unchanged snapshot", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = sotw();
      await connectAll(client);
      cache.setSnapshot("default", snapshotOf(baseResources()), 2);
      await client.expectNone(300);
      const node = server.status().nodes[0]!;
      for (const t of ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]) {
        expect(node.types[t]!.responses, t).to.equal(1);
        expect(node.types[t]!.lastAcked!.version).to.equal(node.types[t]!.lastSent!.version);
        expect(node.types[t]!.syncedRevision, t).to.equal(2);
      }
      expect(server.syncedRevision("default")).to.equal(2);
    });

    it("on a NACK keeps the last good version, does not resend, records and counts it, and recovers on a new version", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = sotw();
      const first = await connectAll(client);
      const goodVersion = first[0]!.versionInfo;
      cache.setSnapshot("default", snapshotOf({ ...baseResources(), clusters: [staticCluster("static_a", 9999), edsCluster("eds_b")] }), 2);
      const rejected = await client.next();
      expect(kind(rejected.typeUrl)).to.equal("Cluster");
      client.nack(rejected, "cluster static_a: port refused by the test");
      await client.expectNone(300);

      const cluster = server.status().nodes[0]!.types.Cluster!;
      expect(cluster.lastNack).to.include({ version: rejected.versionInfo, nonce: rejected.nonce, message: "cluster static_a: port refused by the test", revision: 2, code: 3 });
      expect(cluster.lastAcked!.version).to.equal(goodVersion);
      expect(cluster.syncedRevision).to.equal(1);
      expect(server.syncedRevision("default")).to.equal(1);
      expect(nackCount()).to.equal(1);
      expect(server.status().recentNacks[0]).to.include({ nodeId: "envoy-1", group: "default", typeUrl: T.cluster, protocol: "sotw" });

      cache.setSnapshot("default", snapshotOf({ ...baseResources(), clusters: [staticCluster("static_a", 8090), edsCluster("eds_b")] }), 3);
      const fixed = await client.next();
      expect(kind(fixed.typeUrl)).to.equal("Cluster");
      expect(fixed.versionInfo).to.not.equal(rejected.versionInfo);
      client.ack(fixed);
      await client.expectNone(200);
      const after = server.status().nodes[0]!.types.Cluster!;
      expect(after.lastAcked!.version).to.equal(fixed.versionInfo);
      expect(after.lastAcked!.revision).to.equal(3);
      expect(server.syncedRevision("default")).to.equal(3);
    });

    it("ignores a request with a stale nonce", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = sotw();
      const first = await connectAll(client);
      cache.setSnapshot("default", snapshotOf({ ...baseResources(), clusters: [staticCluster("static_a", 8082), edsCluster("eds_b")] }), 2);
      const update = await client.next();
      // A NACK carrying the nonce of the earlier response (not the latest): ignored.
      client.nack(first[0]!, "stale");
      await client.expectNone(300);
      let cluster = server.status().nodes[0]!.types.Cluster!;
      expect(cluster.lastNack).to.equal(undefined);
      expect(cluster.staleRequests).to.equal(1);
      expect(cluster.pendingNonce).to.equal(update.nonce);
      client.ack(update);
      await client.expectNone(200);
      cluster = server.status().nodes[0]!.types.Cluster!;
      expect(cluster.lastAcked!.version).to.equal(update.versionInfo);
      expect(cluster.pendingNonce).to.equal(undefined);
    });

    it("pushes added, changed and removed resources: full sets for clusters and listeners, requested names for routes", async () => {
      const base = baseResources();
      cache.setSnapshot("default", snapshotOf({ ...base, routes: [...base.routes!, routes("other_routes", ["static_a"], ["other.example.com"])] }), 1);
      const client = sotw();
      const first = await connectAll(client);
      expect(names(decodeSotw(first[3]!))).to.deep.equal(["main_routes"]); // other_routes not requested

      // added cluster
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [...base.clusters!, staticCluster("static_c", 8083)] }), 2);
      const added = await client.next();
      client.ack(added);
      expect(kind(added.typeUrl)).to.equal("Cluster");
      expect(names(decodeSotw(added))).to.deep.equal(["eds_b", "static_a", "static_c"]);
      await client.expectNone(200);

      // changed route configuration (only the requested one is sent)
      const changedRoutes = routes("main_routes", ["static_a", "eds_b", "static_c"]);
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [...base.clusters!, staticCluster("static_c", 8083)], routes: [changedRoutes, routes("other_routes", ["static_c"], ["x.example.com"])] }), 3);
      const changed = await client.next();
      client.ack(changed);
      expect(kind(changed.typeUrl)).to.equal("RouteConfiguration");
      const decoded = decodeSotw(changed);
      expect(names(decoded)).to.deep.equal(["main_routes"]);
      expect(JSON.stringify(decoded[0]!.json)).to.include("static_c");

      // removed listener: the full listener set without it
      cache.setSnapshot("default", snapshotOf({ ...base, listeners: [listener("http_8080", "main_routes"), listener("http_9090", "main_routes", 9090)] }), 4);
      const grown = await drain(client);
      expect(grown.map((r) => kind(r.typeUrl))).to.include("Listener");
      cache.setSnapshot("default", snapshotOf(base), 5);
      const shrunk = (await drain(client)).find((r) => kind(r.typeUrl) === "Listener")!;
      expect(names(decodeSotw(shrunk))).to.deep.equal(["http_8080"]);
    });

    it("removes a cluster only after the client ACKed routes that no longer refer to it", async () => {
      const base = {
        clusters: [staticCluster("static_a"), staticCluster("static_b", 8082)],
        listeners: [listener("http_8080", "main_routes")],
        routes: [routes("main_routes", ["static_a", "static_b"])],
      };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = sotw();
      await connectAll(client, []);
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a")], routes: [routes("main_routes", ["static_a"])] }), 2);

      const routeUpdate = await client.next();
      expect(kind(routeUpdate.typeUrl)).to.equal("RouteConfiguration"); // not the cluster removal
      expect(server.status().nodes[0]!.types.Cluster!.retained).to.deep.equal(["static_b"]);
      // Before the ACK, the cluster stays.
      await client.expectNone(200);
      client.ack(routeUpdate);
      const clusterUpdate = await client.next();
      expect(kind(clusterUpdate.typeUrl)).to.equal("Cluster");
      expect(names(decodeSotw(clusterUpdate))).to.deep.equal(["static_a"]);
      client.ack(clusterUpdate);
      await client.expectNone(200);
      expect(server.status().nodes[0]!.types.Cluster!.retained).to.deep.equal([]);
    });

    it("keeps the cluster while the route update is NACKed", async () => {
      const base = {
        clusters: [staticCluster("static_a"), staticCluster("static_b", 8082)],
        listeners: [listener("http_8080", "main_routes")],
        routes: [routes("main_routes", ["static_a", "static_b"])],
      };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = sotw();
      await connectAll(client, []);
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a")], routes: [routes("main_routes", ["static_a"])] }), 2);
      const routeUpdate = await client.next();
      client.nack(routeUpdate, "route rejected");
      await client.expectNone(300); // static_b is still referenced by the routes the client kept
      expect(server.status().nodes[0]!.types.Cluster!.retained).to.deep.equal(["static_b"]);
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a")], routes: [routes("main_routes", ["static_a"], ["a.example.com"])] }), 3);
      const retry = await client.next();
      expect(kind(retry.typeUrl)).to.equal("RouteConfiguration");
      client.ack(retry);
      const removal = await client.next();
      expect(kind(removal.typeUrl)).to.equal("Cluster");
      expect(names(decodeSotw(removal))).to.deep.equal(["static_a"]);
    });

    it("holds back each type until the type before it in the order was ACKed", async () => {
      const base = { clusters: [staticCluster("static_a")], listeners: [listener("http_8080", "main_routes")], routes: [routes("main_routes", ["static_a"])] };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = sotw();
      client.request(T.cluster);
      client.request(T.listener);
      client.request(T.route, ["main_routes"]);
      const clusters = await client.next();
      expect(kind(clusters.typeUrl)).to.equal("Cluster");
      await client.expectNone(200); // listeners wait for the clusters' ACK
      client.ack(clusters);
      const lds = await client.next();
      expect(kind(lds.typeUrl)).to.equal("Listener");
      client.ack(lds);
      const first = await client.next();
      expect(kind(first.typeUrl)).to.equal("RouteConfiguration");
      client.ack(first);

      // A change that adds a cluster and a route to it: the cluster first, the route after its ACK.
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a"), staticCluster("static_c", 8083)], routes: [routes("main_routes", ["static_a", "static_c"])] }), 2);
      const added = await client.next();
      expect(kind(added.typeUrl)).to.equal("Cluster");
      expect(names(decodeSotw(added))).to.deep.equal(["static_a", "static_c"]);
      await client.expectNone(200);
      client.ack(added);
      const rts = await client.next();
      expect(kind(rts.typeUrl)).to.equal("RouteConfiguration");
      expect(JSON.stringify(decodeSotw(rts)[0]!.json)).to.include("static_c");
    });

    it("sends a new EDS cluster and its endpoints before the routes that use it", async () => {
      const base = { clusters: [staticCluster("static_a")], listeners: [listener("http_8080", "main_routes")], routes: [routes("main_routes", ["static_a"])] };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = sotw();
      client.request(T.cluster);
      client.request(T.listener);
      client.request(T.route, ["main_routes"]);
      expect((await drain(client)).map((r) => kind(r.typeUrl))).to.deep.equal(["Cluster", "Listener", "RouteConfiguration"]);

      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a"), edsCluster("eds_new")], endpoints: [endpoints("eds_new")], routes: [routes("main_routes", ["static_a", "eds_new"])] }), 2);
      const clusters = await client.next();
      expect(kind(clusters.typeUrl)).to.equal("Cluster");
      client.ack(clusters);
      await client.expectNone(300); // the routes wait for the client to ask for eds_new's endpoints
      client.request(T.endpoint, ["eds_new"]);
      const eps = await client.next();
      expect(kind(eps.typeUrl)).to.equal("ClusterLoadAssignment");
      expect(names(decodeSotw(eps))).to.deep.equal(["eds_new"]);
      client.ack(eps);
      const rts = await client.next();
      expect(kind(rts.typeUrl)).to.equal("RouteConfiguration");
      expect(JSON.stringify(decodeSotw(rts)[0]!.json)).to.include("eds_new");
    });

    it("serves named subscriptions and stops sending what the client no longer requests", async () => {
      const base = baseResources();
      const two = { ...base, routes: [routes("main_routes", ["static_a"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] };
      cache.setSnapshot("default", snapshotOf(two), 1);
      const client = sotw();
      client.request(T.route, ["main_routes"]);
      const one = await client.next();
      expect(names(decodeSotw(one))).to.deep.equal(["main_routes"]);
      client.ack(one, ["main_routes", "admin_routes"]);
      const both = await client.next();
      expect(names(decodeSotw(both))).to.deep.equal(["admin_routes", "main_routes"]);
      client.ack(both, ["admin_routes"]);
      const onlyAdmin = await client.next();
      expect(names(decodeSotw(onlyAdmin))).to.deep.equal(["admin_routes"]);
      client.ack(onlyAdmin);
      // A change to a route configuration the client no longer requests is not sent.
      cache.setSnapshot("default", snapshotOf({ ...two, routes: [routes("main_routes", ["eds_b"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] }), 2);
      await client.expectNone(300);
      // Asking for a name that does not exist sends nothing new either.
      client.ack(onlyAdmin, ["admin_routes", "nope"]);
      await client.expectNone(200);
      expect(server.status().nodes[0]!.types.RouteConfiguration!.subscription).to.deep.equal({ wildcard: false, names: 2, sample: ["admin_routes", "nope"] });
    });

    it("does not resend to a reconnecting client that already has the version", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const first = sotw();
      const responses = await connectAll(first);
      first.close();
      const again = sotw();
      again.request(T.cluster, [], { versionInfo: responses[0]!.versionInfo });
      await again.expectNone(300);
      const stale = sotw({ id: "envoy-2" });
      stale.request(T.cluster, [], { versionInfo: "0000000000000000" });
      expect(kind((await stale.next()).typeUrl)).to.equal("Cluster");
    });

    it("refuses a stream whose first request has no node", async () => {
      const client = sotw();
      client.send({ typeUrl: T.cluster, node: null as never });
      const error = (await client.closedWith()) as Error & { code?: number };
      expect(error.code).to.equal(3); // INVALID_ARGUMENT
      expect(error.message).to.match(/must carry node/);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe("delta", () => {
    it("answers the first connect in order, each resource with its own version", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = delta();
      const responses = await connectAllDelta(client);
      expect(responses.map((r) => kind(r.typeUrl))).to.deep.equal(["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]);
      const clusters = decodeDelta(responses[0]!);
      expect(names(clusters)).to.deep.equal(["eds_b", "static_a"]);
      const snapshot = cache.getSnapshot("default")!.snapshot;
      for (const r of clusters) expect(r.version).to.equal(snapshot.resources[T.cluster].get(r.name)!.version);
      for (const r of responses) {
        expect(r.systemVersionInfo).to.match(/^[0-9a-f]{16}$/);
        expect(r.removedResources).to.deep.equal([]);
      }
      await client.expectNone(200);
    });

    it("sends only the resources that changed, and removed_resources for deleted ones", async () => {
      const base = { ...baseResources(), listeners: [listener("http_8080", "main_routes"), listener("http_9090", "main_routes", 9090)] };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = delta();
      await connectAllDelta(client);

      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a", 8099), edsCluster("eds_b")] }), 2);
      const changed = await client.next();
      client.ack(changed);
      expect(kind(changed.typeUrl)).to.equal("Cluster");
      expect(names(decodeDelta(changed))).to.deep.equal(["static_a"]);
      await client.expectNone(200);

      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a", 8099), edsCluster("eds_b")], listeners: [listener("http_8080", "main_routes")] }), 3);
      const removed = await client.next();
      client.ack(removed);
      expect(kind(removed.typeUrl)).to.equal("Listener");
      expect(removed.resources).to.have.length(0);
      expect(removed.removedResources).to.deep.equal(["http_9090"]);
      await client.expectNone(200);
      expect(server.status().nodes[0]!.types.Listener!.lastAcked!.revision).to.equal(3);
    });

    it("sends a reconnecting client with initial_resource_versions only what changed", async () => {
      cache.setSnapshot("default", snapshotOf({ ...baseResources(), clusters: [...baseResources().clusters!, staticCluster("static_gone", 8084)] }), 1);
      const first = delta();
      await connectAllDelta(first);
      const have = (t: string) => Object.fromEntries(first.versions.get(t) ?? []);
      const clusterVersions = have(T.cluster);
      expect(Object.keys(clusterVersions).sort()).to.deep.equal(["eds_b", "static_a", "static_gone"]);
      first.close();

      // While disconnected: static_a changes, static_gone goes, static_new comes.
      const next = baseResources();
      next.clusters = [staticCluster("static_a", 8099), edsCluster("eds_b"), staticCluster("static_new", 8085)];
      cache.setSnapshot("default", snapshotOf(next), 2);

      const again = delta({ id: "envoy-1" });
      again.subscribe(T.cluster, [], clusterVersions);
      again.subscribe(T.endpoint, ["eds_b"], have(T.endpoint));
      again.subscribe(T.listener, [], have(T.listener));
      again.subscribe(T.route, ["main_routes"], have(T.route));
      const responses = await drain(again);
      const cds = responses.find((r) => kind(r.typeUrl) === "Cluster")!;
      expect(names(decodeDelta(cds))).to.deep.equal(["static_a", "static_new"]);
      expect(cds.removedResources).to.deep.equal(["static_gone"]);
      // Listeners (wildcard): one empty answer so that Envoy finishes initialising; endpoints and routes: nothing.
      const lds = responses.find((r) => kind(r.typeUrl) === "Listener")!;
      expect(lds.resources).to.have.length(0);
      expect(lds.removedResources).to.have.length(0);
      expect(responses.map((r) => kind(r.typeUrl))).to.deep.equal(["Cluster", "Listener"]);
    });

    it("on a NACK keeps the last good version, does not resend, and recovers on a new version", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 1);
      const client = delta();
      await connectAllDelta(client);
      cache.setSnapshot("default", snapshotOf({ ...baseResources(), routes: [routes("main_routes", ["static_a"])] }), 2);
      const rejected = await client.next();
      expect(kind(rejected.typeUrl)).to.equal("RouteConfiguration");
      client.nack(rejected, "route refused");
      await client.expectNone(300);
      const status = server.status().nodes[0]!;
      expect(status.protocol).to.equal("delta");
      expect(status.types.RouteConfiguration!.lastNack).to.include({ version: rejected.systemVersionInfo, message: "route refused", revision: 2 });
      expect(status.types.RouteConfiguration!.lastAcked!.revision).to.equal(1);
      expect(nackCount()).to.equal(1);

      cache.setSnapshot("default", snapshotOf({ ...baseResources(), routes: [routes("main_routes", ["eds_b"])] }), 3);
      const fixed = await client.next();
      expect(names(decodeDelta(fixed))).to.deep.equal(["main_routes"]);
      expect(fixed.resources[0]!.version).to.not.equal(rejected.resources[0]!.version);
      client.ack(fixed);
      await client.expectNone(200);
      expect(server.status().nodes[0]!.types.RouteConfiguration!.lastAcked!.revision).to.equal(3);
    });

    it("applies the subscription of a request with a stale nonce but not its ACK or NACK", async () => {
      const base = baseResources();
      const two = { ...base, routes: [routes("main_routes", ["static_a"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] };
      cache.setSnapshot("default", snapshotOf(two), 1);
      const client = delta();
      client.subscribe(T.route, ["main_routes"]);
      const first = await client.next();
      client.ack(first);
      cache.setSnapshot("default", snapshotOf({ ...two, routes: [routes("main_routes", ["eds_b"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] }), 2);
      const update = await client.next();
      // Subscribe with the nonce of the earlier response, and an error: the subscription counts, the NACK does not.
      client.subscribe(T.route, ["admin_routes"], undefined, { responseNonce: first.nonce, errorDetail: { code: 3, message: "stale" } });
      await client.expectNone(200); // the update is still awaiting its ACK
      let rds = server.status().nodes[0]!.types.RouteConfiguration!;
      expect(rds.lastNack).to.equal(undefined);
      expect(rds.staleRequests).to.equal(1);
      expect(rds.subscription.sample).to.deep.equal(["admin_routes", "main_routes"]);
      client.ack(update);
      const added = await client.next();
      expect(names(decodeDelta(added))).to.deep.equal(["admin_routes"]);
      client.ack(added);
      await client.expectNone(200);
      rds = server.status().nodes[0]!.types.RouteConfiguration!;
      expect(rds.lastAcked!.version).to.equal(added.systemVersionInfo);
    });

    it("removes a cluster only after the routes that used it were ACKed", async () => {
      const base = { clusters: [staticCluster("static_a"), staticCluster("static_b", 8082)], listeners: [listener("http_8080", "main_routes")], routes: [routes("main_routes", ["static_a", "static_b"])] };
      cache.setSnapshot("default", snapshotOf(base), 1);
      const client = delta();
      await connectAllDelta(client, []);
      cache.setSnapshot("default", snapshotOf({ ...base, clusters: [staticCluster("static_a")], routes: [routes("main_routes", ["static_a"])] }), 2);
      const routeUpdate = await client.next();
      expect(kind(routeUpdate.typeUrl)).to.equal("RouteConfiguration");
      await client.expectNone(200);
      client.ack(routeUpdate);
      const removal = await client.next();
      expect(kind(removal.typeUrl)).to.equal("Cluster");
      expect(removal.resources).to.have.length(0);
      expect(removal.removedResources).to.deep.equal(["static_b"]);
    });

    it("handles named subscribe and unsubscribe, and tells the client once about a name that does not exist", async () => {
      const base = baseResources();
      const two = { ...base, routes: [routes("main_routes", ["static_a"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] };
      cache.setSnapshot("default", snapshotOf(two), 1);
      const client = delta();
      client.subscribe(T.route, ["main_routes", "missing"]);
      const first = await client.next();
      expect(names(decodeDelta(first))).to.deep.equal(["main_routes"]);
      expect(first.removedResources).to.deep.equal(["missing"]);
      client.ack(first);
      client.subscribe(T.route, ["admin_routes"]);
      const added = await client.next();
      expect(names(decodeDelta(added))).to.deep.equal(["admin_routes"]);
      client.ack(added);
      client.unsubscribe(T.route, ["main_routes"]);
      await client.expectNone(200);
      cache.setSnapshot("default", snapshotOf({ ...two, routes: [routes("main_routes", ["eds_b"]), routes("admin_routes", ["static_a"], ["admin.example.com"])] }), 2);
      await client.expectNone(300); // main_routes changed, but nobody asks for it any more
      cache.setSnapshot("default", snapshotOf({ ...two, routes: [routes("main_routes", ["eds_b"]), routes("admin_routes", ["eds_b"], ["admin.example.com"])] }), 3);
      const changed = await client.next();
      expect(names(decodeDelta(changed))).to.deep.equal(["admin_routes"]);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe("gateways and status", () => {
    it("serves two gateways (node.cluster A and B) their own configuration", async () => {
      cache.setSnapshot("gw-a", snapshotOf(baseResources()), 1);
      cache.setSnapshot("gw-b", snapshotOf({ clusters: [staticCluster("only_b", 7000)], listeners: [listener("http_8080", "b_routes")], routes: [routes("b_routes", ["only_b"])] }), 1);
      const a = sotw({ id: "envoy-a", cluster: "gw-a" });
      const b = delta({ id: "envoy-b", cluster: "gw-b" });
      const ra = await connectAll(a);
      const rb = await connectAllDelta(b, [], ["b_routes"]);
      expect(names(decodeSotw(ra[0]!))).to.deep.equal(["eds_b", "static_a"]);
      expect(names(decodeDelta(rb[0]!))).to.deep.equal(["only_b"]);
      expect(names(decodeDelta(rb.find((r) => kind(r.typeUrl) === "RouteConfiguration")!))).to.deep.equal(["b_routes"]);

      cache.setSnapshot("gw-a", snapshotOf({ ...baseResources(), clusters: [staticCluster("static_a", 8100), edsCluster("eds_b")] }), 2);
      expect(kind((await a.next()).typeUrl)).to.equal("Cluster");
      await b.expectNone(300);

      const nodes = server.status().nodes;
      expect(nodes.map((n) => [n.nodeId, n.group, n.protocol]).sort()).to.deep.equal([
        ["envoy-a", "gw-a", "sotw"],
        ["envoy-b", "gw-b", "delta"],
      ]);
      const filtered = xdsNodesResponse(server, new URLSearchParams("group=gw-b"));
      expect(filtered.status).to.equal(200);
      expect((filtered.body as { nodes: { nodeId: string }[] }).nodes.map((n) => n.nodeId)).to.deep.equal(["envoy-b"]);
    });

    it("asks the snapshot provider for a gateway group seen for the first time", async () => {
      await server.close();
      const requested: string[] = [];
      cache = new SnapshotCache({
        provider: async (group) => {
          requested.push(group);
          return { snapshot: snapshotOf({ clusters: [staticCluster(`for_${group}`)] }), revision: 4 };
        },
      });
      server = await createXdsServer({ cache, logger: pino({ level: "silent" }), port: 0, host: "127.0.0.1" });
      address = `127.0.0.1:${server.port}`;
      const client = sotw({ id: "envoy-new", cluster: "gw-new" });
      client.request(T.cluster);
      const response = await client.next();
      expect(names(decodeSotw(response))).to.deep.equal(["for_gw-new"]);
      expect(requested).to.deep.equal(["gw-new"]);
      client.ack(response);
      await client.expectNone(100);
      expect(server.status().nodes[0]!.types.Cluster!.lastAcked!.revision).to.equal(4);
    });

    it("reports per node and type the versions sent and ACKed with their revisions", async () => {
      cache.setSnapshot("default", snapshotOf(baseResources()), 11);
      const client = sotw({ id: "envoy-status" });
      const responses = await connectAll(client);
      const { status, body } = xdsAdminHandlers({ server, cache })["/xds/nodes"]();
      expect(status).to.equal(200);
      const node = (body as ReturnType<XdsServer["status"]>).nodes[0]!;
      expect(node).to.include({ nodeId: "envoy-status", group: "default", protocol: "sotw", snapshotRevision: 11 });
      expect(Date.parse(node.connectedAt)).to.not.be.NaN;
      expect(Object.keys(node.types)).to.deep.equal(["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]);
      const cds = node.types.Cluster!;
      expect(cds.subscription.wildcard).to.equal(true);
      expect(cds.lastSent).to.include({ version: responses[0]!.versionInfo, nonce: responses[0]!.nonce, revision: 11, resources: 2 });
      expect(cds.lastSent!.bytes).to.be.greaterThan(0);
      expect(cds.lastAcked).to.include({ version: responses[0]!.versionInfo, revision: 11 });
      expect(cds.lastNack).to.equal(undefined);
      expect(xdsNodesResponse(server, { group: "x".repeat(300) }).status).to.equal(400);
    });

    it("GET /config_dump returns the group's resources as Envoy's ConfigDump JSON", () => {
      cache.setSnapshot("gw-a", snapshotOf(baseResources()), 5);
      const dump = configDumpResponse(cache, new URLSearchParams("group=gw-a"));
      expect(dump.status).to.equal(200);
      expect(dump.headers).to.deep.equal({ "X-Apigw-Xds-Group": "gw-a", "X-Apigw-Revision": "5" });
      // Parses strictly as envoy.admin.v3.ConfigDump (unknown fields and bad @types would throw).
      fromJson(envoyMessageSchema("envoy.admin.v3.ConfigDump"), dump.body as JsonValue, { registry: loadEnvoyRegistry() });
      const configs = (dump.body as { configs: Record<string, any>[] }).configs;
      expect(configs.map((c) => c["@type"].split(".").pop())).to.deep.equal(["ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump", "RoutesConfigDump"]);
      expect(configs[0]!.dynamic_active_clusters.map((c: any) => c.cluster.name)).to.deep.equal(["eds_b", "static_a"]);
      expect(configs[0]!.dynamic_active_clusters[0].cluster["@type"]).to.equal(T.cluster);
      expect(configs[2]!.dynamic_listeners[0].active_state.listener.filter_chains[0].filters[0].typed_config["@type"]).to.equal(HCM);
      expect(configs[3]!.dynamic_route_configs[0].route_config.name).to.equal("main_routes");
      expect(configDumpResponse(cache, { group: "nope" }).status).to.equal(404);
      expect(configDumpResponse(cache, {}).status).to.equal(404); // "default" has no snapshot here
    });
  });
});

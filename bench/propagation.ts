/**
 * Propagation benchmark: from the HTTP response of a PUT that changes one API to the moment a
 * connected ADS client receives the new RouteConfiguration, for a state-of-the-world and a delta
 * client at once, over 200 changes, with N APIs loaded (default 1,000 and 10,000). Also the bytes
 * sent to one client for a one-API change, SotW against delta, and where the control plane spends
 * its time per change (pipeline stages, from its own metrics).
 *
 *   BENCH_DATABASE_URL=postgres://… npm run bench:propagation
 *   BENCH_SIZES=1000 BENCH_CHANGES=200 XDS_COALESCE_MS=2 …
 *
 * The two ADS clients run in a process of their own, like an Envoy: they parse each response
 * (the DiscoveryResponse envelope; the resource stays bytes, searched for the change's marker),
 * ACK it at once, and report the time of receipt. Both processes read the same monotonic clock
 * (process.hrtime, CLOCK_MONOTONIC), so the latency is receipt time minus the time the PUT's
 * response was read. (Running the clients in the control plane's process, with the test suite's
 * client that re-validates every resource it receives, measured the client's validation of
 * megabytes on the control plane's event loop rather than propagation.)
 */
import { fork, spawnSync } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import type { Histogram } from "prom-client";
import {
  ADS_DELTA_PATH,
  ADS_SOTW_PATH,
  decodeDeltaDiscoveryResponse,
  decodeDiscoveryResponse,
  encodeDeltaDiscoveryRequest,
  encodeDiscoveryRequest,
  XDS_TYPE_URLS,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../packages/control-plane/src/xds";
import { benchApi, mb, percentile, seedApis, startBenchControlPlane } from "./seed";

const T = XDS_TYPE_URLS;
const ROUTES = "apigw-routes";
const sizes = (process.env.BENCH_SIZES ?? "1000,10000").split(",").map(Number);
const changes = Number(process.env.BENCH_CHANGES ?? 200);
const url = process.env.BENCH_DATABASE_URL;
const now = () => Number(process.hrtime.bigint()) / 1e6;

type Protocol = "sotw" | "delta";
type ToClients = { expect: string } | { stop: true };
type FromClients = { ready: true } | { expecting: string } | { received: string; protocol: Protocol; at: number; bytes: number };

// ---------------------------------------------------------------------------------------------
// The client process: one SotW and one delta stream, Envoy-like (subscribe, parse, ACK).

function clients(address: string): void {
  const send = (m: FromClients) => process.send!(m);
  const pending = new Set<string>();
  const initial = { sotw: false, delta: false };
  // Envoy's HTTP/2 receive windows default to 256 MiB (Http2ProtocolOptions.initial_stream_window_size
  // and initial_connection_window_size); grpc-js's default is 64 KiB, which would make a multi-MiB
  // response wait for a WINDOW_UPDATE round trip every 64 KiB.
  const options: grpc.ClientOptions = { "grpc.max_receive_message_length": -1, "grpc-node.flow_control_window": 256 * 1024 * 1024 };

  const onRoutes = (protocol: Protocol, values: Uint8Array[], at: number) => {
    const buffers = values.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    const bytes = buffers.reduce((n, b) => n + b.length, 0);
    if (!initial[protocol] && buffers.some((b) => b.includes("x-bench"))) {
      initial[protocol] = true;
      if (initial.sotw && initial.delta) send({ ready: true });
    }
    for (const marker of pending) {
      if (buffers.some((b) => b.includes(marker))) send({ received: marker, protocol, at, bytes });
    }
  };

  const sotwClient = new grpc.Client(address, grpc.credentials.createInsecure(), options);
  const sotw = sotwClient.makeBidiStreamRequest<DiscoveryRequest, DiscoveryResponse>(ADS_SOTW_PATH, (r) => encodeDiscoveryRequest(r), (b) => decodeDiscoveryResponse(b));
  const sotwNames: Record<string, string[]> = { [T.cluster]: [], [T.listener]: [], [T.route]: [ROUTES] };
  sotw.on("data", (r: DiscoveryResponse) => {
    const at = now();
    sotw.write({ typeUrl: r.typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: sotwNames[r.typeUrl] ?? [] } as DiscoveryRequest);
    if (r.typeUrl === T.route) onRoutes("sotw", r.resources.map((x) => x.value), at);
  });
  let first = true;
  for (const typeUrl of [T.cluster, T.listener, T.route]) {
    sotw.write({ typeUrl, resourceNames: sotwNames[typeUrl], versionInfo: "", responseNonce: "", ...(first ? { node: { id: "bench-sotw", cluster: "" } } : {}) } as DiscoveryRequest);
    first = false;
  }

  const deltaClient = new grpc.Client(address, grpc.credentials.createInsecure(), options);
  const delta = deltaClient.makeBidiStreamRequest<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
    ADS_DELTA_PATH,
    (r) => encodeDeltaDiscoveryRequest(r),
    (b) => decodeDeltaDiscoveryResponse(b),
  );
  delta.on("data", (r: DeltaDiscoveryResponse) => {
    const at = now();
    delta.write({ typeUrl: r.typeUrl, responseNonce: r.nonce } as DeltaDiscoveryRequest);
    if (r.typeUrl === T.route) onRoutes("delta", r.resources.flatMap((x) => (x.resource ? [x.resource.value] : [])), at);
  });
  first = true;
  for (const typeUrl of [T.cluster, T.listener, T.route]) {
    delta.write({ typeUrl, resourceNamesSubscribe: typeUrl === T.route ? [ROUTES] : [], ...(first ? { node: { id: "bench-delta", cluster: "" } } : {}) } as DeltaDiscoveryRequest);
    first = false;
  }

  process.on("message", (m: ToClients) => {
    if ("stop" in m) {
      sotw.cancel();
      delta.cancel();
      sotwClient.close();
      deltaClient.close();
      process.exit(0);
    }
    pending.clear();
    pending.add(m.expect);
    send({ expecting: m.expect });
  });
}

// ---------------------------------------------------------------------------------------------
// One size: control plane, seed, clients, changes.

async function child(size: number): Promise<void> {
  const controlPlane = await startBenchControlPlane(url, { XDS_COALESCE_MS: process.env.XDS_COALESCE_MS ?? "2" });
  await seedApis(controlPlane.database.knex, size);
  controlPlane.pipeline.requestFull();
  await controlPlane.pipeline.settled();

  const proc = fork(import.meta.filename, ["clients", `127.0.0.1:${controlPlane.xdsPort}`], { execArgv: ["--import", "tsx", "--max-old-space-size=8192"] });
  const waiters: ((m: FromClients) => boolean)[] = [];
  proc.on("message", (m: FromClients) => {
    for (let i = 0; i < waiters.length; i++) {
      if (waiters[i]!(m)) {
        waiters.splice(i, 1);
        return;
      }
    }
  });
  const waitFor = <R extends FromClients>(match: (m: FromClients) => m is R, timeoutMs = 120_000): Promise<R> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the ADS clients did not answer in time")), timeoutMs);
      waiters.push((m) => {
        if (!match(m)) return false;
        clearTimeout(timer);
        resolve(m);
        return true;
      });
    });
  await waitFor((m): m is { ready: true } => "ready" in m);

  const stages = controlPlane.metrics.registry.getSingleMetric("apigw_xds_rebuild_seconds") as Histogram<"stage"> | undefined;
  const stageTotals = async () => {
    const out: Record<string, { sum: number; count: number }> = {};
    for (const v of (await stages?.get())?.values ?? []) {
      const stage = String(v.labels.stage);
      out[stage] ??= { sum: 0, count: 0 };
      if (v.metricName?.endsWith("_sum")) out[stage].sum = v.value;
      if (v.metricName?.endsWith("_count")) out[stage].count = v.value;
    }
    return out;
  };
  const before = await stageTotals();

  const auth = "Basic " + Buffer.from("admin:admin-bench").toString("base64");
  const latency: Record<Protocol, number[]> = { sotw: [], delta: [] };
  const bytes: Record<Protocol, number> = { sotw: 0, delta: 0 };
  for (let i = 0; i < changes; i++) {
    const target = (i * 7919) % size;
    const marker = `r${i + 1}-${target}`;
    const body = benchApi(target, 0);
    (body.spec.policies![0]!.params as any).request.headers[0].value = marker;
    const expecting = waitFor((m): m is { expecting: string } => "expecting" in m && m.expecting === marker);
    proc.send({ expect: marker } satisfies ToClients);
    await expecting;
    const received = (["sotw", "delta"] as const).map((protocol) =>
      waitFor((m): m is Extract<FromClients, { received: string }> => "received" in m && m.received === marker && m.protocol === protocol),
    );
    const response = await fetch(`${controlPlane.managementUrl}/api/management/v0.9/rest-apis/bench-api-${target}`, {
      method: "PUT",
      headers: { Authorization: auth, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const answered = now();
    if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${text}`);
    for (const r of await Promise.all(received)) {
      latency[r.protocol].push(r.at - answered);
      bytes[r.protocol] = r.bytes;
    }
  }
  const after = await stageTotals();
  proc.send({ stop: true } satisfies ToClients);

  const f = (v: number) => `${v.toFixed(1)} ms`;
  const line = (p: Protocol) => {
    const sorted = [...latency[p]].sort((a, b) => a - b);
    return `${p === "sotw" ? "SotW" : "delta"} p50 ${f(percentile(sorted, 50))}, p99 ${f(percentile(sorted, 99))}`;
  };
  const stage = (name: string) => {
    const a = after[name];
    const b = before[name] ?? { sum: 0, count: 0 };
    const count = (a?.count ?? 0) - b.count;
    return count > 0 ? `${name} ${f((((a?.sum ?? 0) - b.sum) / count) * 1000)}` : `${name} -`;
  };
  console.log(
    `${String(size).padStart(6)} APIs | ${line("sotw")} | ${line("delta")}` +
      ` | bytes per one-API change: SotW ${mb(bytes.sotw)}, delta ${mb(bytes.delta)}` +
      ` | server per rebuild (mean): ${stage("read")}, ${stage("translate")}, ${stage("encode")} | RSS ${mb(process.memoryUsage().rss)}`,
  );
  await controlPlane.stop();
}

if (process.argv[2] === "clients") {
  clients(process.argv[3]!);
} else if (process.argv[2] === "child") {
  await child(Number(process.argv[3]));
  process.exit(0);
} else {
  console.log(`propagation benchmark (${url ? "Postgres server" : "embedded Postgres"}), ${changes} changes per size, PUT response → RouteConfiguration received`);
  for (const size of sizes) {
    const result = spawnSync(process.execPath, ["--import", "tsx", "--max-old-space-size=8192", import.meta.filename, "child", String(size)], { stdio: "inherit", env: process.env });
    if (result.status !== 0) process.exit(result.status ?? 1);
  }
}

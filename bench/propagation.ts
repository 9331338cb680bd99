/**
 * Propagation benchmark: from the HTTP response of a PUT that changes one API to the moment a
 * connected ADS client receives the new RouteConfiguration, for a state-of-the-world and a delta
 * client at once, over 200 changes, with N APIs loaded (default 1,000 and 10,000). Also the bytes
 * sent to one client for a one-API change, SotW against delta.
 *
 *   BENCH_DATABASE_URL=postgres://… npm run bench:propagation
 *   BENCH_SIZES=1000 BENCH_CHANGES=200 …
 */
import { spawnSync } from "node:child_process";
import pg from "pg";
import { loadConfig } from "../packages/control-plane/src/config";
import { startControlPlane } from "../packages/control-plane/src/controlPlane";
import { XDS_TYPE_URLS } from "../packages/control-plane/src/xds";
import { connectDelta, connectSotw, type DeltaClient, type SotwClient } from "../test/support/xdsClient";
import { benchApi, mb, percentile, seedApis } from "./seed";

const T = XDS_TYPE_URLS;
const ROUTES = "apigw-routes";
const sizes = (process.env.BENCH_SIZES ?? "1000,10000").split(",").map(Number);
const changes = Number(process.env.BENCH_CHANGES ?? 200);
const url = process.env.BENCH_DATABASE_URL;

async function child(size: number): Promise<void> {
  if (url) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
    await client.end();
  }
  const controlPlane = await startControlPlane(
    loadConfig({
      ...(url ? { DATABASE_URL: url } : { DATA_DIR: "memory://" }),
      MASTER_KEY: "bench-master-key-0123456789abcdef",
      ADMIN_PASSWORD: "admin-bench",
      MANAGEMENT_PORT: "0",
      ADMIN_PORT: "0",
      XDS_PORT: "0",
      EXT_AUTHZ_PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      XDS_COALESCE_MS: process.env.XDS_COALESCE_MS ?? "2",
    }),
  );
  await seedApis(controlPlane.database.knex, size);
  controlPlane.pipeline.requestFull();
  await controlPlane.pipeline.settled();

  const address = `127.0.0.1:${controlPlane.xdsPort}`;
  const sotw = connectSotw(address, { id: "bench-sotw" });
  const delta = connectDelta(address, { id: "bench-delta" });
  // Waits for a RouteConfiguration whose bytes contain `marker`, ACKing everything on the way.
  const waitSotw = async (client: SotwClient, marker: string): Promise<{ at: number; bytes: number }> => {
    for (;;) {
      const r = await client.next(120_000);
      client.ack(r);
      if (r.typeUrl !== T.route) continue;
      const bytes = r.resources.reduce((n, x) => n + x.value.length, 0);
      if (r.resources.some((x) => Buffer.from(x.value).includes(marker))) return { at: performance.now(), bytes };
    }
  };
  const waitDelta = async (client: DeltaClient, marker: string): Promise<{ at: number; bytes: number }> => {
    for (;;) {
      const r = await client.next(120_000);
      client.ack(r);
      if (r.typeUrl !== T.route) continue;
      const bytes = r.resources.reduce((n, x) => n + (x.resource?.value.length ?? 0), 0);
      if (r.resources.some((x) => x.resource && Buffer.from(x.resource.value).includes(marker))) return { at: performance.now(), bytes };
    }
  };
  sotw.request(T.cluster);
  sotw.request(T.listener);
  sotw.request(T.route, [ROUTES]);
  delta.subscribe(T.cluster);
  delta.subscribe(T.listener);
  delta.subscribe(T.route, [ROUTES]);
  await Promise.all([waitSotw(sotw, "x-bench"), waitDelta(delta, "x-bench")]);

  const auth = "Basic " + Buffer.from("admin:admin-bench").toString("base64");
  const sotwLatency: number[] = [];
  const deltaLatency: number[] = [];
  let sotwBytes = 0;
  let deltaBytes = 0;
  for (let i = 0; i < changes; i++) {
    const target = (i * 7919) % size;
    const marker = `r${i + 1}-${target}`;
    const body = benchApi(target, 0);
    (body.spec.policies![0]!.params as any).request.headers[0].value = marker;
    const pending = [waitSotw(sotw, marker), waitDelta(delta, marker)];
    const response = await fetch(`${controlPlane.managementUrl}/api/management/v0.9/rest-apis/bench-api-${target}`, {
      method: "PUT",
      headers: { Authorization: auth, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answered = performance.now();
    if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${await response.text()}`);
    const [s, d] = await Promise.all(pending);
    sotwLatency.push(s!.at - answered);
    deltaLatency.push(d!.at - answered);
    sotwBytes = s!.bytes;
    deltaBytes = d!.bytes;
  }
  sotwLatency.sort((a, b) => a - b);
  deltaLatency.sort((a, b) => a - b);
  const f = (v: number) => `${v.toFixed(1)} ms`;
  console.log(
    `${String(size).padStart(6)} APIs | SotW p50 ${f(percentile(sotwLatency, 50))}, p99 ${f(percentile(sotwLatency, 99))}` +
      ` | delta p50 ${f(percentile(deltaLatency, 50))}, p99 ${f(percentile(deltaLatency, 99))}` +
      ` | bytes per one-API change: SotW ${mb(sotwBytes)}, delta ${mb(deltaBytes)} | RSS ${mb(process.memoryUsage().rss)}`,
  );
  sotw.close();
  delta.close();
  await controlPlane.stop();
}

if (process.argv[2] === "child") {
  await child(Number(process.argv[3]));
  process.exit(0);
}
console.log(`propagation benchmark (${url ? "Postgres server" : "embedded Postgres"}), ${changes} changes per size, PUT response → RouteConfiguration received`);
for (const size of sizes) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "--max-old-space-size=8192", import.meta.filename, "child", String(size)], { stdio: "inherit", env: process.env });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

/**
 * Recovery after a Postgres outage: from the moment the server is back to the first write the
 * management API accepts (201), and to an ADS client receiving that write's route. One control
 * plane, one SotW client, writes retried every 20 ms through the outage.
 *
 *   BENCH_DATABASE_URL=postgres://… npm run bench:faults
 *   BENCH_ROUNDS=5 BENCH_OUTAGE_MS=3000 …
 *
 * The outage is a TCP proxy in front of the server that drops every connection and refuses new
 * ones for BENCH_OUTAGE_MS (the server is shared by nobody else's connections through it). With
 * BENCH_PG_RESTART_COMMAND (e.g. `pg_ctlcluster 15 main restart`) the real server is restarted
 * instead, and "back" is when that command returns. The schema of BENCH_DATABASE_URL is
 * recreated: use a database of its own.
 */
import { execSync } from "node:child_process";
import pg from "pg";
import { loadConfig } from "../packages/control-plane/src/config";
import { startControlPlane } from "../packages/control-plane/src/controlPlane";
import { USERS } from "../test/support/environment";
import { RouteWatcher, callAt, faultApi, faultApiPath } from "../test/support/faults";
import { TcpProxy } from "../test/support/tcpProxy";

const url = process.env.BENCH_DATABASE_URL;
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const outageMs = Number(process.env.BENCH_OUTAGE_MS ?? 3000);
const restartCommand = process.env.BENCH_PG_RESTART_COMMAND;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (!url) {
  process.stderr.write("BENCH_DATABASE_URL is required (a Postgres database of its own; its schema is recreated)\n");
  process.exit(2);
}

const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
await client.end();

const target = new URL(url);
const proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
await proxy.start();
const controlPlane = await startControlPlane(
  loadConfig({
    DATABASE_URL: restartCommand ? url : proxy.url(url),
    MASTER_KEY: "bench-master-key-0123456789abcdef",
    // callAt authenticates as the test suite's admin.
    ADMIN_USER: USERS.admin.name,
    ADMIN_PASSWORD: USERS.admin.password,
    MANAGEMENT_PORT: "0",
    ADMIN_PORT: "0",
    XDS_PORT: "0",
    EXT_AUTHZ_PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.LOG_LEVEL ?? "silent",
  }),
);
const watcher = new RouteWatcher(`127.0.0.1:${controlPlane.xdsPort}`, { id: "bench-faults" });

const results: { write: number; delivered: number; refused: number }[] = [];
for (let round = 0; round < rounds; round++) {
  let back: number;
  if (restartCommand) {
    execSync(restartCommand, { stdio: "ignore" });
    back = performance.now();
  } else {
    await proxy.cut();
    await sleep(outageMs);
    await proxy.restore();
    back = performance.now();
  }
  let refused = 0;
  let name: string | undefined;
  for (let n = 0; !name; n++) {
    const candidate = `bench-fault-${round}-${n}`;
    const answer = await callAt(controlPlane.managementUrl, "POST", "/rest-apis", faultApi(candidate)).catch(() => undefined);
    if (answer?.status === 201) name = candidate;
    else {
      if (answer && answer.status !== 503) throw new Error(`unexpected answer ${answer.status}: ${JSON.stringify(answer.body)}`);
      refused++;
      await sleep(20);
    }
  }
  const write = performance.now() - back;
  await watcher.until(`round ${round}'s write`, (paths) => paths.has(faultApiPath(name!)), 60_000);
  const delivered = performance.now() - back;
  results.push({ write, delivered, refused });
  process.stdout.write(`round ${round + 1}: first accepted write ${write.toFixed(0)} ms, delivered by ADS ${delivered.toFixed(0)} ms (${refused} requests answered 503 first)\n`);
  await sleep(500);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const max = (values: number[]) => Math.max(...values);
process.stdout.write(
  `\n${restartCommand ? "Postgres restart" : `outage of ${outageMs} ms (TCP proxy cut)`}, ${rounds} rounds:\n` +
    `  server back → first accepted write:   median ${median(results.map((r) => r.write)).toFixed(0)} ms, max ${max(results.map((r) => r.write)).toFixed(0)} ms\n` +
    `  server back → change delivered by ADS: median ${median(results.map((r) => r.delivered)).toFixed(0)} ms, max ${max(results.map((r) => r.delivered)).toFixed(0)} ms\n`,
);

watcher.close();
await controlPlane.stop();
await proxy.close();
process.exit(0);

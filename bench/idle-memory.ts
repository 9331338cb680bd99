/**
 * Idle memory benchmark: starts the control plane exactly as `npm start` does (a child process,
 * `node --import tsx packages/control-plane/src/main.ts`, nothing configured but ports and the data
 * directory) and reads its memory once /ready answers and a few seconds have passed: resident set
 * (VmRSS from /proc/<pid>/status) and, from /metrics (prom-client's default metrics), V8's used
 * heap and the memory V8 reports outside its heap (WebAssembly memories, Buffers). Then it creates
 * N small APIs through the management API, reads again, deletes them all, and reads once more:
 * after the deletion the figure should be back near idle.
 *
 *   npm run bench:idle-memory                                  # embedded: new data dir, restart, memory://
 *   BENCH_DATABASE_URL=postgres://… npm run bench:idle-memory   # and a Postgres server
 *   BENCH_APIS=1000 BENCH_SETTLE_MS=5000 BENCH_PORT_BASE=29800 …
 *
 * The stores: "data dir (new)" is a first start (Postgres's initdb runs); "data dir (restart)" the
 * same directory started again; "memory://" runs initdb at every start. Linux only (/proc).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchApi } from "./seed";

const apis = Number(process.env.BENCH_APIS ?? 1000);
const settleMs = Number(process.env.BENCH_SETTLE_MS ?? 5000);
const portBase = Number(process.env.BENCH_PORT_BASE ?? 29800);
const url = process.env.BENCH_DATABASE_URL;
const ADMIN = { user: "admin", password: "bench-admin-secret" };
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reading {
  rss: number;
  /** After a full garbage collection: */
  rssAfterGc: number;
  heapUsed: number;
  external: number;
}

interface Row {
  store: string;
  idle: Reading;
  loaded?: Reading;
  deleted?: Reading;
}

function ports() {
  return { MANAGEMENT_PORT: portBase, ADMIN_PORT: portBase + 1, XDS_PORT: portBase + 2, EXT_AUTHZ_PORT: portBase + 3 };
}

function start(env: Record<string, string>): ChildProcess {
  // As `npm start`, plus a full garbage collection on SIGUSR2 (bench only): a figure after it is
  // what the process retains, not garbage an idle process has had no reason to collect yet.
  const onSignal = `process.on("SIGUSR2", () => globalThis.gc())`;
  const args = ["--expose-gc", "--import", `data:text/javascript,${encodeURIComponent(onSignal)}`, "--import", "tsx"];
  const child = spawn(process.execPath, [...args, "packages/control-plane/src/main.ts"], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LOG_LEVEL: "warn",
      ADMIN_PASSWORD: ADMIN.password,
      MASTER_KEY: "bench-master-key-0123456789",
      ...Object.fromEntries(Object.entries(ports()).map(([k, v]) => [k, String(v)])),
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null) child.kill("SIGKILL");
}

async function waitReady(child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`control plane exited with ${child.exitCode}`);
    try {
      const response = await fetch(`http://127.0.0.1:${ports().ADMIN_PORT}/ready`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error("control plane not ready after 120 s");
}

function residentSet(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

async function read(child: ChildProcess): Promise<Reading> {
  const rss = residentSet(child);
  child.kill("SIGUSR2");
  await sleep(1000);
  const rssAfterGc = residentSet(child);
  const metrics = await (await fetch(`http://127.0.0.1:${ports().ADMIN_PORT}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)`, "m").exec(metrics)?.[1] ?? NaN);
  return { rss, rssAfterGc, heapUsed: metric("apigw_nodejs_heap_size_used_bytes"), external: metric("apigw_nodejs_external_memory_bytes") };
}

async function send(method: string, path: string, body?: unknown): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${ports().MANAGEMENT_PORT}/api/management/v0.9${path}`, {
    method,
    headers: {
      Authorization: "Basic " + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString("base64"),
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
}


/** `count` requests, 8 at a time. */
async function inParallel(count: number, each: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < count) await each(next++);
    }),
  );
}

async function measure(store: string, env: Record<string, string>, withApis: boolean): Promise<Row> {
  const child = start(env);
  try {
    await waitReady(child);
    await sleep(settleMs);
    const row: Row = { store, idle: await read(child) };
    if (withApis && apis > 0) {
      const name = (i: number) => benchApi(i).metadata.name;
      await inParallel(apis, (i) => send("POST", "/rest-apis", benchApi(i)));
      await sleep(settleMs);
      row.loaded = await read(child);
      await inParallel(apis, (i) => send("DELETE", `/rest-apis/${name(i)}`));
      await sleep(settleMs);
      row.deleted = await read(child);
    }
    return row;
  } finally {
    await stop(child);
  }
}

const rows: Row[] = [];
const dir = mkdtempSync(join(tmpdir(), "apigw-idle-"));
try {
  rows.push(await measure("embedded, data dir (new)", { DATA_DIR: dir }, false));
  rows.push(await measure("embedded, data dir (restart)", { DATA_DIR: dir }, true));
  rows.push(await measure("embedded, memory://", { DATA_DIR: "memory://" }, true));
  if (url) rows.push(await measure("Postgres server", { DATABASE_URL: url, DATA_DIR: dir }, true));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const mib = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? "-" : `${Math.round(n / MiB)}`);
const cell = (r?: Reading) => (r ? `${mib(r.rss)}; ${mib(r.rssAfterGc)} (${mib(r.heapUsed)} / ${mib(r.external)})` : "-");
console.log(`\nMiB: RSS; after a full GC: RSS (V8 heap used / external). Read ${settleMs} ms after /ready; ${apis} APIs of 5 operations created, then deleted\n`);
console.log("| store | idle | with APIs | after deleting them |");
console.log("| --- | ---: | ---: | ---: |");
for (const row of rows) console.log(`| ${row.store} | ${cell(row.idle)} | ${cell(row.loaded)} | ${cell(row.deleted)} |`);

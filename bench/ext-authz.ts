/**
 * ext_authz benchmark: checks per second per core, and latency at 2,000 checks/s, against a real
 * Redis, for (a) an apip_ API key, (b) a signed request with a nonce and a traffic limit, (c) a
 * denied request. The data is created through the management API and projected into Redis by the
 * control plane; ext_authz runs as its own process (as in production) and its CPU time is read
 * from /proc, so "per core" means checks divided by the CPU seconds the service used.
 *
 *   REDIS_URL=redis://127.0.0.1:6379/12 npm run bench:ext-authz
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { buildStringToSign, sign, CONTEXT_EXTENSIONS } from "@apigw/shared";
import { loadConfig } from "../packages/control-plane/src/config";
import { startControlPlane } from "../packages/control-plane/src/controlPlane";
import { ExtAuthzClient, type SimpleCheckRequest } from "../test/support/extAuthzClient";
import { percentile } from "./seed";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/12";
const MASTER_KEY = "bench-master-key-0123456789abcdef";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const PORT = 19391;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

async function http(method: string, url: string, body?: unknown) {
  const response = await fetch(url, {
    method,
    headers: { Authorization: "Basic " + Buffer.from("admin:admin-bench").toString("base64"), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await response.json().catch(() => ({}))) as any;
  if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

const controlPlane = await startControlPlane(
  loadConfig({
    DATA_DIR: "memory://",
    REDIS_URL,
    MASTER_KEY,
    ADMIN_PASSWORD: "admin-bench",
    MANAGEMENT_PORT: "0",
    ADMIN_PORT: "0",
    XDS_PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
  }),
);
const base = controlPlane.managementUrl + "/api/management/v0.9";
const api = (name: string, policies: unknown[]) => ({
  apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
  kind: "RestApi",
  metadata: { name },
  spec: { displayName: name, version: "v1", context: `/${name}`, upstream: { main: { url: "http://backend:8080" } }, policies, operations: [{ method: "GET", path: "/items" }] },
});
await http("POST", `${base}/rest-apis`, api("bench-key", [{ name: "api-key-auth", params: {} }]));
await http("POST", `${base}/rest-apis`, api("bench-signed", [
  { name: "app-auth", params: { forceNonceCheck: true, appCode: "DISABLE" } },
  { name: "traffic-control", params: { unit: "SECOND", apiLimit: 1_000_000, appLimit: 1_000_000 } },
]));
const key = (await http("POST", `${base}/rest-apis/bench-key/api-keys`, { name: "bench" })).apiKey.apiKey as string;
const app = (await http("POST", `${base}/applications`, { name: "bench-app" })).application;
await http("POST", `${base}/authorizations`, { applicationId: app.id, apiId: "bench-signed", stage: "RELEASE" });
const { appKey, appSecret } = app.keyPairs[0];
await new Promise((r) => setTimeout(r, 300)); // projection

const child = spawn(process.execPath, [...(process.env.BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROF] : []), "--import", "tsx", "packages/ext-authz/src/main.ts"], {
  env: { ...process.env, REDIS_URL, MASTER_KEY, EXT_AUTHZ_PORT: String(PORT), EXT_AUTHZ_ADMIN_PORT: String(PORT + 2), LOG_LEVEL: "silent" },
  stdio: ["ignore", "inherit", "inherit"],
});
for (let i = 0; ; i++) {
  const ready = await fetch(`http://127.0.0.1:${PORT + 2}/ready`).then((r) => r.ok).catch(() => false);
  if (ready) break;
  if (i > 100) throw new Error("ext_authz did not become ready");
  await new Promise((r) => setTimeout(r, 100));
}

const clients = Array.from({ length: 4 }, () => new ExtAuthzClient(`127.0.0.1:${PORT}`));
let next = 0;
const client = () => clients[next++ % clients.length]!;

function signedRequest(): SimpleCheckRequest {
  const headers: Record<string, string> = {
    accept: "application/json",
    "x-ca-key": appKey,
    "x-ca-timestamp": String(Date.now()),
    "x-ca-nonce": randomUUID(),
    "x-ca-signature-method": "HmacSHA256",
    "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
  };
  const stringToSign = buildStringToSign({ method: "GET", path: "/bench-signed/items", query: [["page", "1"]], headers });
  headers["x-ca-signature"] = sign(stringToSign, appSecret, "HmacSHA256");
  return { method: "GET", path: "/bench-signed/items?page=1", headers, contextExtensions: ctx("bench-signed") };
}
function ctx(apiId: string) {
  return { [CONTEXT_EXTENSIONS.apiId]: apiId, [CONTEXT_EXTENSIONS.stage]: "RELEASE", [CONTEXT_EXTENSIONS.operation]: "GET /items" };
}
const scenarios: Record<string, { make: () => SimpleCheckRequest; expectAllowed: boolean }> = {
  "a) apip_ API key": { make: () => ({ method: "GET", path: "/bench-key/items", headers: { "api-key": key }, contextExtensions: ctx("bench-key") }), expectAllowed: true },
  "b) signed + nonce + traffic limit": { make: signedRequest, expectAllowed: true },
  "c) denied (unknown API key)": { make: () => ({ method: "GET", path: "/bench-key/items", headers: { "api-key": "apip_" + "0".repeat(64) }, contextExtensions: ctx("bench-key") }), expectAllowed: false },
};

async function throughput(make: () => SimpleCheckRequest, expectAllowed: boolean) {
  const concurrency = 64;
  const deadline = performance.now() + SECONDS * 1000;
  const cpuBefore = cpuSeconds(child.pid!);
  let done = 0;
  let wrong = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const result = await client().check(make());
        if (result.allowed !== expectAllowed) wrong++;
        done++;
      }
    }),
  );
  const cpu = cpuSeconds(child.pid!) - cpuBefore;
  return { perSecond: done / SECONDS, perCore: done / cpu, wrong };
}

async function latencyAt(rate: number, make: () => SimpleCheckRequest) {
  const total = rate * SECONDS;
  const latencies: number[] = [];
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const request = make();
    const t0 = performance.now();
    pending.push(client().check(request).then(() => void latencies.push(performance.now() - t0)));
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), achieved: total / ((performance.now() - started) / 1000) };
}

console.log(`ext_authz benchmark: Redis ${REDIS_URL}, ${SECONDS} s per run, 2 cores shared by service and load generator`);
for (const [name, { make, expectAllowed }] of Object.entries(scenarios)) {
  if (process.env.BENCH_ONLY && !name.startsWith(process.env.BENCH_ONLY)) continue;
  for (let i = 0; i < 200; i++) await client().check(make()); // warm up
  const t = await throughput(make, expectAllowed);
  const l = await latencyAt(2000, make);
  console.log(
    `${name.padEnd(36)} ${t.perSecond.toFixed(0).padStart(6)} checks/s wall, ${t.perCore.toFixed(0).padStart(6)} checks/s per core of ext_authz CPU` +
      ` | at 2000/s: p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms (achieved ${l.achieved.toFixed(0)}/s)${t.wrong ? ` | ${t.wrong} unexpected decisions` : ""}`,
  );
}
for (const c of clients) c.close();
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
await controlPlane.stop();
process.exit(0);

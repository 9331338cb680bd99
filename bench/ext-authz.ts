/**
 * ext_authz benchmark: checks per second per core, and latency at a fixed rate (2,000 checks/s),
 * against a real Redis, for (a) an apip_ API key, (b) a signed request with a nonce and a traffic
 * limit (API and application limits: two counters), (c) a denied request (unknown API key).
 *
 *   REDIS_URL=redis://127.0.0.1:6379/12 npm run bench:ext-authz
 *
 * Three processes, as in production:
 * - this one (the orchestrator): runs the control plane, creates the data through the management
 *   REST API, waits until the control plane has projected it into Redis, then sits idle (at the
 *   end it deletes this run's nonces from Redis);
 * - ext_authz (`packages/ext-authz/src/main.ts`, exactly as `npm run start:ext-authz` runs it);
 * - the load generator (this file again, BENCH_ROLE=generator), so that neither the control
 *   plane nor the generator runs on ext_authz's event loop.
 *
 * What is measured, and how:
 * - "per core" is checks divided by the CPU seconds (user + system, from /proc/<pid>/stat) the
 *   ext_authz process used during the closed-loop run (BENCH_CONCURRENCY calls in flight over
 *   BENCH_CONNECTIONS HTTP/2 connections, after a BENCH_WARMUP_SECONDS warm-up that is not
 *   counted). Redis is not included; its CPU per check is shown separately (from its INFO cpu
 *   counters: the whole server, so other clients of this Redis count too).
 * - Latency is measured open-loop: requests leave on a fixed schedule (BENCH_RATE per second, from
 *   a 1 ms timer, so in bursts of about rate/1000) whether or not earlier ones were answered, for
 *   BENCH_SECONDS, after BENCH_SETTLE_SECONDS at the same rate that are not measured (they also
 *   warm the JIT up). A request's latency runs from handing its bytes to the socket to the end of
 *   its response, so it covers ext_authz, Redis, the loopback network and the generator's own
 *   handling; nothing is left out. Printed with it, to tell the service from its surroundings:
 *   "late p99" (how far behind schedule the generator sent, the 1 ms timer included), ext_authz's
 *   own p99 (bucket bound of its check-duration histogram: decision time including Redis,
 *   excluding gRPC and event-loop queueing), ext_authz's CPU share, the generator's CPU per
 *   request and event-loop delay, the CPU used meanwhile by other processes on the machine, and
 *   whether Redis forked for an RDB snapshot during the run (this Redis saves every 60 s after
 *   10,000 changes; the fork and its child compete for the same 2 cores).
 * - All latency runs come before all closed loops. A saturating closed loop leaves tens of MB of
 *   objects promoted under load in ext_authz's old generation, and the mark-compact that later
 *   collects them pauses ext_authz for 40-100 ms on this machine: an after-effect of overload,
 *   which would land in whichever latency run came next. BENCH_ORDER=mixed runs each scenario's
 *   closed loop right before its latency run, to see it.
 * - Requests are what Envoy sends: CheckRequests built by the test client (lower-case headers,
 *   pseudo-headers, path with query, context extensions) with an `x-request-id` per request.
 *   They are protobuf-encoded once; per request only placeholders are rewritten in place: the
 *   request id, and for signed requests the timestamp, a fresh random nonce and the real
 *   HMAC-SHA256 of the request's string to sign (built once by the shared code with placeholders
 *   and filled in the same way).
 * - The generator has to be cheap, or on 2 cores its own CPU and GC pauses become the p99. So it
 *   talks HTTP/2 itself (RawHttp2Connection: pre-encoded HEADERS frame with static HPACK, one DATA
 *   frame, flow control, SETTINGS/PING acknowledged; about half the CPU of node:http2's client)
 *   and keeps no per-request objects (preallocated latency arrays). Every answer is checked
 *   (a CheckResponse with the expected verdict; a gRPC error has none and counts as an error),
 *   and the first answer of each scenario also goes through node:http2's client, which checks
 *   `grpc-status`, and is fully decoded. BENCH_CLIENT=node uses node:http2 for all calls.
 * - Both sides disable Nagle (as Envoy and grpc-js do): small frames otherwise wait for the
 *   peer's delayed ACK (up to 40 ms).
 *
 * Options (environment): BENCH_SECONDS (5), BENCH_RATE (2000), BENCH_CONCURRENCY (64),
 * BENCH_CONNECTIONS (4), BENCH_WARMUP_SECONDS (2), BENCH_SETTLE_SECONDS (3), BENCH_ONLY (a
 * scenario letter, e.g. `b`), BENCH_ORDER (`mixed`, see above), BENCH_CLIENT (`node`: node:http2
 * for all calls), BENCH_PROF / BENCH_GEN_PROF (a directory: run ext_authz / the generator with
 * --cpu-prof and write the profile there), BENCH_NODE_FLAGS (extra node flags for ext_authz,
 * e.g. `--trace-gc`).
 */
import { fork, spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import * as http2 from "node:http2";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { buildStringToSign, CONTEXT_EXTENSIONS, scopeField, scopeKey, sha256Hex } from "@apigw/shared";
import { CHECK_METHOD_PATH, decodeCheckResponse, encodeCheckRequest } from "../packages/ext-authz/src/protocol";
import { buildCheckRequest, type SimpleCheckRequest } from "../test/support/extAuthzClient";
import { percentile } from "./seed";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/12";
const MASTER_KEY = "bench-master-key-0123456789abcdef";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 4);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 3);
const PORT = 19391;

/** What the orchestrator hands the generator. */
interface GeneratorJob {
  port: number;
  adminPort: number;
  extAuthzPid: number;
  only?: string;
  apiKey: string;
  appKey: string;
  appSecret: string;
}

interface ScenarioResult {
  name: string;
  perSecond: number;
  perCore: number;
  userUsPerCheck: number;
  systemUsPerCheck: number;
  redisCpuPerCheckUs: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  lateP99: number;
  /** ext_authz's own check duration at the 99th percentile (upper bound, from its histogram). */
  serverP99: string;
  /** Redis forked (an RDB snapshot) during the latency run: its CPU and copy-on-write show up as latency. */
  redisForked: boolean;
  /** Open loop: the generator's CPU per request, its event loop's delay (p99), ext_authz's CPU use (cores). */
  generatorCpuUs: number;
  generatorLoopDelayP99: number;
  serverCpuShare: number;
  /** CPU (cores) used during the latency run by other processes on the machine (interference). */
  otherCpuShare: number;
  achieved: number;
  wrong: number;
  sample: string;
}

if (process.env.BENCH_ROLE === "generator") {
  process.once("message", (job: GeneratorJob) => {
    generate(job).then(
      (results) => process.send!({ results }, () => process.exit(0)),
      (error: unknown) => {
        process.stderr.write(`generator failed: ${(error as Error).stack ?? String(error)}\n`);
        process.exit(1);
      },
    );
  });
} else {
  await orchestrate();
}

/* ------------------------------------------------------------------ orchestrator */

async function orchestrate(): Promise<void> {
  // Loaded here only: the generator process does not need the control plane.
  const { loadConfig } = await import("../packages/control-plane/src/config");
  const { startControlPlane } = await import("../packages/control-plane/src/controlPlane");
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
  const rest = async (method: string, url: string, body?: unknown) => {
    const response = await fetch(url, {
      method,
      headers: { Authorization: "Basic " + Buffer.from("admin:admin-bench").toString("base64"), "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json().catch(() => ({}))) as any;
    if (response.status >= 300) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const api = (name: string, policies: unknown[]) => ({
    apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
    kind: "RestApi",
    metadata: { name },
    spec: { displayName: name, version: "v1", context: `/${name}`, upstream: { main: { url: "http://backend:8080" } }, policies, operations: [{ method: "GET", path: "/items" }] },
  });
  await rest("POST", `${base}/rest-apis`, api("bench-key", [{ name: "api-key-auth", params: {} }]));
  await rest("POST", `${base}/rest-apis`, api("bench-signed", [
    { name: "app-auth", params: { forceNonceCheck: true, appCode: "DISABLE" } },
    { name: "traffic-control", params: { unit: "SECOND", apiLimit: 1_000_000, appLimit: 1_000_000 } },
  ]));
  const apiKey = (await rest("POST", `${base}/rest-apis/bench-key/api-keys`, { name: "bench" })).apiKey.apiKey as string;
  const app = (await rest("POST", `${base}/applications`, { name: "bench-app" })).application;
  await rest("POST", `${base}/authorizations`, { applicationId: app.id, apiId: "bench-signed", stage: "RELEASE" });
  const { appKey, appSecret } = app.keyPairs[0];
  // The control plane projects the data into Redis asynchronously: wait until both are there.
  const redis = new Redis(REDIS_URL);
  for (let i = 0; ; i++) {
    const [keyThere, appThere] = await Promise.all([
      redis.hexists(scopeKey({ apiId: "bench-key", stage: "RELEASE" }), scopeField.apiKey(sha256Hex(apiKey))),
      redis.hexists(scopeKey({ apiId: "bench-signed", stage: "RELEASE" }), scopeField.appKey(appKey)),
    ]);
    if (keyThere && appThere) break;
    if (i > 200) throw new Error("the control plane did not project the benchmark data into Redis");
    await new Promise((r) => setTimeout(r, 50));
  }
  redis.disconnect();

  const extAuthz = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROF] : []),
      ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(" ") : []),
      "--import",
      "tsx",
      "packages/ext-authz/src/main.ts",
    ],
    {
      env: { ...process.env, REDIS_URL, MASTER_KEY, EXT_AUTHZ_PORT: String(PORT), EXT_AUTHZ_ADMIN_PORT: String(PORT + 2), EXT_AUTHZ_HOST: "127.0.0.1", LOG_LEVEL: "silent" },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  const exited = new Promise<void>((resolve) => extAuthz.once("exit", () => resolve()));
  try {
    for (let i = 0; ; i++) {
      const ready = await fetch(`http://127.0.0.1:${PORT + 2}/ready`).then((r) => r.ok).catch(() => false);
      if (ready) break;
      if (i > 100) throw new Error("ext_authz did not become ready");
      await new Promise((r) => setTimeout(r, 100));
    }
    const generator = fork(fileURLToPath(import.meta.url), [], {
      execArgv: [...(process.env.BENCH_GEN_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_GEN_PROF] : []), "--import", "tsx"],
      env: { ...process.env, BENCH_ROLE: "generator" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const job: GeneratorJob = { port: PORT, adminPort: PORT + 2, extAuthzPid: extAuthz.pid!, only: process.env.BENCH_ONLY, apiKey, appKey, appSecret };
    console.log(
      `ext_authz benchmark: Redis ${REDIS_URL}; ${SECONDS} s per run; closed loop ${CONCURRENCY} in flight over ${CONNECTIONS} HTTP/2 connections; ` +
        `open loop ${RATE}/s; ${os().cpus} cores shared by ext_authz, Redis and the load generator`,
    );
    const results = await runGenerator(generator, job);
    for (const r of results) {
      console.log(
        `${r.name.padEnd(34)} ${r.perSecond.toFixed(0).padStart(6)} checks/s wall, ${r.perCore.toFixed(0).padStart(6)} checks/s per core of ext_authz CPU` +
          ` (${r.userUsPerCheck.toFixed(0)} µs user + ${r.systemUsPerCheck.toFixed(0)} µs sys per check; Redis ${r.redisCpuPerCheckUs.toFixed(0)} µs)` +
          ` | at ${RATE}/s: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, p99.9 ${r.p999.toFixed(2)} ms, max ${r.max.toFixed(1)} ms` +
          ` (achieved ${r.achieved.toFixed(0)}/s, late p99 ${r.lateP99.toFixed(2)} ms, ext_authz's own p99 ${r.serverP99})` +
          `${r.redisForked ? " [Redis snapshotted (fork) during this latency run]" : ""}` +
          `${r.wrong ? ` | ${r.wrong} UNEXPECTED DECISIONS` : ""}`,
      );
    }
    for (const r of results) {
      console.log(
        `  ${r.name}: first answer ${r.sample}; at ${RATE}/s ext_authz used ${(r.serverCpuShare * 100).toFixed(0)}% of a core, ` +
          `the generator ${r.generatorCpuUs.toFixed(0)} µs CPU per request (event loop delay p99 ${r.generatorLoopDelayP99.toFixed(1)} ms), ` +
          `other processes ${(r.otherCpuShare * 100).toFixed(0)}% of a core`,
      );
    }
  } finally {
    extAuthz.kill("SIGTERM");
    await exited;
    await controlPlane.stop();
    // This run's nonces would otherwise stay in Redis for their 15 minutes (and make the next
    // runs' snapshots bigger); counters expire seconds after their window.
    await removeKeys(REDIS_URL, `apigw:nonce:${appKey}:*`);
  }
  process.exit(0);
}

async function removeKeys(url: string, pattern: string): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 5000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

function os() {
  return { cpus: readFileSync("/proc/cpuinfo", "utf8").split("\n").filter((l) => l.startsWith("processor")).length };
}

function runGenerator(generator: ChildProcess, job: GeneratorJob): Promise<ScenarioResult[]> {
  return new Promise((resolve, reject) => {
    generator.once("message", (message: { results: ScenarioResult[] }) => resolve(message.results));
    generator.once("exit", (code) => reject(new Error(`load generator exited with ${code}`)));
    generator.send(job);
  });
}

/* ------------------------------------------------------------------ load generator */

/** CPU seconds (user, system) a process has used, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  return (fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!) / 100;
}

/** Forks Redis made so far (RDB snapshots, `save` in its configuration). */
async function redisForks(redis: Redis): Promise<number> {
  return Number(/^total_forks:(\d+)/m.exec(await redis.info("stats"))?.[1] ?? 0);
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const value = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? 0);
  return value("used_cpu_user") + value("used_cpu_sys");
}

/** Cumulative counts of the check duration histogram (all results), by upper bound. */
async function durationHistogram(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^apigw_ext_authz_check_duration_seconds_bucket\{le="([^"]+)",result="[^"]+"\} (\d+)$/gm)) {
    counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + Number(match[2]));
  }
  return counts;
}

/** The smallest bucket bound holding 99% of the checks made between two histogram readings. */
function p99Bound(before: Map<string, number>, after: Map<string, number>): string {
  const total = (after.get("+Inf") ?? 0) - (before.get("+Inf") ?? 0);
  for (const [le, count] of after) {
    if (count - (before.get(le) ?? 0) >= 0.99 * total) return le === "+Inf" ? "> 0.5 s" : `≤ ${Number(le) * 1000} ms`;
  }
  return "?";
}

/** A gRPC message frame: 1 byte "not compressed", 4 bytes big-endian length, the message. */
function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

function ctx(apiId: string) {
  return { [CONTEXT_EXTENSIONS.apiId]: apiId, [CONTEXT_EXTENSIONS.stage]: "RELEASE", [CONTEXT_EXTENSIONS.operation]: "GET /items" };
}

/** Produces the next request frame of a scenario. */
type FrameSource = () => Buffer;

/** Placeholder of the `x-request-id` header Envoy adds to every request (a UUID): each request gets its own. */
const REQUEST_ID = "R".repeat(36);

/** Offset of `needle` in the encoded template (it must occur exactly once). */
function placeholderAt(template: Buffer, needle: string): number {
  const offset = template.indexOf(needle);
  if (offset < 0 || template.indexOf(needle, offset + 1) >= 0) throw new Error(`placeholder ${needle} not found exactly once`);
  return offset;
}

/** The same request each time, but with a fresh x-request-id. */
function fixedFrames(request: SimpleCheckRequest): FrameSource {
  const template = grpcFrame(encodeCheckRequest(buildCheckRequest({ ...request, headers: { ...request.headers, "x-request-id": REQUEST_ID } })));
  const idAt = placeholderAt(template, REQUEST_ID);
  return () => {
    const frame = Buffer.allocUnsafe(template.length);
    template.copy(frame);
    frame.write(randomUUID(), idAt, "latin1");
    return frame;
  };
}

/**
 * Signed requests: encoded once with placeholders of the right length; each request gets the
 * current timestamp, a fresh random nonce and the HMAC-SHA256 of its string to sign written in
 * place. The string to sign is built once by the shared code with the same placeholders and
 * filled in the same way, so it is exactly what `buildStringToSign` gives for each request.
 */
function signedFrames(appKey: string, appSecret: string): FrameSource {
  const TS = "9".repeat(String(Date.now()).length);
  const NONCE = "N".repeat(36);
  const SIG = "S".repeat(44); // base64 of 32 bytes
  const headers: Record<string, string> = {
    accept: "application/json",
    "x-ca-key": appKey,
    "x-ca-timestamp": TS,
    "x-ca-nonce": NONCE,
    "x-ca-signature-method": "HmacSHA256",
    "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
    "x-ca-signature": SIG,
    "x-request-id": REQUEST_ID, // not signed
  };
  const template = grpcFrame(
    encodeCheckRequest(buildCheckRequest({ method: "GET", path: "/bench-signed/items?page=1", headers, contextExtensions: ctx("bench-signed") })),
  );
  const stringToSign = buildStringToSign({ method: "GET", path: "/bench-signed/items", query: [["page", "1"]], headers });
  const at = (needle: string) => placeholderAt(template, needle);
  const tsAt = at(TS);
  const nonceAt = at(NONCE);
  const sigAt = at(SIG);
  const idAt = at(REQUEST_ID);
  // The signed headers block is sorted by name: x-ca-nonce comes before x-ca-timestamp.
  const [beforeNonce, afterNonce] = split(stringToSign, NONCE);
  const [beforeTs, afterTs] = split(afterNonce, TS);
  const key = Buffer.from(appSecret, "utf8");
  return () => {
    const timestamp = String(Date.now());
    const nonce = randomUUID();
    const signature = createHmac("sha256", key).update(beforeNonce + nonce + beforeTs + timestamp + afterTs, "utf8").digest("base64");
    const frame = Buffer.allocUnsafe(template.length);
    template.copy(frame);
    frame.write(timestamp, tsAt, "latin1");
    frame.write(nonce, nonceAt, "latin1");
    frame.write(signature, sigAt, "latin1");
    frame.write(randomUUID(), idAt, "latin1");
    return frame;
  };
}

function split(text: string, needle: string): [string, string] {
  const i = text.indexOf(needle);
  if (i < 0 || text.indexOf(needle, i + 1) >= 0) throw new Error(`${needle} not found exactly once in the string to sign`);
  return [text.slice(0, i), text.slice(i + needle.length)];
}

/** What a CheckResponse says, read from its bytes: status.code (field 1.1) and which http_response (2 denied, 3 ok). */
function verdict(message: Buffer): { code: number; ok: boolean } {
  let pos = 0;
  let code = 0;
  let ok = false;
  const varint = () => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = message[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw new Error("bad varint");
  };
  while (pos < message.length) {
    const tag = varint();
    if ((tag & 7) !== 2) throw new Error("unexpected wire type in CheckResponse");
    const length = varint();
    const end = pos + length;
    if (tag >>> 3 === 1) {
      while (pos < end) {
        const inner = varint();
        if (inner >>> 3 === 1 && (inner & 7) === 0) code = varint();
        else if ((inner & 7) === 2) pos += varint();
        else varint();
      }
    } else if (tag >>> 3 === 3) ok = true;
    pos = end;
  }
  return { code, ok };
}

interface Answer {
  allowed: boolean;
  message: Buffer;
}

/** A client connection that sends unary gRPC calls. */
interface CallConnection {
  /** Resolves when the connection is usable. */
  ready: Promise<void>;
  call(frame: Buffer): Promise<Answer>;
  close(): void;
}

/**
 * node:http2's client: checks grpc-status in the trailers, but costs the generator well over
 * 100 µs of CPU per call (Node's per-request stream objects, async resources, header
 * conversions). Used for the sanity check of each scenario, and for everything with
 * BENCH_CLIENT=node.
 */
class NodeHttp2Connection implements CallConnection {
  private readonly session: http2.ClientHttp2Session;
  readonly ready: Promise<void>;
  private static readonly headers = {
    [http2.constants.HTTP2_HEADER_METHOD]: "POST",
    [http2.constants.HTTP2_HEADER_PATH]: CHECK_METHOD_PATH,
    [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
    te: "trailers",
  };

  constructor(port: number) {
    this.session = http2.connect(`http://127.0.0.1:${port}`, {
      settings: { initialWindowSize: 1 << 20 },
      // As Envoy does on its upstream connections (and grpc-js on its own): no Nagle.
      createConnection: () => net.connect({ host: "127.0.0.1", port, noDelay: true }),
    });
    this.session.on("error", () => undefined);
    this.ready = new Promise((resolve) => this.session.once("connect", () => resolve()));
  }

  call(frame: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request(NodeHttp2Connection.headers, { endStream: false });
      const chunks: Buffer[] = [];
      let grpcStatus: string | undefined;
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) grpcStatus = String(headers["grpc-status"]); // trailers-only
      });
      stream.on("trailers", (trailers) => {
        grpcStatus = String(trailers["grpc-status"]);
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", reject);
      stream.on("end", () => {
        if (grpcStatus !== "0") return reject(new Error(`grpc-status ${grpcStatus}`));
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        const message = body.subarray(5, 5 + body.readUInt32BE(1));
        const { code, ok } = verdict(message);
        resolve({ allowed: ok && code === 0, message });
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}

// HTTP/2 frame types and flags (RFC 9113).
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const MAX_WINDOW = 2 ** 31 - 1;

function frameHeader(target: Buffer, offset: number, length: number, type: number, flags: number, streamId: number): void {
  target[offset] = (length >>> 16) & 0xff;
  target[offset + 1] = (length >>> 8) & 0xff;
  target[offset + 2] = length & 0xff;
  target[offset + 3] = type;
  target[offset + 4] = flags;
  target.writeUInt32BE(streamId, offset + 5);
}

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  frameHeader(out, 0, payload.length, type, flags, streamId);
  payload.copy(out, 9);
  return out;
}

/** HPACK "literal header field without indexing" with an indexed or a new name, no Huffman: no table state. */
function hpackLiteral(name: string | number, value: string): Buffer {
  const v = Buffer.from(value, "latin1");
  if (v.length > 126) throw new Error("header value too long for this encoder");
  if (typeof name === "number") return Buffer.concat([Buffer.from([name]), Buffer.from([v.length]), v]); // 0000 + 4-bit index (< 15)
  const n = Buffer.from(name, "latin1");
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

/**
 * A minimal HTTP/2 client over a TCP socket, for the load only: a request is one write of a
 * pre-encoded HEADERS frame (static HPACK: `:method POST`, `:scheme http`, `:path`,
 * `:authority`, `content-type: application/grpc`, `te: trailers`) and a DATA frame with the
 * gRPC message and END_STREAM; the response is complete at END_STREAM; its message is the DATA.
 * SETTINGS and PING are acknowledged, flow control is honoured (the receive windows are opened
 * wide at the start, the connection send window follows the server's WINDOW_UPDATEs), GOAWAY
 * and RST_STREAM fail the calls concerned. Header blocks are not decoded (no HPACK state is
 * needed for that): a call counts as answered only with a well-formed CheckResponse in its DATA;
 * a trailers-only answer (a gRPC error) has none and counts as an error. The first call of each
 * scenario goes through node:http2 as well, which checks grpc-status.
 */
class RawHttp2Connection implements CallConnection {
  private readonly socket: net.Socket;
  readonly ready: Promise<void>;
  private readonly headerBlock: Buffer;
  private nextStreamId = 1;
  private readonly streams = new Map<number, { chunks: Buffer[]; resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  private sendWindow = 65_535;
  private readonly waiting: Buffer[] = [];
  private received = 0;
  private input: Buffer = Buffer.alloc(0);
  private corked = false;
  private failed: Error | undefined;

  constructor(port: number) {
    this.headerBlock = Buffer.concat([
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table 3, 6)
      hpackLiteral(4, CHECK_METHOD_PATH), // :path
      hpackLiteral(1, `127.0.0.1:${port}`), // :authority
      hpackLiteral("content-type", "application/grpc"),
      hpackLiteral("te", "trailers"),
    ]);
    this.socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
    this.socket.on("error", (error) => this.fail(error));
    this.socket.on("close", () => this.fail(new Error("connection closed")));
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.ready = new Promise((resolve) => {
      this.socket.once("connect", () => {
        const settings = Buffer.alloc(18);
        settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
        settings.writeUInt32BE(0, 2);
        settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
        settings.writeUInt32BE(MAX_WINDOW, 8);
        settings.writeUInt16BE(0x3, 12); // MAX_CONCURRENT_STREAMS (server push only)
        settings.writeUInt32BE(0, 14);
        const increment = Buffer.alloc(4);
        increment.writeUInt32BE(MAX_WINDOW - 65_535, 0);
        this.socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), frame(SETTINGS, 0, 0, settings), frame(WINDOW_UPDATE, 0, 0, increment)]));
        resolve();
      });
    });
  }

  call(message: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      const id = this.nextStreamId;
      this.nextStreamId += 2;
      this.streams.set(id, { chunks: [], resolve, reject });
      const hb = this.headerBlock;
      const out = Buffer.allocUnsafe(18 + hb.length + message.length);
      frameHeader(out, 0, hb.length, HEADERS, END_HEADERS, id);
      hb.copy(out, 9);
      frameHeader(out, 9 + hb.length, message.length, DATA, END_STREAM, id);
      message.copy(out, 18 + hb.length);
      if (this.waiting.length > 0 || this.sendWindow < message.length) this.waiting.push(out);
      else this.send(out, message.length);
    });
  }

  /** Writes, batching the writes of one event-loop turn into one (as the server does). */
  private send(out: Buffer, dataLength: number): void {
    this.sendWindow -= dataLength;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(out);
  }

  private flushWaiting(): void {
    while (this.waiting.length > 0) {
      const out = this.waiting[0]!;
      const dataLength = out.readUIntBE(9 + this.headerBlock.length, 3);
      if (this.sendWindow < dataLength) return;
      this.waiting.shift();
      this.send(out, dataLength);
    }
  }

  private onData(chunk: Buffer): void {
    let buf = this.input.length > 0 ? Buffer.concat([this.input, chunk]) : chunk;
    let pos = 0;
    while (buf.length - pos >= 9) {
      const length = buf.readUIntBE(pos, 3);
      if (buf.length - pos < 9 + length) break;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = buf.subarray(pos + 9, pos + 9 + length);
      pos += 9 + length;
      this.onFrame(type, flags, id, payload);
    }
    this.input = pos === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(pos));
    buf = this.input;
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    switch (type) {
      case DATA: {
        this.received += payload.length;
        if (this.received > 2 ** 30) {
          // keep the connection receive window open
          const increment = Buffer.alloc(4);
          increment.writeUInt32BE(this.received, 0);
          this.socket.write(frame(WINDOW_UPDATE, 0, 0, increment));
          this.received = 0;
        }
        const stream = this.streams.get(id);
        if (stream) stream.chunks.push(payload);
        if (flags & END_STREAM) this.complete(id);
        return;
      }
      case HEADERS:
        if (flags & END_STREAM) this.complete(id);
        return;
      case RST_STREAM: {
        const stream = this.streams.get(id);
        this.streams.delete(id);
        stream?.reject(new Error(`stream reset (code ${payload.readUInt32BE(0)})`));
        return;
      }
      case SETTINGS:
        if (!(flags & ACK)) this.socket.write(frame(SETTINGS, ACK, 0));
        return;
      case PING:
        if (!(flags & ACK)) this.socket.write(frame(PING, ACK, 0, Buffer.from(payload)));
        return;
      case WINDOW_UPDATE:
        if (id === 0) {
          this.sendWindow += payload.readUInt32BE(0) & 0x7fffffff;
          this.flushWaiting();
        }
        return;
      case GOAWAY:
        this.fail(new Error(`GOAWAY (code ${payload.readUInt32BE(4)})`));
        return;
      default:
        return; // PRIORITY, CONTINUATION, unknown: nothing to do here
    }
  }

  private complete(id: number): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    this.streams.delete(id);
    const body = stream.chunks.length === 1 ? stream.chunks[0]! : Buffer.concat(stream.chunks);
    if (body.length < 5 || body.length !== 5 + body.readUInt32BE(1)) {
      stream.reject(new Error("no CheckResponse in the answer (a gRPC error)"));
      return;
    }
    const message = body.subarray(5);
    const { code, ok } = verdict(message);
    stream.resolve({ allowed: ok && code === 0, message });
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = error;
    for (const stream of this.streams.values()) stream.reject(error);
    this.streams.clear();
  }

  close(): void {
    this.failed ??= new Error("closed");
    this.socket.end(frame(GOAWAY, 0, 0, Buffer.alloc(8)));
  }
}

async function generate(job: GeneratorJob): Promise<ScenarioResult[]> {
  const useNode = process.env.BENCH_CLIENT === "node";
  const connections: CallConnection[] = Array.from({ length: CONNECTIONS }, () => (useNode ? new NodeHttp2Connection(job.port) : new RawHttp2Connection(job.port)));
  const checking = new NodeHttp2Connection(job.port);
  await Promise.all([...connections, checking].map((c) => c.ready));
  let next = 0;
  const call = (frame: Buffer) => connections[next++ % connections.length]!.call(frame);
  const redis = new Redis(REDIS_URL, { lazyConnect: false });

  const scenarios: { name: string; frames: FrameSource; expectAllowed: boolean }[] = [
    {
      name: "a) apip_ API key",
      frames: fixedFrames({ method: "GET", path: "/bench-key/items", headers: { "api-key": job.apiKey }, contextExtensions: ctx("bench-key") }),
      expectAllowed: true,
    },
    { name: "b) signed + nonce + traffic limit", frames: signedFrames(job.appKey, job.appSecret), expectAllowed: true },
    {
      name: "c) denied (unknown API key)",
      frames: fixedFrames({ method: "GET", path: "/bench-key/items", headers: { "api-key": "apip_" + "0".repeat(64) }, contextExtensions: ctx("bench-key") }),
      expectAllowed: false,
    },
  ];

  async function closedLoop(frames: FrameSource, expectAllowed: boolean, seconds: number) {
    const deadline = performance.now() + seconds * 1000;
    let done = 0;
    let wrong = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < deadline) {
          const answer = await call(frames());
          if (answer.allowed !== expectAllowed) wrong++;
          done++;
        }
      }),
    );
    return { done, wrong };
  }

  async function openLoop(frames: FrameSource, expectAllowed: boolean, seconds = SECONDS) {
    const total = Math.max(1, Math.round(RATE * seconds));
    // Preallocated, and no promise kept per request: the generator's own garbage would otherwise
    // grow its heap and its GC pauses would show up as latency.
    const latencies = new Float64Array(total);
    const late = new Float64Array(total);
    let answered = 0;
    let wrong = 0;
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    const cpu0 = process.cpuUsage();
    const server0 = cpuSeconds(job.extAuthzPid);
    const parent0 = cpuSeconds(process.ppid);
    const redis0 = await redisCpuSeconds(redis);
    const machine0 = machineBusySeconds();
    const started = performance.now();
    let sent = 0;
    await new Promise<void>((resolve) => {
      const finished = () => {
        if (++answered === total) resolve();
      };
      const tick = () => {
        const now = performance.now();
        const due = Math.min(total, Math.floor(((now - started) * RATE) / 1000) + 1);
        while (sent < due) {
          const index = sent++;
          const frame = frames();
          const t0 = performance.now();
          late[index] = t0 - (started + (index * 1000) / RATE);
          call(frame).then(
            (answer) => {
              latencies[index] = performance.now() - t0;
              if (answer.allowed !== expectAllowed) wrong++;
              finished();
            },
            () => {
              latencies[index] = performance.now() - t0;
              wrong++;
              finished();
            },
          );
        }
        if (sent < total) setTimeout(tick, 1);
      };
      tick();
    });
    const elapsed = (performance.now() - started) / 1000;
    loopDelay.disable();
    const cpu = process.cpuUsage(cpu0);
    const server1 = cpuSeconds(job.extAuthzPid);
    const serverCpu = server1.user + server1.system - server0.user - server0.system;
    const parent1 = cpuSeconds(process.ppid);
    const redisCpu = (await redisCpuSeconds(redis)) - redis0;
    const machineCpu = machineBusySeconds() - machine0;
    // CPU used meanwhile by everything but ext_authz, the generator, this benchmark's control plane and Redis.
    const otherCpu = machineCpu - serverCpu - (cpu.user + cpu.system) / 1e6 - (parent1.user + parent1.system - parent0.user - parent0.system) - redisCpu;
    const sortedLatencies = Array.from(latencies.sort());
    const sortedLate = Array.from(late.sort());
    return {
      p50: percentile(sortedLatencies, 50),
      p99: percentile(sortedLatencies, 99),
      p999: percentile(sortedLatencies, 99.9),
      max: sortedLatencies[sortedLatencies.length - 1]!,
      lateP99: percentile(sortedLate, 99),
      achieved: total / elapsed,
      wrong,
      generatorCpuUs: (cpu.user + cpu.system) / total,
      generatorLoopDelayP99: loopDelay.percentile(99) / 1e6,
      serverCpuShare: serverCpu / elapsed,
      otherCpuShare: Math.max(0, otherCpu) / elapsed,
    };
  }

  const selected = scenarios.filter((scenario) => !job.only || scenario.name.startsWith(job.only));

  // Each scenario's first answer: through node:http2 (grpc-status checked) and fully decoded.
  const samples = new Map<string, string>();
  for (const scenario of selected) {
    const first = await checking.call(scenario.frames());
    if (!useNode) await call(scenario.frames()); // and the lean client works too
    const decoded = decodeCheckResponse(first.message) as unknown as { status?: { code: number }; httpResponse: { case?: string; value?: { status?: { code: number } } } };
    const sample = `${decoded.httpResponse.case} grpc ${decoded.status?.code ?? 0}${decoded.httpResponse.value?.status ? ` http ${decoded.httpResponse.value.status.code}` : ""}`;
    if (first.allowed !== scenario.expectAllowed) throw new Error(`${scenario.name}: unexpected first decision (${sample})`);
    samples.set(scenario.name, sample);
  }

  type Scenario = (typeof selected)[number];
  type Latency = Awaited<ReturnType<typeof openLoop>> & { serverP99: string; redisForked: boolean };
  type Throughput = { done: number; wrong: number; wall: number; user: number; system: number; redisCpu: number };

  async function measureLatency(scenario: Scenario): Promise<Latency> {
    if (SETTLE_SECONDS > 0) await openLoop(scenario.frames, scenario.expectAllowed, SETTLE_SECONDS);
    const histogramBefore = await durationHistogram(job.adminPort);
    const forksBefore = await redisForks(redis);
    const latency = await openLoop(scenario.frames, scenario.expectAllowed);
    const redisForked = (await redisForks(redis)) > forksBefore;
    return { ...latency, serverP99: p99Bound(histogramBefore, await durationHistogram(job.adminPort)), redisForked };
  }

  async function measureThroughput(scenario: Scenario): Promise<Throughput> {
    await closedLoop(scenario.frames, scenario.expectAllowed, WARMUP_SECONDS);
    const cpuBefore = cpuSeconds(job.extAuthzPid);
    const redisBefore = await redisCpuSeconds(redis);
    const t0 = performance.now();
    const { done, wrong } = await closedLoop(scenario.frames, scenario.expectAllowed, SECONDS);
    const wall = (performance.now() - t0) / 1000;
    const cpuAfter = cpuSeconds(job.extAuthzPid);
    const redisCpu = (await redisCpuSeconds(redis)) - redisBefore;
    return { done, wrong, wall, user: cpuAfter.user - cpuBefore.user, system: cpuAfter.system - cpuBefore.system, redisCpu };
  }

  // Latency first, for every scenario (BENCH_SETTLE_SECONDS at the rate, not measured, then the
  // measured run), and the saturating closed loops after all of them: see the header.
  // BENCH_ORDER=mixed runs each scenario's closed loop right before its latency run instead.
  const latencies = new Map<string, Latency>();
  const throughputs = new Map<string, Throughput>();
  const mixed = process.env.BENCH_ORDER === "mixed";
  for (const scenario of selected) {
    if (mixed) throughputs.set(scenario.name, await measureThroughput(scenario));
    latencies.set(scenario.name, await measureLatency(scenario));
  }
  if (!mixed) for (const scenario of selected) throughputs.set(scenario.name, await measureThroughput(scenario));

  const results: ScenarioResult[] = [];
  for (const scenario of selected) {
    const latency = latencies.get(scenario.name)!;
    const t = throughputs.get(scenario.name)!;
    results.push({
      name: scenario.name,
      perSecond: t.done / t.wall,
      perCore: t.done / (t.user + t.system),
      userUsPerCheck: (t.user / t.done) * 1e6,
      systemUsPerCheck: (t.system / t.done) * 1e6,
      redisCpuPerCheckUs: (t.redisCpu / t.done) * 1e6,
      p50: latency.p50,
      p99: latency.p99,
      p999: latency.p999,
      max: latency.max,
      lateP99: latency.lateP99,
      serverP99: latency.serverP99,
      redisForked: latency.redisForked,
      generatorCpuUs: latency.generatorCpuUs,
      generatorLoopDelayP99: latency.generatorLoopDelayP99,
      serverCpuShare: latency.serverCpuShare,
      otherCpuShare: latency.otherCpuShare,
      achieved: latency.achieved,
      wrong: t.wrong + latency.wrong,
      sample: samples.get(scenario.name)!,
    });
  }
  for (const c of connections) c.close();
  checking.close();
  redis.disconnect();
  return results;
}

/**
 * ext_authz memory under fuzzed checks: is RSS growth a leak, or the heap's and allocator's
 * high-water mark?
 *
 *   node --expose-gc --import tsx bench/ext-authz-memory.ts
 *   REDIS_URL=redis://127.0.0.1:6379/12 node --expose-gc --import tsx bench/ext-authz-memory.ts   # on Redis
 *
 * The ext_authz server runs in this process (createExtAuthzServer on a MemoryCredentialStore, or
 * a RedisCredentialStore with REDIS_URL) and is sent MEMORY_CHECKS (default 30,000) fuzzed
 * CheckRequests over node:http2 (MEMORY_CONCURRENCY, default 32, in flight on 4 connections):
 * valid and unknown API keys, signed requests with fresh nonces (each one a 15-minute nonce
 * entry: state by design), random and hostile headers (up to 2,000, values up to 64 KiB, invalid
 * UTF-8), bodies up to 1 MiB and now and then 7 MiB, mutated and truncated protobuf, and new
 * api_ids (the scope cache is bounded). After every MEMORY_STEP (default 2,000) checks the heap is
 * collected (global.gc(), twice) and heapUsed, external + arrayBuffers and RSS are printed. A
 * leak shows as heapUsed growing step after step; a high-water mark as RSS rising early and then
 * staying flat while heapUsed returns to the same level.
 */
import * as http2 from "node:http2";
import { randomBytes } from "node:crypto";
import { buildStringToSign, connectRedis, sign, MemoryCredentialStore, redisReady, RedisCredentialStore, toSignableRequest, type CredentialStore } from "@apigw/shared";
import { createExtAuthzServer } from "../packages/ext-authz/src/index";
import { CHECK_METHOD_PATH, encodeCheckRequest } from "../packages/ext-authz/src/protocol";
import { TEST_MASTER_KEY } from "../test/support/environment";
import { buildCheckRequest, scopeConfig, writeScope, type SimpleCheckRequest } from "../test/support/extAuthzClient";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  process.stderr.write("run with node --expose-gc\n");
  process.exit(1);
}
const TOTAL = Number(process.env.MEMORY_CHECKS ?? 30_000);
const STEP = Number(process.env.MEMORY_STEP ?? 2_000);
const CONCURRENCY = Number(process.env.MEMORY_CONCURRENCY ?? 32);
const API = "memory-api";
const API_KEY = "apip_" + "ab".repeat(32);
const APP_KEY = "204999999";
const APP_SECRET = "memory-secret-memory-secret-0123";

/** mulberry32: a reproducible fuzz. */
let seed = 0x5eed_0009;
function rnd(): number {
  let t = (seed = (seed + 0x6d2b79f5) >>> 0);
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

function text(max: number): string {
  const pieces = ["a", "Z", "0", "-", "%", " ", "é", "中", "😀", "\u0000", "\ufffd", "=", "&", "/"];
  let out = "";
  const n = int(max) + 1;
  for (let i = 0; i < n; i++) out += pick(pieces);
  return out;
}

function signedHeaders(): Record<string, string> {
  const headers: Record<string, string> = {
    accept: "application/json",
    "x-ca-key": APP_KEY,
    "x-ca-timestamp": String(Date.now()),
    "x-ca-nonce": randomBytes(12).toString("hex"),
    "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
  };
  const parsed = toSignableRequest({ method: "GET", target: "/books", headers });
  if (!parsed.ok) throw new Error(parsed.error);
  headers["x-ca-signature"] = sign(buildStringToSign(parsed.value), APP_SECRET);
  if (rnd() < 0.2) headers["x-ca-signature"] = "AAAA"; // a wrong one now and then
  return headers;
}

/** Share of signed requests (0 to 0.15): each leaves a nonce for 15 minutes. */
const SIGNED_SHARE = Math.min(0.15, Number(process.env.MEMORY_SIGNED_SHARE ?? 0.15));
let kind = "";

/** One fuzzed CheckRequest (protobuf bytes); `kind` names what it is. */
function fuzzed(): Buffer {
  const ctx = { api_id: rnd() < 0.05 ? `api-${int(5000)}` : API, stage: rnd() < 0.02 ? "PRE" : "RELEASE" };
  const r = rnd();
  let request: SimpleCheckRequest;
  const signed = r >= 0.35 && r < 0.5 && rnd() < SIGNED_SHARE / 0.15;
  kind = r < 0.25 || (r >= 0.35 && r < 0.5 && !signed) ? "key" : r < 0.35 ? "unknown key" : r < 0.5 ? "signed" : r < 0.7 ? "headers" : r < 0.85 ? "body" : "malformed";
  if (kind === "key") request = { path: "/books", headers: { "api-key": API_KEY }, contextExtensions: ctx };
  else if (r < 0.35) request = { path: "/books", headers: { "api-key": "apip_" + randomBytes(32).toString("hex") }, contextExtensions: ctx };
  else if (r < 0.5) request = { path: "/books", headers: signedHeaders(), contextExtensions: ctx };
  else if (r < 0.7) {
    const headers: Record<string, string> = {};
    const n = rnd() < 0.1 ? 2000 : int(40);
    for (let i = 0; i < n; i++) headers[`x-${int(1e6)}`] = rnd() < 0.01 ? "v".repeat(64 * 1024) : text(30);
    request = { method: pick(["GET", "POST", "BREW", "DELETE"]), path: rnd() < 0.1 ? text(20) : `/books?${text(40)}`, headers, contextExtensions: ctx };
  } else if (r < 0.85) {
    const size = rnd() < 0.02 ? 7 * 1024 * 1024 : int(1024 * 1024);
    request = { method: "POST", path: "/upload", headers: { "api-key": API_KEY, "content-type": "application/octet-stream" }, rawBody: randomBytes(size), contextExtensions: ctx };
  } else {
    // Malformed: a valid request mutated, truncated, or with invalid UTF-8 in a header.
    const bytes = encodeCheckRequest(buildCheckRequest({ path: "/books", headers: { "api-key": API_KEY, "x-note": "zqzq" }, contextExtensions: ctx }));
    const k = rnd();
    if (k < 0.3) return bytes.subarray(0, int(bytes.length));
    if (k < 0.6) {
      for (let i = 0; i < 4; i++) bytes[int(bytes.length)] = int(256);
      return bytes;
    }
    const at = bytes.indexOf("zqzq");
    Buffer.from([0xff, 0xfe, 0xc0, 0x80]).copy(bytes, at);
    return bytes;
  }
  return encodeCheckRequest(buildCheckRequest(request));
}

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

function call(session: http2.ClientHttp2Session, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": CHECK_METHOD_PATH, "content-type": "application/grpc", te: "trailers" });
    let status = "?";
    stream.on("response", (headers) => headers["grpc-status"] !== undefined && (status = String(headers["grpc-status"])));
    stream.on("trailers", (trailers) => (status = String(trailers["grpc-status"])));
    stream.on("data", () => {});
    stream.on("error", (error: NodeJS.ErrnoException) => (status = `error ${error.message}`));
    stream.on("close", () => resolve(status === "?" ? `closed rst=${stream.rstCode}` : status));
    stream.end(body);
  });
}

const mib = (n: number) => (n / 1024 / 1024).toFixed(1);

async function main(): Promise<void> {
  let store: CredentialStore;
  if (process.env.REDIS_URL) {
    const redis = connectRedis({ url: process.env.REDIS_URL });
    await redisReady(redis);
    store = new RedisCredentialStore(redis);
  } else store = new MemoryCredentialStore();
  await writeScope(
    store,
    TEST_MASTER_KEY,
    scopeConfig(API, "RELEASE", {
      accepts: { apiKey: { in: "header", name: "API-Key" }, appAuth: { signature: true, appCode: "HEADER", signatureMethods: ["HmacSHA256"], forceNonceCheck: false } } as never,
    }),
    {
      apiKeys: [{ raw: API_KEY, key: { name: "memory", status: "active", expiresAt: null } }],
      apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, app: { appId: "app-m", name: "m", status: "ENABLED", extInfo: null, authorizationExpiresAt: null } }],
    },
  );
  const server = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
  const sessions = await Promise.all(
    Array.from({ length: 4 }, () => {
      // maxSessionMemory (MB): several bodies of up to 7 MiB in flight per connection.
      const s = http2.connect(`http://127.0.0.1:${server.port}`, { maxSessionMemory: 1024 });
      s.on("error", () => {});
      return new Promise<http2.ClientHttp2Session>((resolve) => s.once("connect", () => resolve(s)));
    }),
  );

  const statuses = new Map<string, number>();
  const sample = (done: number) => {
    gc!();
    gc!();
    const m = process.memoryUsage();
    process.stdout.write(
      `${String(done).padStart(6)} checks  heapUsed ${mib(m.heapUsed).padStart(6)} MiB  heapTotal ${mib(m.heapTotal).padStart(6)}  external+arrayBuffers ${mib(m.external + m.arrayBuffers).padStart(6)}  rss ${mib(m.rss).padStart(6)} MiB\n`,
    );
    return m;
  };
  const samples = [sample(0)];
  let sent = 0;
  let done = 0;
  const started = Date.now();
  while (done < TOTAL) {
    const target = Math.min(TOTAL, done + STEP);
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, worker) => {
        while (sent < target) {
          sent++;
          const body = frame(fuzzed());
          const what = `${kind}:${await call(sessions[worker % sessions.length]!, body)}`;
          statuses.set(what, (statuses.get(what) ?? 0) + 1);
          done++;
        }
      }),
    );
    samples.push(sample(done));
  }
  const first = samples[1]!;
  const last = samples[samples.length - 1]!;
  const half = samples[Math.floor(samples.length / 2)]!;
  process.stdout.write(
    `\n${done} checks in ${((Date.now() - started) / 1000).toFixed(1)} s; grpc-status counts ${JSON.stringify(Object.fromEntries(statuses))}\n` +
      `heapUsed after GC: ${mib(first.heapUsed)} MiB after the first step, ${mib(half.heapUsed)} at half, ${mib(last.heapUsed)} at the end; ` +
      `rss ${mib(first.rss)} → ${mib(half.rss)} → ${mib(last.rss)} MiB\n`,
  );
  for (const s of sessions) s.close();
  await server.close(1000);
  await store.close();
}

void main();

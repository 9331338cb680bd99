import { expect } from "chai";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import type { Server as HttpServer } from "node:http";
import type { Redis } from "ioredis";
import { create } from "@bufbuild/protobuf";
import {
  buildStringToSign,
  connectRedis,
  redisReady,
  RedisCredentialStore,
  scopeField,
  sign,
  toSignableRequest,
  type ProjectedApplication,
  type ScopeConfig,
} from "@apigw/shared";
import {
  checkSchemas,
  createExtAuthzAdminServer,
  createExtAuthzRegistry,
  createExtAuthzServer,
  storeReadiness,
  type ExtAuthzServer,
} from "../../packages/ext-authz/src/index";
import { TEST_MASTER_KEY } from "../support/environment";
import { ExtAuthzClient, scopeConfig, writeScope, type SimpleCheckResult } from "../support/extAuthzClient";

/*
 * ext_authz when things go wrong: malformed input always gets a 4xx decision (never a broken
 * stream), corrupt store data a 500, and an unreachable Redis a 503 (or an allow with FAIL_OPEN)
 * followed by recovery on its own. The outage uses a Redis server of its own on a free port
 * (started and shut down here), never the shared one.
 */

const REDIS_URL = process.env.EXT_AUTHZ_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3";
const API = "reading-list";
const CTX = { api_id: API, stage: "RELEASE" };
const API_KEY = "apip_" + "ef".repeat(32);
const APP_KEY = "204000001";
const APP_SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-0123";
const PRINTABLE = /^[\x20-\x7e]*$/;

const APP: ProjectedApplication = { appId: "app-9", name: "nine", status: "ENABLED", extInfo: null, authorizationExpiresAt: null };

function expectDecision(result: SimpleCheckResult, status: number, code: string) {
  expect(result.allowed, JSON.stringify(result.json)).to.equal(false);
  expect(result.status).to.equal(status);
  expect(result.json?.code).to.equal(code);
  expect(result.headers["x-ca-error-code"]).to.equal(code);
  expect(result.headers["x-ca-error-message"]).to.match(PRINTABLE);
  expect(result.headers["x-ca-request-id"]).to.be.a("string").and.not.equal("");
}

/** Signs a request by hand (for inputs the official client will not produce). */
function signedHeaders(target: string, extra: Record<string, string> = {}, method = "GET", body?: string): Record<string, string> {
  const headers: Record<string, string> = {
    accept: "application/json",
    "x-ca-key": APP_KEY,
    "x-ca-timestamp": String(Date.now()),
    "x-ca-nonce": randomUUID(),
    "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
    ...extra,
  };
  const parsed = toSignableRequest({ method, target, headers, body });
  if (!parsed.ok) throw new Error(parsed.error);
  headers["x-ca-signature"] = sign(buildStringToSign(parsed.value), APP_SECRET);
  return headers;
}

describe("ext_authz: malformed input", function () {
  let redis: Redis;
  let store: RedisCredentialStore;
  let server: ExtAuthzServer;
  let client: ExtAuthzClient;

  before(async () => {
    redis = connectRedis({ url: REDIS_URL }) as Redis;
    await redisReady(redis);
    store = new RedisCredentialStore(redis);
    server = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
    client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
  });

  after(async () => {
    client?.close();
    await server?.close(1000);
    await redis?.flushdb();
    await store?.close();
  });

  beforeEach(async () => {
    await redis.flushdb();
    const accepts: ScopeConfig["accepts"] = {
      apiKey: { in: "query", name: "apikey" },
      appAuth: { signature: true, signatureMethods: ["HmacSHA256"], appCode: "HEADER", forceNonceCheck: false },
    };
    await writeScope(store, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", { accepts }), {
      apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
      apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, app: APP }],
    });
  });

  it("an unknown HTTP method is 405", async () => {
    expectDecision(await client.check({ method: "BREW", path: "/books", contextExtensions: CTX }), 405, "I405UM");
    expectDecision(await client.check({ method: "get", path: "/books", contextExtensions: CTX }), 405, "I405UM");
  });

  it("an empty CheckRequest (no attributes at all) is a 4xx decision", async () => {
    const result = await client.checkMessage(create(checkSchemas().request, {}));
    expect(result.allowed).to.equal(false);
    expect(result.status).to.be.within(400, 499);
  });

  it("huge headers, too many headers and a huge path are refused with 431 / 414", async () => {
    expectDecision(await client.check({ path: "/books", headers: { "x-junk": "j".repeat(300 * 1024) }, contextExtensions: CTX }), 431, "I431HL");
    const many: Record<string, string> = {};
    for (let i = 0; i < 1500; i++) many[`x-h-${i}`] = "v";
    expectDecision(await client.check({ path: "/books", headers: many, contextExtensions: CTX }), 431, "I431HL");
    expectDecision(await client.check({ path: "/" + "p".repeat(20_000), contextExtensions: CTX }), 414, "I414UL");
    expectDecision(await client.check({ path: "books", contextExtensions: CTX }), 400, "I400RU");
  });

  it("garbage header values give ordinary denials; a garbage request id is replaced", async () => {
    const garbage = "\u0000\u0001\u00ff\ud7ff\uffff<script>";
    const result = await client.check({
      path: "/books",
      headers: { "x-ca-key": garbage, "x-ca-signature": garbage, "x-request-id": "bad id\u0000", authorization: garbage },
      contextExtensions: CTX,
    });
    expectDecision(result, 401, "A401AK");
    expect(result.headers["x-ca-request-id"]).to.match(/^[0-9a-f-]{36}$/);
    expectDecision(await client.check({ path: "/books", headers: { "x-ca-key": "k".repeat(10_000) }, contextExtensions: CTX }), 401, "A401AK");
    expectDecision(await client.check({ path: `/books?apikey=${"a".repeat(5000)}`, contextExtensions: CTX }), 401, "A401KY");
  });

  it("a malformed query string is 400 Invalid Request Uri with a printable message", async () => {
    const result = await client.check({ path: "/books?apikey=%zz&q=%E2%9C", contextExtensions: CTX });
    expectDecision(result, 400, "I400RU");
    expect(result.json!.message).to.match(/^Invalid Request Uri: invalid query string: malformed percent-encoding/);
    // Also on a signed request (the query is part of the string to sign).
    const signed = await client.check({ path: "/books?caf%C3=1", headers: signedHeaders("/books"), contextExtensions: CTX });
    expectDecision(signed, 400, "I400RU");
  });

  it("a malformed form body is 400 Invalid Body", async () => {
    const body = "title=%ZZ";
    const headers = { ...signedHeaders("/books"), "content-type": "application/x-www-form-urlencoded" };
    const result = await client.check({ method: "POST", path: "/books", headers, body, contextExtensions: CTX });
    expectDecision(result, 400, "I400BD");
    const binary = await client.check({ method: "POST", path: "/books", headers, rawBody: new Uint8Array([0x61, 0x3d, 0xff, 0xfe]), contextExtensions: CTX });
    expectDecision(binary, 400, "I400BD");
  });

  it("bad base64 in Content-MD5 or the signature is a 400, non-numeric timestamps 400 Invalid Timestamp", async () => {
    expectDecision(await client.check({ path: "/books", headers: { ...signedHeaders("/books"), "content-md5": "%%%%" }, contextExtensions: CTX }), 400, "A400MD");
    expectDecision(await client.check({ path: "/books", headers: { ...signedHeaders("/books"), "x-ca-signature": "***" }, contextExtensions: CTX }), 400, "A400SG");
    for (const timestamp of ["", "-1", "1e12", "0x10", "NaN", "9".repeat(40), " 1"]) {
      expectDecision(await client.check({ path: "/books", headers: { ...signedHeaders("/books"), "x-ca-timestamp": timestamp }, contextExtensions: CTX }), 400, "A400IT");
    }
  });

  it("an over-long or non-printable nonce is 400 Invalid Nonce", async () => {
    for (const nonce of ["n".repeat(300), "two words", "tab\there"]) {
      const headers = signedHeaders("/books", { "x-ca-nonce": nonce });
      expectDecision(await client.check({ path: "/books", headers, contextExtensions: CTX }), 400, "A400NI");
    }
  });

  it("non-ASCII in what is echoed back is percent-encoded, so every header value stays valid", async () => {
    const headers = signedHeaders("/b%C3%BCcher?t=%E2%9C%93", { "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp,x-name", "x-name": "Grüße" });
    const result = await client.check({ path: "/b%C3%BCcher?t=%E2%9C%93", headers: { ...headers, "x-name": "Grüsse" }, contextExtensions: CTX });
    expectDecision(result, 400, "A400SG");
    expect(result.json!.message).to.include("x-name:Gr%C3%BCsse#/b%C3%BCcher?t=%E2%9C%93");
  });

  it("a corrupt scope in the store is a 500 for that API only; the service keeps answering", async () => {
    await redis.hset(`apigw:scope:{broken:RELEASE}`, scopeField.config, "{not json");
    expectDecision(await client.check({ path: "/x", contextExtensions: { api_id: "broken", stage: "RELEASE" } }), 500, "S500IE");
    await redis.hset(`apigw:scope:{broken2:RELEASE}`, scopeField.config, "null");
    expectDecision(await client.check({ path: "/x", contextExtensions: { api_id: "broken2", stage: "RELEASE" } }), 500, "S500IE");
    expect((await client.check({ path: `/books?apikey=${API_KEY}`, contextExtensions: CTX })).allowed).to.equal(true);
  });

  it("bytes that are not a CheckRequest get a gRPC error; the server keeps serving", async () => {
    let failure: (Error & { code?: number }) | undefined;
    try {
      await client.checkBytes(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    } catch (error) {
      failure = error as Error & { code?: number };
    }
    expect(failure, "expected a gRPC error").to.not.equal(undefined);
    expect(failure!.code).to.be.a("number").and.not.equal(0);
    expect((await client.check({ path: `/books?apikey=${API_KEY}`, contextExtensions: CTX })).allowed).to.equal(true);
  });

  it("a burst of mixed garbage is answered request by request", async () => {
    const requests = Array.from({ length: 60 }, (_, i) =>
      client.check({
        method: ["GET", "FOO", "POST", ""][i % 4],
        path: ["/books", "", "/books?%", "/" + "x".repeat(i * 500)][i % 4]!,
        headers: { "x-ca-key": String(i), "x-ca-timestamp": "abc", "content-md5": "!" },
        rawBody: new Uint8Array(i),
        contextExtensions: i % 3 ? CTX : {},
      }),
    );
    const results = await Promise.all(requests);
    for (const r of results) {
      expect(r.allowed).to.equal(false);
      expect(r.status).to.be.within(400, 499);
    }
  });
});

/** A free TCP port on loopback. */
async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function until(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("ext_authz: Redis unreachable", function () {
  this.timeout(60_000);
  let port: number;
  let redis: Redis;
  let store: RedisCredentialStore;
  let closed: ExtAuthzServer;
  let open: ExtAuthzServer;
  let closedClient: ExtAuthzClient;
  let openClient: ExtAuthzClient;
  let admin: HttpServer;
  let adminUrl: string;
  /** The standalone process (main.ts) on the same Redis, with auto-pipelining on. */
  let processChild: ChildProcess | undefined;
  let processClient: ExtAuthzClient;
  let processAdminUrl: string;
  let processOutput = "";
  const { registry, metrics } = createExtAuthzRegistry();

  const startRedis = () =>
    execFileSync("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes", "--logfile", ""], {
      stdio: "ignore",
    });
  const stopRedis = () => {
    try {
      execFileSync("redis-cli", ["-p", String(port), "SHUTDOWN", "NOSAVE"], { stdio: "ignore" });
    } catch {
      // redis-cli exits non-zero when the server closes the connection on SHUTDOWN
    }
  };
  const redisAnswers = () => {
    try {
      return execFileSync("redis-cli", ["-p", String(port), "PING"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() === "PONG";
    } catch {
      return false;
    }
  };

  async function writeKeyScope() {
    await writeScope(store, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", { accepts: { apiKey: { in: "header", name: "API-Key" } } }), {
      apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
    });
  }
  const keyed = { path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX };
  const ready = async () => (await fetch(`${adminUrl}/ready`)).status;

  before(async () => {
    port = await freePort();
    startRedis();
    await until(async () => redisAnswers(), 10_000, "the test Redis to start");
    redis = connectRedis({ url: `redis://127.0.0.1:${port}/0`, commandTimeoutMs: 300 }) as Redis;
    redis.on("error", () => {}); // expected during the outage
    await redisReady(redis);
    store = new RedisCredentialStore(redis);
    closed = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, metrics, options: { port: 0, host: "127.0.0.1" } });
    open = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1", failOpen: true } });
    closedClient = new ExtAuthzClient(`127.0.0.1:${closed.port}`);
    openClient = new ExtAuthzClient(`127.0.0.1:${open.port}`);
    admin = createExtAuthzAdminServer(registry, storeReadiness(store));
    await new Promise<void>((resolve) => admin.listen(0, "127.0.0.1", resolve));
    adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;

    const grpcPort = await freePort();
    const adminPort = await freePort();
    processChild = spawn(process.execPath, ["--import", "tsx", "packages/ext-authz/src/main.ts"], {
      env: {
        ...process.env,
        EXT_AUTHZ_PORT: String(grpcPort),
        EXT_AUTHZ_ADMIN_PORT: String(adminPort),
        EXT_AUTHZ_HOST: "127.0.0.1",
        REDIS_URL: `redis://127.0.0.1:${port}/0`,
        REDIS_COMMAND_TIMEOUT_MS: "300",
        MASTER_KEY: TEST_MASTER_KEY,
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    processChild.stdout!.on("data", (chunk: Buffer) => (processOutput += chunk.toString()));
    processChild.stderr!.on("data", (chunk: Buffer) => (processOutput += chunk.toString()));
    processAdminUrl = `http://127.0.0.1:${adminPort}`;
    await until(async () => {
      try {
        return (await fetch(`${processAdminUrl}/health`)).status === 200;
      } catch {
        return false;
      }
    }, 20_000, "the ext_authz process to start");
    processClient = new ExtAuthzClient(`127.0.0.1:${grpcPort}`);
  });

  after(async () => {
    processClient?.close();
    if (processChild && processChild.exitCode === null) processChild.kill("SIGKILL");
    closedClient?.close();
    openClient?.close();
    await closed?.close(1000);
    await open?.close(1000);
    await new Promise<void>((resolve) => (admin ? admin.close(() => resolve()) : resolve()));
    await store?.close();
    if (port) stopRedis();
  });

  it("fails closed with 503 while Redis is down (fail-open answers OK), then recovers by itself", async () => {
    await writeKeyScope();
    expect((await closedClient.check(keyed)).allowed).to.equal(true);
    expect(await ready()).to.equal(200);
    expect((await (await fetch(`${adminUrl}/health`)).json()) as unknown).to.deep.equal({ status: "ok" });

    stopRedis();
    await until(async () => !redisAnswers(), 10_000, "the test Redis to stop");

    // Fail closed: a clear 503, answered at once, for every request (no queue).
    let outage: SimpleCheckResult | undefined;
    await until(async () => {
      outage = await closedClient.check(keyed);
      return outage.status === 503;
    }, 10_000, "a 503 decision");
    expectDecision(outage!, 503, "S503SU");
    expect(outage!.json!.message).to.equal("Authorization Service Unavailable: credential store unreachable");
    expect(outage!.grpcCode).to.equal(14);
    const started = Date.now();
    const burst = await Promise.all(Array.from({ length: 200 }, () => closedClient.check(keyed)));
    expect(burst.every((r) => r.status === 503)).to.equal(true);
    expect(Date.now() - started).to.be.lessThan(10_000);

    // Fail open: allowed, anonymous, flagged; spoofed identity still stripped.
    const degraded = await openClient.check({ ...keyed, headers: { ...keyed.headers, "x-ca-app-id": "spoof" } });
    expect(degraded.allowed).to.equal(true);
    expect(degraded.headers).to.deep.equal({ "x-apigw-credential": "NONE", "x-apigw-auth-degraded": "true" });
    expect(degraded.headersToRemove).to.include("x-ca-app-id");
    expect(degraded.dynamicMetadata.degraded).to.equal("true");

    expect(await ready()).to.equal(503);
    expectDecision(await processClient.check(keyed), 503, "S503SU");
    expect((await fetch(`${processAdminUrl}/ready`)).status).to.equal(503);
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(text).to.match(/apigw_ext_authz_store_errors_total \d+/);
    expect(Number(/apigw_ext_authz_store_errors_total (\d+)/.exec(text)![1])).to.be.greaterThan(200);
    expect(text).to.include('apigw_ext_authz_checks_total{result="denied",code="S503SU",credential="NONE"}');

    // Redis returns (empty: it kept nothing); the connection recovers on its own.
    startRedis();
    await until(async () => {
      try {
        await store.ping();
        return true;
      } catch {
        return false;
      }
    }, 15_000, "the store to reconnect");
    // Empty: not "API Not Found" (a client does not retry a 404) but 503, until the projection is back.
    const empty = await closedClient.check(keyed);
    expectDecision(empty, 503, "S503PI");
    expect(empty.headers["retry-after"]).to.equal("1");
    expect(await ready()).to.equal(503);
    await writeKeyScope(); // what the projection writes, with its marker
    expect((await closedClient.check(keyed)).allowed).to.equal(true);
    const back = await openClient.check(keyed);
    expect(back.allowed).to.equal(true);
    expect(back.headers["x-apigw-credential"]).to.equal("API_KEY");
    expect(await ready()).to.equal(200);
    await until(async () => (await processClient.check(keyed)).allowed, 15_000, "the process to recover");
    expect((await fetch(`${processAdminUrl}/ready`)).status).to.equal(200);
  });

  it("the standalone process serves checks, /metrics, logs no credentials, and stops cleanly on SIGTERM", async () => {
    await writeKeyScope();
    const ok = await processClient.check(keyed);
    expect(ok.allowed).to.equal(true);
    expect(ok.headers["x-apigw-consumer"]).to.equal("k");
    expectDecision(await processClient.check({ ...keyed, headers: { "api-key": "apip_wrong_but_logged_nowhere" } }), 401, "A401KY");
    const metricsText = await (await fetch(`${processAdminUrl}/metrics`)).text();
    expect(metricsText).to.include('apigw_ext_authz_checks_total{result="allowed",code="",credential="API_KEY"}');
    expect(metricsText).to.include("apigw_ext_authz_process_cpu_seconds_total");
    expect((await fetch(`${processAdminUrl}/nope`)).status).to.equal(404);
    const exited = new Promise<number | null>((resolve) => processChild!.once("exit", (code) => resolve(code)));
    processChild!.kill("SIGTERM");
    expect(await exited).to.equal(0);
    expect(processOutput).to.include("ext_authz started");
    expect(processOutput).to.include("Redis connection");
    expect(processOutput).to.not.include(API_KEY);
    expect(processOutput).to.not.include("apip_wrong_but_logged_nowhere");
  });

  it("a store that was never reachable (closed port) denies with 503 from the first request", async () => {
    const deadPort = await freePort();
    const deadRedis = connectRedis({ url: `redis://127.0.0.1:${deadPort}/0`, commandTimeoutMs: 200 }) as Redis;
    deadRedis.on("error", () => {});
    const deadStore = new RedisCredentialStore(deadRedis);
    const dead = await createExtAuthzServer({ store: deadStore, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
    const deadClient = new ExtAuthzClient(`127.0.0.1:${dead.port}`);
    try {
      expectDecision(await deadClient.check(keyed), 503, "S503SU");
      expectDecision(await deadClient.check({ ...keyed, headers: signedHeaders("/books") }), 503, "S503SU");
    } finally {
      deadClient.close();
      await dead.close(1000);
      await deadStore.close();
    }
  });
});

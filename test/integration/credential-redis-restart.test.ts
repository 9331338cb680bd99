import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import type { AddressInfo } from "node:net";
import type { Server as HttpServer } from "node:http";
import { Registry } from "prom-client";
import { connectRedis, MemoryCredentialStore, redisReady, RedisCredentialStore, type CredentialStore } from "@apigw/shared";
import { CredentialProjector } from "../../packages/control-plane/src/projection/projector";
import { createExtAuthzAdminServer, createExtAuthzServer, storeReadiness, type ExtAuthzServer } from "../../packages/ext-authz/src/index";
import { post } from "../support/client";
import { TEST_MASTER_KEY } from "../support/environment";
import { ExtAuthzClient, type SimpleCheckResult } from "../support/extAuthzClient";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { sleep, waitFor } from "../support/wait";

/*
 * "Survive faults", the Redis half: a real redis-server of its own (a child process on a port of
 * its own, no persistence) is killed and a fresh, empty one started on the same port while the
 * projector (Postgres → Redis) and ext_authz (over real gRPC, with its own Redis connection, as
 * in production) keep running. ext_authz must answer 503 (never 404 or 401: a client does not
 * retry those) until the projector has noticed the empty Redis and rebuilt it, then allow again,
 * with no restart of either. The time from Redis being back to the first allowed check is printed.
 */

const PORT = Number(process.env.REDIS_RESTART_TEST_PORT ?? 25_501);
const API = "restart-books";
const CTX = { api_id: API, stage: "RELEASE" };

function startRedis(): ChildProcess {
  const child = spawn("redis-server", ["--port", String(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", ""], {
    stdio: "ignore",
  });
  child.on("error", () => {});
  return child;
}

function stopRedis(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** True when something answers PING on the port (a raw RESP exchange, independent of the clients under test). */
function redisAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(PORT, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

/** A gate the test closes to hold the projector's next full rebuild at its start. */
class Gate {
  private open: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;
  held = 0;
  close(): void {
    this.open = new Promise((resolve) => (this.release = resolve));
  }
  openNow(): void {
    this.release?.();
    this.release = undefined;
  }
  async pass(): Promise<void> {
    this.held++;
    await this.open;
  }
}

describe("credential store: Redis restarted empty", function () {
  this.timeout(90_000);
  let redisChild: ChildProcess | undefined;
  let projectorStore: RedisCredentialStore;
  let extAuthzStore: RedisCredentialStore;
  let projector: CredentialProjector;
  let server: ExtAuthzServer;
  let client: ExtAuthzClient;
  let admin: HttpServer;
  let adminUrl: string;
  const gate = new Gate();
  let apiKey: string;

  const check = () => client.check({ path: "/books", headers: { "x-api-key": apiKey }, contextExtensions: CTX });
  const ready = async () => (await fetch(`${adminUrl}/ready`)).json() as Promise<{ status: string; checks: { name: string; ok: boolean }[] }>;

  /** What a client may get while Redis is down or being rebuilt: 503 (retryable), or allowed; never a 4xx. */
  function expectRetryableOrAllowed(result: SimpleCheckResult, seen: Map<string, number>): void {
    const key = result.allowed ? "allowed" : `${result.status} ${result.json?.code}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (result.allowed) return;
    expect(result.status, `a check during the restart: ${key}`).to.equal(503);
    expect(["S503SU", "S503PI"]).to.include(result.json?.code);
    expect(result.headers["retry-after"]).to.equal("1");
  }

  before(async () => {
    redisChild = startRedis();
    await waitFor("the test Redis to start", async () => ((await redisAnswers()) ? true : undefined), 10_000, 50);
    const url = `redis://127.0.0.1:${PORT}/0`;
    projectorStore = new RedisCredentialStore(connectRedis({ url }));
    extAuthzStore = new RedisCredentialStore(connectRedis({ url, commandTimeoutMs: 300 }));
    for (const store of [projectorStore, extAuthzStore]) store.redis.on("error", () => {}); // expected during the restarts
    await Promise.all([redisReady(projectorStore.redis), redisReady(extAuthzStore.redis)]);
    // The projector's store, with its full rebuilds passing a gate the test can close (the store itself is real).
    const gated = new Proxy(projectorStore, {
      get(target, prop, receiver) {
        if (prop === "beginProjection") {
          return async (token: string) => {
            await gate.pass();
            return target.beginProjection(token);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    projector = new CredentialProjector({ knex: harness().database.knex, database: harness().database, store: gated, logger: harness().logger, metrics: new Registry() });
    server = await createExtAuthzServer({ store: extAuthzStore, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
    client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
    admin = createExtAuthzAdminServer(new Registry(), storeReadiness(extAuthzStore));
    await new Promise<void>((resolve) => admin.listen(0, "127.0.0.1", resolve));
    adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
  });

  after(async () => {
    gate.openNow();
    client?.close();
    await server?.close(500);
    await new Promise<void>((resolve) => (admin ? admin.close(() => resolve()) : resolve()));
    await projector?.stop();
    await projectorStore?.close();
    await extAuthzStore?.close();
    await stopRedis(redisChild);
  });

  it("marks a projection complete only when the store kept the rebuild's token (Redis and in-process store)", async () => {
    const memory = new MemoryCredentialStore();
    for (const store of [extAuthzStore, memory] as CredentialStore[]) {
      await store.beginProjection("t-1");
      await store.beginProjection("t-2"); // another replica rebuilding at the same time
      expect(await store.completeProjection("t-1", "one")).to.equal(true);
      expect(await store.projectionMarker()).to.equal("one");
      expect(await store.completeProjection("t-1", "again"), "a token is used once").to.equal(false);
      expect(await store.completeProjection("t-2", "two")).to.equal(true);
      expect(await store.projectionMarker()).to.equal("two");
      expect(await store.completeProjection("never-begun", "x")).to.equal(false);
    }
    // The store loses its data while a rebuild runs: that rebuild does not mark it complete.
    await extAuthzStore.beginProjection("t-3");
    await extAuthzStore.redis.flushall(); // this test's own redis-server
    expect(await extAuthzStore.completeProjection("t-3", "three")).to.equal(false);
    expect(await extAuthzStore.projectionMarker()).to.equal(null);
    await memory.close();
  });

  it("answers 503 (never 404) until the projector has rebuilt the empty Redis, then allows again by itself", async () => {
    const api = restApi(API, { policies: [{ name: "api-key-auth", version: "v1", params: { key: "X-API-Key", in: "header" } }] });
    expect((await post("/rest-apis", api)).status).to.equal(201);
    const key = await post(`/rest-apis/${API}/api-keys`, {});
    expect(key.status, key.text).to.equal(201);
    apiKey = key.body.apiKey.apiKey as string;
    await projector.start();
    expect((await check()).allowed, "allowed once projected").to.equal(true);
    expect((await ready()).status).to.equal("ready");
    expect(projector.status().lagging).to.equal(false);

    // 1. Redis killed and a fresh, empty one started on the same port; the projector's rebuild is
    //    held at its start, so the window where ext_authz faces an empty Redis is observable.
    gate.close();
    const heldBefore = gate.held;
    await stopRedis(redisChild);
    redisChild = startRedis();
    await waitFor("the new Redis", async () => ((await redisAnswers()) ? true : undefined), 10_000, 20);
    const seen = new Map<string, number>();
    await waitFor("ext_authz facing the empty Redis", async () => {
      const result = await check();
      expectRetryableOrAllowed(result, seen);
      expect(result.allowed, "allowed from an empty Redis").to.equal(false);
      return result.json?.code === "S503PI" ? true : undefined;
    }, 15_000, 20);
    await waitFor("the projector to start rebuilding", () => (gate.held > heldBefore ? true : undefined), 15_000, 20);
    expect(projector.status().lagging, "the projection reports lagging while it rebuilds").to.equal(true);
    const notReady = await ready();
    expect(notReady.status).to.equal("not ready");
    expect(notReady.checks).to.deep.include({ name: "credential projection", ok: false, error: "no complete credential projection in the store (being rebuilt?)" });
    for (let i = 0; i < 20; i++) expectRetryableOrAllowed(await check(), seen);
    expect(seen.get("allowed") ?? 0).to.equal(0);

    gate.openNow();
    await waitFor("an allowed check", async () => {
      const result = await check();
      expectRetryableOrAllowed(result, seen);
      return result.allowed ? true : undefined;
    }, 15_000, 10);
    await waitFor("the projection caught up", () => (projector.status().lagging ? undefined : true), 5_000, 10);
    expect((await ready()).status).to.equal("ready");
    expect(seen.get("503 S503PI")).to.be.greaterThan(0);

    // 2. The same, not held: the time from Redis back to the first allowed check.
    const figures: number[] = [];
    for (let round = 0; round < 3; round++) {
      await stopRedis(redisChild);
      redisChild = startRedis();
      await waitFor("the new Redis", async () => ((await redisAnswers()) ? true : undefined), 10_000, 5);
      const back = performance.now();
      const during = new Map<string, number>();
      await waitFor("an allowed check", async () => {
        const result = await check();
        expectRetryableOrAllowed(result, during);
        return result.allowed ? true : undefined;
      }, 15_000, 5);
      figures.push(performance.now() - back);
      process.stdout.write(
        `      Redis restarted empty (round ${round + 1}): first allowed check ${Math.round(figures[round]!)} ms after Redis answered; meanwhile ${[...during].map(([k, n]) => `${k} ×${n}`).join(", ")}\n`,
      );
      await sleep(50);
    }
    expect(figures).to.have.length(3);
  });
});

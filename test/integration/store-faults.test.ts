import { execSync } from "node:child_process";
import { expect } from "chai";
import pg from "pg";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/controlPlane";
import { createLogger } from "../../packages/control-plane/src/observability/logger";
import { currentRevision } from "../../packages/control-plane/src/store/changes";
import { PgListener } from "../../packages/control-plane/src/store/pgListener";
import { TEST_DATABASE_URL, TEST_MASTER_KEY, USERS, testConfig } from "../support/environment";
import {
  ChildControlPlane,
  RouteWatcher,
  callAt,
  faultApi,
  faultApiPath,
  isUnavailableAnswer,
  readyStatus,
  waitReady,
  writeLoad,
  type LoadResult,
} from "../support/faults";
import { harness } from "../support/hooks";
import { TcpProxy } from "../support/tcpProxy";
import { sleep, waitFor } from "../support/wait";

/*
 * Postgres faults under a running control plane: a cut network (a TCP proxy in front of the shared
 * server), terminated backends, a real server restart (only when TEST_PG_RESTART_COMMAND is set:
 * the server is shared) and a control plane killed mid-write. Each time: no crash, no 500, every
 * acknowledged write stored, recovery without help, and the gateways get every change.
 */

const PG_RESTART_COMMAND = process.env.TEST_PG_RESTART_COMMAND;

/** Every answer was a 201 or a well-formed 503, and every 201 is in the store. */
async function expectNoLostWrite(result: LoadResult): Promise<void> {
  expect(result.unexpected, `answers other than 201 or 503 with Retry-After: ${JSON.stringify(result.unexpected.slice(0, 3))}`).to.deep.equal([]);
  expect([...result.statuses.keys()].filter((s) => s !== 201 && s !== 503)).to.deep.equal([]);
  expect(result.acknowledged.length).to.be.greaterThan(0);
  const stored = new Set(
    (await harness().database.knex("rest_apis").whereIn("handle", result.acknowledged).select("handle")).map((r: { handle: string }) => r.handle),
  );
  expect(result.acknowledged.filter((h) => !stored.has(h)), "acknowledged writes missing from the store").to.deep.equal([]);
}

async function metric(adminUrl: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(adminUrl + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.slice(name.length + 1)) : undefined;
}

/** Acknowledged writes since `since`: waits for `count` more. */
async function moreAcknowledged(result: LoadResult, since: number, count: number, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${count} more acknowledged writes`, () => (result.acknowledged.length >= since + count ? true : undefined), timeoutMs, 20);
}

/** The route paths of these APIs. */
const pathsOf = (names: string[]) => names.map(faultApiPath);

describe("store faults (Postgres)", function () {
  this.timeout(120_000);
  const cleanup: (() => Promise<void> | void)[] = [];
  before(function () {
    if (!TEST_DATABASE_URL) this.skip();
  });
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  it("answers 503 with Retry-After while the store is unreachable, then recovers by itself and resyncs what it missed", async () => {
    const url = new URL(TEST_DATABASE_URL!);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.start();
    cleanup.push(() => proxy.close());
    const cp: ControlPlane = await startControlPlane(testConfig({ DATABASE_URL: proxy.url(TEST_DATABASE_URL!) }));
    cleanup.push(() => cp.stop());
    const watcher = new RouteWatcher(`127.0.0.1:${cp.xdsPort}`, { id: "faults-proxy" });
    cleanup.push(() => watcher.close());

    expect((await callAt(cp.managementUrl, "POST", "/rest-apis", faultApi("cut-before"))).status).to.equal(201);
    await watcher.until("the API created before the cut", (p) => p.has(faultApiPath("cut-before")));

    await proxy.cut();
    // Writes and reads alike: 503 in the error shape with Retry-After, never 500.
    const during = [
      await callAt(cp.managementUrl, "POST", "/rest-apis", faultApi("cut-during")),
      await callAt(cp.managementUrl, "PUT", "/rest-apis/cut-before", faultApi("cut-before")),
      await callAt(cp.managementUrl, "GET", "/rest-apis"),
      await callAt(cp.managementUrl, "GET", "/rest-apis/cut-before"),
      await callAt(cp.managementUrl, "DELETE", "/rest-apis/cut-before"),
    ];
    for (const answer of during) {
      expect(answer.status, JSON.stringify(answer.body)).to.equal(503);
      expect(isUnavailableAnswer(answer), JSON.stringify(answer.body)).to.equal(true);
    }
    // A reload owed meanwhile (as after a reconnect) fails and is retried; /ready says so.
    cp.pipeline.requestFull();
    await waitFor("the pipeline's reload to fail", () => (cp.pipeline.health().failures > 0 ? true : undefined), 10_000);
    const ready = await fetch(cp.adminUrl + "/ready");
    expect(ready.status).to.equal(503);
    const checks = ((await ready.json()) as { checks: { name: string; ok: boolean }[] }).checks;
    expect(checks.find((c) => c.name === "database")?.ok).to.equal(false);
    expect(checks.find((c) => c.name === "gateway configuration")?.ok).to.equal(false);

    // Another writer commits while this control plane cannot hear the notification.
    expect((await callAt(harness().managementUrl, "POST", "/rest-apis", faultApi("cut-other"))).status).to.equal(201);
    // Nothing reached the store from the refused requests.
    expect(await harness().database.knex("rest_apis").where({ handle: "cut-during" }).first()).to.equal(undefined);

    await proxy.restore();
    await waitReady(cp.adminUrl);
    expect(cp.pipeline.health().failures).to.equal(0);
    // The full resync after reconnecting brings the change made during the gap.
    await watcher.until("the change another writer made during the cut", (p) => p.has(faultApiPath("cut-other")));
    expect((await callAt(cp.managementUrl, "POST", "/rest-apis", faultApi("cut-after"))).status).to.equal(201);
    await watcher.until("a change made after recovery", (p) => p.has(faultApiPath("cut-after")));
    expect([...watcher.paths]).to.include.members(pathsOf(["cut-before", "cut-other", "cut-after"]));

    // The metrics show the published revision caught up with the store's.
    const revision = await currentRevision(harness().database.knex);
    await waitFor("the published revision to reach the store's", async () =>
      (await metric(cp.adminUrl, `apigw_published_revision{group="default"}`)) === revision ? true : undefined,
    );
    expect(await metric(cp.adminUrl, "apigw_store_revision")).to.equal(revision);
  });

  it("notices a change-feed connection gone silent (no reset, no close) and reconnects", async () => {
    const url = new URL(TEST_DATABASE_URL!);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.start();
    cleanup.push(() => proxy.close());
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    cleanup.push(() => admin.end());
    const channel = `apigw_faults_${process.pid}`;
    const received: string[] = [];
    let reconnects = 0;
    const listener = new PgListener(proxy.url(TEST_DATABASE_URL!), channel, (p) => received.push(p), () => reconnects++, createLogger("silent", "test"), {
      client: { connectionTimeoutMillis: 300 },
      heartbeatMs: 100,
      heartbeatTimeoutMs: 200,
      retryInitialMs: 50,
      retryMaxMs: 200,
    });
    await listener.start();
    cleanup.push(() => listener.close());
    await admin.query("SELECT pg_notify($1, 'before')", [channel]);
    await waitFor("the first notification", () => (received.includes("before") ? true : undefined));

    proxy.freeze();
    await waitFor("the listener to give the silent connection up", () => (listener.connected ? undefined : true), 10_000);
    proxy.thaw();
    await waitFor("the listener to reconnect", () => (reconnects === 1 && listener.connected ? true : undefined), 10_000);
    await admin.query("SELECT pg_notify($1, 'after')", [channel]);
    await waitFor("a notification after reconnecting", () => (received.includes("after") ? true : undefined));
    expect(received).to.deep.equal(["before", "after"]);
  });

  it("survives pg_terminate_backend of every connection under write load without losing an acknowledged write", async () => {
    const name = `apigw-faults-${process.pid}`;
    const dbUrl = new URL(TEST_DATABASE_URL!);
    dbUrl.searchParams.set("application_name", name);
    const cp = await startControlPlane(testConfig({ DATABASE_URL: dbUrl.toString() }));
    cleanup.push(() => cp.stop());
    const watcher = new RouteWatcher(`127.0.0.1:${cp.xdsPort}`, { id: "faults-terminate" });
    cleanup.push(() => watcher.close());
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    cleanup.push(() => admin.end());

    const load = writeLoad(() => cp.managementUrl, `term-${process.pid}`, 4);
    cleanup.push(async () => void (await load.stop()));
    await moreAcknowledged(load.result, 0, 5);
    let listenerTerminated = false;
    for (let round = 0; round < 3; round++) {
      // Each round once the control plane has connected again (the first: the pool and the LISTEN connection).
      const rows = await waitFor(`the control plane's backends (round ${round + 1})`, async () => {
        const { rows } = await admin.query<{ query: string; terminated: boolean }>(
          "SELECT query, pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE application_name = $1",
          [name],
        );
        return rows.length > 0 ? rows : undefined;
      }, 10_000, 20);
      listenerTerminated ||= rows.some((r) => r.terminated && r.query.startsWith("LISTEN"));
      await sleep(150);
    }
    expect(listenerTerminated, "the LISTEN connection was among the terminated backends").to.equal(true);
    // It keeps accepting writes without help.
    await moreAcknowledged(load.result, load.result.acknowledged.length, 5);
    const result = await load.stop();
    await expectNoLostWrite(result);

    await waitReady(cp.adminUrl);
    await watcher.until("every acknowledged write", (p) => pathsOf(result.acknowledged).every((path) => p.has(path)));
    expect((await callAt(cp.managementUrl, "POST", "/rest-apis", faultApi("term-after"))).status).to.equal(201);
    await watcher.until("a change made after the terminations", (p) => p.has(faultApiPath("term-after")));
  });

  it("survives a real Postgres restart under write load (TEST_PG_RESTART_COMMAND)", async function () {
    if (!PG_RESTART_COMMAND) this.skip();
    const cp = harness();
    const watcher = new RouteWatcher(`127.0.0.1:${cp.xdsPort}`, { id: "faults-restart" });
    cleanup.push(() => watcher.close());
    const load = writeLoad(() => cp.managementUrl, `restart-${process.pid}`, 4);
    cleanup.push(async () => void (await load.stop()));
    await moreAcknowledged(load.result, 0, 5);

    execSync(PG_RESTART_COMMAND!, { stdio: "ignore", timeout: 60_000 });
    const back = performance.now();
    // The first write accepted after the server is back, and the moment ADS delivers it.
    let marker = 0;
    let accepted: string | undefined;
    while (!accepted) {
      const name = `restart-marker-${marker++}`;
      const answer = await callAt(cp.managementUrl, "POST", "/rest-apis", faultApi(name)).catch(() => undefined);
      if (answer?.status === 201) accepted = name;
      else {
        if (answer) expect(isUnavailableAnswer(answer), JSON.stringify(answer.body)).to.equal(true);
        await sleep(20);
      }
    }
    const firstWrite = performance.now() - back;
    await watcher.until("the first write after the restart", (p) => p.has(faultApiPath(accepted!)), 30_000);
    const delivered = performance.now() - back;
    process.stdout.write(`      recovery after a Postgres restart: first write ${firstWrite.toFixed(0)} ms, delivered by ADS ${delivered.toFixed(0)} ms\n`);

    await moreAcknowledged(load.result, load.result.acknowledged.length, 5);
    const result = await load.stop();
    await expectNoLostWrite(result);
    await waitReady(cp.adminUrl);
    await watcher.until("every acknowledged write", (p) => pathsOf(result.acknowledged).every((path) => p.has(path)));
  });

  it("keeps every acknowledged write when the control plane is killed mid-write, and serves them after a restart", async () => {
    const ports = { management: 25401, admin: 25402, xds: 25403, extAuthz: 25404 };
    const env = {
      DATABASE_URL: TEST_DATABASE_URL!,
      MASTER_KEY: TEST_MASTER_KEY,
      ADMIN_USER: USERS.admin.name,
      ADMIN_PASSWORD: USERS.admin.password,
      LOG_LEVEL: "warn",
    };
    const first = new ChildControlPlane(env, ports);
    cleanup.push(() => first.stop());
    await first.start();
    const load = writeLoad(() => first.managementUrl, `kill-${process.pid}`, 4, 0);
    cleanup.push(async () => void (await load.stop()));
    await moreAcknowledged(load.result, 0, 10);
    await first.kill();
    const result = await load.stop();
    await expectNoLostWrite(result);

    const second = new ChildControlPlane(env, ports);
    cleanup.push(() => second.stop());
    await second.start();
    const watcher = new RouteWatcher(second.xdsAddress, { id: "faults-kill" });
    cleanup.push(() => watcher.close());
    await watcher.until("every write acknowledged before the kill", (p) => pathsOf(result.acknowledged).every((path) => p.has(path)));
    expect((await callAt(second.managementUrl, "POST", "/rest-apis", faultApi("kill-after"))).status).to.equal(201);
    await watcher.until("a change made after the restart", (p) => p.has(faultApiPath("kill-after")));
    expect(await readyStatus(second.adminUrl)).to.equal(200);
  });
});

import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../../packages/control-plane/src/config";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/controlPlane";
import { writeTransaction } from "../../packages/control-plane/src/store/changes";
import { XDS_TYPE_URLS } from "../../packages/control-plane/src/xds";
import { BASE } from "../support/client";
import { apiWithOperations } from "../support/fixtures";
import { testConfig, USERS } from "../support/environment";
import { harness } from "../support/hooks";
import { waitFor } from "../support/wait";
import { connectSotw, decodeSotw, type SotwClient } from "../support/xdsClient";

type Json = Record<string, any>;
const ROUTES = "apigw-routes";
const WSO2_MAX_OPERATIONS = 1000;

/** The embedded store whatever the harness runs on: no DATABASE_URL. */
function embeddedConfig(dataDir: string): Config {
  return { ...testConfig({ DATA_DIR: dataDir }), DATABASE_URL: undefined };
}

async function call(cp: ControlPlane, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json; headers: Headers }> {
  const response = await fetch(cp.managementUrl + BASE + path, {
    method,
    headers: {
      Authorization: "Basic " + Buffer.from(`${USERS.admin.name}:${USERS.admin.password}`).toString("base64"),
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Json) : {}, headers: response.headers };
}

const ready = async (cp: ControlPlane) => (await fetch(`${cp.adminUrl}/ready`)).status;

/** An ADS client that keeps the latest route paths (path templates) of the gateway's RouteConfiguration. */
class Gateway {
  private readonly client: SotwClient;
  private paths = new Set<string>();

  constructor(cp: ControlPlane, id: string) {
    this.client = connectSotw(`127.0.0.1:${cp.xdsPort}`, { id, cluster: `${id}-gateway` });
    this.client.request(XDS_TYPE_URLS.route, [ROUTES]);
  }

  /** Reads responses (ACKing each) until `done` holds for the served paths. */
  async until(what: string, done: (paths: Set<string>) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.paths)) {
      if (Date.now() > deadline) throw new Error(`the gateway never saw ${what}`);
      const response = await this.client.next(Math.max(1, deadline - Date.now()));
      for (const resource of decodeSotw(response)) {
        if (resource.name !== ROUTES) continue;
        const paths = new Set<string>();
        for (const vhost of (resource.json as Json).virtual_hosts ?? []) {
          for (const route of vhost.routes ?? []) {
            const m = route.match ?? {};
            const path = m.path ?? m.prefix ?? m.path_match_policy?.typed_config?.path_template;
            if (path && !route.direct_response) paths.add(path);
          }
        }
        this.paths = paths;
      }
      this.client.ack(response);
    }
  }

  close(): void {
    this.client.close();
  }
}

// The last of the API's operations, and one its update adds.
const LAST = "/large/v1/res249/{id}";
const ADDED = "/large/v1/added";

/**
 * An API with WSO2's maximum of operations, then further writes: each answers 2xx and reaches a
 * gateway. Before the fix, the embedded store wedged on the write after such an API.
 */
async function largeApiThenWrites(cp: ControlPlane, gatewayId: string): Promise<void> {
  const gateway = new Gateway(cp, gatewayId);
  try {
    const created = await call(cp, "POST", "/rest-apis", apiWithOperations("large", WSO2_MAX_OPERATIONS));
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    expect(created.body.spec.operations).to.have.length(WSO2_MAX_OPERATIONS);
    await gateway.until("the large API", (paths) => paths.has(LAST));

    expect((await call(cp, "POST", "/rest-apis", apiWithOperations("small", 2))).status).to.equal(201);
    await gateway.until("the API created after it", (paths) => paths.has("/small/v1/res0/{id}"));

    const changed = apiWithOperations("large", WSO2_MAX_OPERATIONS);
    changed.spec.operations[0] = { method: "GET", path: "/added" };
    expect((await call(cp, "PUT", "/rest-apis/large", changed)).status).to.equal(200);
    await gateway.until("the large API's update", (paths) => paths.has(ADDED) && paths.has(LAST));

    expect((await call(cp, "DELETE", "/rest-apis/large")).status).to.equal(200);
    await gateway.until("the large API's deletion", (paths) => !paths.has(LAST) && !paths.has(ADDED) && paths.has("/small/v1/res0/{id}"));

    expect((await call(cp, "POST", "/rest-apis", apiWithOperations("after", 2))).status).to.equal(201);
    await gateway.until("the API created after the deletion", (paths) => paths.has("/after/v1/res0/{id}"));
  } finally {
    gateway.close();
  }
}

/**
 * Runs a write transaction that, after writing, sends a statement deep enough to overflow the
 * embedded engine's stack (a row-value IN list of this length). PGlite itself would swallow the
 * exception and leave Postgres's transaction state broken; the store must fail the statement.
 */
async function faultInsideTransaction(cp: ControlPlane): Promise<Error & { status?: number; code?: string }> {
  const deep = Array.from({ length: 3000 }, (_, i) => `(${i}, 0)`).join(", ");
  try {
    await writeTransaction(cp.database.knex, async (tx, changes) => {
      await tx("plugins").insert({ name: "lost-in-fault", type: "cors", params: "{}", created_at: new Date(), updated_at: new Date() });
      changes.record({ entity: "plugin", id: "lost-in-fault", op: "create" });
      await tx.raw(`SELECT 1 WHERE (1, 1) IN (${deep})`);
    });
  } catch (error) {
    return error as Error & { status?: number; code?: string };
  }
  throw new Error("the faulty statement did not fail");
}

describe("an API with 1,000 operations (WSO2's limit)", function () {
  this.timeout(60_000);

  it("is stored and served, and later writes still reach the gateway, on the harness's store", async () => {
    await largeApiThenWrites(harness(), "large-harness");
  });

  it("answers 400 naming spec.operations beyond 1,000 operations, and stores nothing", async () => {
    const reply = await call(harness(), "POST", "/rest-apis", apiWithOperations("too-large", WSO2_MAX_OPERATIONS + 1));
    expect(reply.status).to.equal(400);
    expect(reply.body.errors.map((e: Json) => e.field)).to.include("spec.operations");
    expect((await call(harness(), "GET", "/rest-apis/too-large")).status).to.equal(404);
  });

  describe("on the embedded store (PGlite) in memory", () => {
    let cp: ControlPlane;
    before(async () => {
      cp = await startControlPlane(embeddedConfig("memory://"));
      expect(cp.database.kind).to.equal("embedded");
    });
    after(async () => {
      await cp?.stop();
    });

    it("is stored and served, and later writes still reach the gateway", async () => {
      await largeApiThenWrites(cp, "large-embedded");
    });

    it("stays usable after writes that fail inside their transaction", async () => {
      expect((await call(cp, "POST", "/rest-apis", apiWithOperations("taken", 300))).status).to.equal(201);
      // A unique violation raised by Postgres in the transaction, then a conflict found by the
      // route claim's query in the transaction: both roll back.
      const sameName = await call(cp, "POST", "/rest-apis", apiWithOperations("taken", 300));
      expect(sameName.status).to.equal(409);
      const sameRoutes = apiWithOperations("other", 300);
      sameRoutes.spec.context = "/taken/$version";
      expect((await call(cp, "POST", "/rest-apis", sameRoutes)).status).to.equal(409);
      expect((await call(cp, "GET", "/rest-apis/other")).status).to.equal(404);

      expect((await call(cp, "POST", "/rest-apis", apiWithOperations("next", 2))).status).to.equal(201);
      expect((await call(cp, "DELETE", "/rest-apis/taken")).status).to.equal(200);
      expect(await ready(cp)).to.equal(200);
    });

    it("reports a fault inside PGlite's engine on /ready, answers 503, then reopens with the committed data", async () => {
      expect((await call(cp, "POST", "/rest-apis", apiWithOperations("before-fault", 2))).status).to.equal(201);
      const failure = await faultInsideTransaction(cp);
      expect(failure.status).to.equal(503);
      expect(failure.code).to.equal("57P03");

      // While the database is reopened: not ready, and writes answer 503 with Retry-After.
      expect(await ready(cp)).to.equal(503);
      const during = await call(cp, "POST", "/rest-apis", apiWithOperations("during-fault", 2));
      if (during.status !== 201) {
        expect(during.status).to.equal(503);
        expect(during.headers.get("retry-after")).to.equal("5");
        expect(during.body.message).to.match(/embedded database/);
      }

      await waitFor("the embedded database to be reopened", async () => ((await ready(cp)) === 200 ? true : undefined), 30_000, 50);
      expect((await call(cp, "GET", "/rest-apis/before-fault")).status).to.equal(200);
      expect((await cp.database.knex("plugins").where({ name: "lost-in-fault" })).length).to.equal(0);

      const gateway = new Gateway(cp, "after-fault");
      try {
        expect((await call(cp, "POST", "/rest-apis", apiWithOperations("after-fault", 2))).status).to.equal(201);
        await gateway.until("the API created after the reopening", (paths) => paths.has("/after-fault/v1/res0/{id}") && paths.has("/before-fault/v1/res0/{id}"));
      } finally {
        gateway.close();
      }
    });
  });

  describe("on the embedded store (PGlite) in a data directory", () => {
    let dir: string;
    let cp: ControlPlane | undefined;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), "apigw-large-api-"));
    });
    after(async () => {
      await cp?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("keeps the large API across a restart and an engine fault, and writes after them still reach the gateway", async () => {
      cp = await startControlPlane(embeddedConfig(dir));
      expect((await call(cp, "POST", "/rest-apis", apiWithOperations("large", WSO2_MAX_OPERATIONS))).status).to.equal(201);
      await cp.stop();
      cp = undefined;

      cp = await startControlPlane(embeddedConfig(dir));
      const stored = await call(cp, "GET", "/rest-apis/large");
      expect(stored.status).to.equal(200);
      expect(stored.body.spec.operations).to.have.length(WSO2_MAX_OPERATIONS);
      const gateway = new Gateway(cp, "large-data-dir");
      try {
        await gateway.until("the large API after the restart", (paths) => paths.has(LAST));

        // A fault inside the engine: the directory is reopened with the committed data.
        expect((await faultInsideTransaction(cp)).status).to.equal(503);
        expect(await ready(cp)).to.equal(503);
        await waitFor("the embedded database to be reopened", async () => ((await ready(cp!)) === 200 ? true : undefined), 30_000, 50);
        expect((await call(cp, "GET", "/rest-apis/large")).body.spec.operations).to.have.length(WSO2_MAX_OPERATIONS);
        expect((await cp.database.knex("plugins").where({ name: "lost-in-fault" })).length).to.equal(0);

        expect((await call(cp, "POST", "/rest-apis", apiWithOperations("small", 2))).status).to.equal(201);
        await gateway.until("the API created after the restart", (paths) => paths.has("/small/v1/res0/{id}"));
        const changed = apiWithOperations("large", WSO2_MAX_OPERATIONS);
        changed.spec.operations[0] = { method: "GET", path: "/added" };
        expect((await call(cp, "PUT", "/rest-apis/large", changed)).status).to.equal(200);
        await gateway.until("the large API's update", (paths) => paths.has(ADDED));
        expect((await call(cp, "DELETE", "/rest-apis/large")).status).to.equal(200);
        await gateway.until("the large API's deletion", (paths) => !paths.has(LAST));
      } finally {
        gateway.close();
      }
    });
  });
});

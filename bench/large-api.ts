/**
 * Largest API benchmark: creates one RestAPI with N operations through the management API on each
 * store (embedded PGlite in memory, embedded PGlite in a data directory, and a Postgres server when
 * BENCH_DATABASE_URL is set), then a small API after it, and prints how long the create took, how
 * long until the gateway pipeline had published it, and whether the next write still worked.
 *
 *   BENCH_DATABASE_URL=postgres://… npm run bench:large-api
 *   BENCH_OPERATIONS=1000,2000,5000 …
 *
 * WSO2 allows 1,000 operations per API, and so does the management API (a larger one is a 400 on
 * spec.operations). To show what each store itself holds beyond that, BENCH_STORE_OPERATIONS
 * (default 2000,5000,10000) writes such APIs straight through the store's repository, then a
 * small one after each.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { loadConfig, type Config } from "../packages/control-plane/src/config";
import { startControlPlane, type ControlPlane } from "../packages/control-plane/src/controlPlane";
import { currentRevision, writeTransaction } from "../packages/control-plane/src/store/changes";
import { openDatabase } from "../packages/control-plane/src/store/database";
import { migrateToLatest } from "../packages/control-plane/src/store/migrate";
import { createApi } from "../packages/control-plane/src/store/repositories/restApis";
import type { RestApiRequest } from "../packages/control-plane/src/rest/schemas/restApi";
import { createLogger } from "../packages/control-plane/src/observability/logger";
import { apiWithOperations } from "../test/support/fixtures";

const sizes = (process.env.BENCH_OPERATIONS ?? "1000,2000,5000").split(",").map(Number);
const storeSizes = (process.env.BENCH_STORE_OPERATIONS ?? "2000,5000,10000").split(",").map(Number);
const url = process.env.BENCH_DATABASE_URL;
const ADMIN = { user: "admin", password: "bench-admin-secret" };
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function send(cp: ControlPlane, method: string, path: string, body?: unknown): Promise<number> {
  const { status } = await sendFor(cp, method, path, body);
  return status;
}

async function sendFor(cp: ControlPlane, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${cp.managementUrl}/api/management/v0.9${path}`, {
    method,
    headers: {
      Authorization: "Basic " + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString("base64"),
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

async function published(cp: ControlPlane): Promise<void> {
  const target = await currentRevision(cp.database.knex);
  while (cp.pipeline.publishedRevision < target) await new Promise((r) => setTimeout(r, 2));
  await cp.pipeline.settled();
}

async function measure(store: string, config: Config): Promise<void> {
  for (const operations of sizes) {
    const cp = await startControlPlane(config);
    try {
      const name = `large-${operations}`;
      const started = now();
      const reply = await sendFor(cp, "POST", "/rest-apis", apiWithOperations(name, operations));
      const created = reply.status;
      if (created !== 201) {
        console.log(`${store.padEnd(16)} ${String(operations).padStart(6)} operations: refused, ${created} ${reply.text.slice(0, 200)}`);
        continue;
      }
      const createMs = now() - started;
      await published(cp);
      const publishMs = now() - started;
      const next = await send(cp, "POST", "/rest-apis", apiWithOperations(`after-${operations}`, 2));
      const updated = await send(cp, "PUT", `/rest-apis/${name}`, apiWithOperations(name, operations - 1));
      const deleted = await send(cp, "DELETE", `/rest-apis/${name}`);
      await send(cp, "DELETE", `/rest-apis/after-${operations}`);
      const ok = created === 201 && next === 201 && updated === 200 && deleted === 200;
      console.log(
        `${store.padEnd(16)} ${String(operations).padStart(6)} operations: create ${created} in ${createMs.toFixed(0)} ms, ` +
          `published after ${publishMs.toFixed(0)} ms; then create ${next}, update ${updated}, delete ${deleted} → ${ok ? "ok" : "FAILED"}`,
      );
    } finally {
      await cp.stop();
    }
  }
}

/** The store alone, below the management API's validation (which caps operations at 1,000). */
async function measureStore(store: string, options: { url?: string; dataDir: string }): Promise<void> {
  const database = await openDatabase({ ...options, logger: createLogger("silent", "bench") });
  try {
    await migrateToLatest(database.knex);
    for (const operations of storeSizes) {
      const name = `store-${operations}`;
      const started = now();
      let outcome: string;
      try {
        await writeTransaction(database.knex, (tx, changes) => createApi(tx, changes, apiWithOperations(name, operations) as RestApiRequest, "bench"));
        outcome = `stored in ${(now() - started).toFixed(0)} ms`;
      } catch (error) {
        outcome = `failed: ${(error as Error).message.slice(-200)}`;
      }
      let next: string;
      try {
        await writeTransaction(database.knex, (tx, changes) => createApi(tx, changes, apiWithOperations(`${name}-next`, 2) as RestApiRequest, "bench"));
        next = "ok";
      } catch (error) {
        next = `failed: ${(error as Error).message.slice(-200)}`;
      }
      console.log(`${store.padEnd(16)} ${String(operations).padStart(6)} operations (store only): ${outcome}; next write ${next}`);
    }
  } finally {
    await database.close();
  }
}

const base = {
  MANAGEMENT_PORT: "0",
  ADMIN_PORT: "0",
  XDS_PORT: "0",
  EXT_AUTHZ_PORT: "0",
  HOST: "127.0.0.1",
  LOG_LEVEL: process.env.LOG_LEVEL ?? "silent",
  ADMIN_USER: ADMIN.user,
  ADMIN_PASSWORD: ADMIN.password,
  MASTER_KEY: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
  BODY_LIMIT: "10mb",
};

await measure("pglite memory://", loadConfig({ ...base, DATA_DIR: "memory://" }));
await measureStore("pglite memory://", { dataDir: "memory://" });
const dir = mkdtempSync(join(tmpdir(), "apigw-large-api-"));
try {
  await measure("pglite data dir", loadConfig({ ...base, DATA_DIR: dir }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
  await client.end();
  await measure("postgres", loadConfig({ ...base, DATABASE_URL: url, DATA_DIR: "memory://" }));
  await measureStore("postgres", { url, dataDir: "memory://" });
} else {
  console.log("postgres: set BENCH_DATABASE_URL to measure a Postgres server");
}
process.exit(0);

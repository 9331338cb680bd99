import pg from "pg";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/controlPlane";
import { TEST_DATABASE_URL, testConfig } from "./environment";

/**
 * One control plane for the whole run, on a freshly created schema; every test starts from empty
 * tables (truncated, not re-migrated, which keeps the suite fast). Revisions keep counting up
 * across tests, as they do in production: the running control plane's snapshots rely on it.
 */
let controlPlane: ControlPlane | undefined;

export function harness(): ControlPlane {
  if (!controlPlane) throw new Error("the control plane is not running");
  return controlPlane;
}

const TABLES = [
  "plugin_bindings",
  "plugins",
  "authorizations",
  "app_key_pairs",
  "applications",
  "subscriptions",
  "subscription_plans",
  "api_keys",
  "api_routes",
  "rest_apis",
  "change_log",
];

export async function resetStore(): Promise<void> {
  // The running control plane's own readers (projection, xDS) may hold snapshot locks at this
  // moment; TRUNCATE can then lose a deadlock. Retrying is safe: it is all or nothing.
  for (let attempt = 1; ; attempt++) {
    try {
      await harness().database.knex.raw(`TRUNCATE ${TABLES.join(", ")} CASCADE`);
      // TRUNCATE announces nothing: tell the running control plane's gateway pipeline to reload.
      harness().pipeline.requestFull();
      await harness().pipeline.settled();
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== "40P01" || attempt >= 5) throw error;
    }
  }
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60_000);
    if (TEST_DATABASE_URL) {
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
      await client.end();
    } else {
      process.stdout.write("note: TEST_DATABASE_URL is not set; running on embedded in-memory Postgres (PGlite)\n");
    }
    controlPlane = await startControlPlane(testConfig());
  },
  async beforeEach() {
    if (controlPlane) await resetStore();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(30_000);
    await controlPlane?.stop();
    controlPlane = undefined;
  },
};

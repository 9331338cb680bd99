/**
 * Translation benchmark: for 100, 1,000 and 10,000 APIs of 5 operations each, the time to read
 * the configuration from the store, translate it, validate and encode it (the xDS snapshot), and
 * the process's RSS afterwards. Each size runs in a fresh child process so RSS is its own.
 *
 *   npm run bench:translate                 (embedded Postgres)
 *   BENCH_DATABASE_URL=postgres://… npm run bench:translate
 */
import { spawnSync } from "node:child_process";
import pg from "pg";
import { createLogger } from "../packages/control-plane/src/observability/logger";
import { openDatabase } from "../packages/control-plane/src/store/database";
import { migrateToLatest } from "../packages/control-plane/src/store/migrate";
import { loadGatewayConfig } from "../packages/control-plane/src/store/reads/gatewayConfig";
import { translate } from "../packages/control-plane/src/translator";
import { buildSnapshot } from "../packages/control-plane/src/xds";
import { mb, seedApis } from "./seed";

const sizes = (process.env.BENCH_SIZES ?? "100,1000,10000").split(",").map(Number);
const url = process.env.BENCH_DATABASE_URL;

if (process.argv[2] === "child") {
  const size = Number(process.argv[3]);
  if (url) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
    await client.end();
  }
  const database = await openDatabase({ url, dataDir: "memory://", logger: createLogger("silent", "bench") });
  await migrateToLatest(database.knex);
  await seedApis(database.knex, size);
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const config = await loadGatewayConfig(database.knex);
  const t1 = performance.now();
  const resources = translate(config);
  const t2 = performance.now();
  const snapshot = buildSnapshot(resources);
  const t3 = performance.now();
  const routes = resources.routes.reduce((n, r) => n + ((r.resource.virtual_hosts as { routes: unknown[] }[]) ?? []).reduce((m, v) => m + v.routes.length, 0), 0);
  let bytes = 0;
  for (const map of Object.values(snapshot.resources)) for (const entry of map.values()) bytes += entry.value.length;
  // A second translation of the same state, warm (what a change costs without incremental reuse).
  const t4 = performance.now();
  buildSnapshot(translate(config), { previous: snapshot });
  const t5 = performance.now();
  const rss = process.memoryUsage().rss;
  console.log(
    [
      String(size).padStart(6),
      `read ${(t1 - t0).toFixed(0).padStart(5)} ms`,
      `translate ${(t2 - t1).toFixed(0).padStart(5)} ms`,
      `validate+encode ${(t3 - t2).toFixed(0).padStart(5)} ms`,
      `rebuild (warm, reuse) ${(t5 - t4).toFixed(0).padStart(5)} ms`,
      `${routes} Envoy routes, ${resources.clusters.length} clusters, ${mb(bytes)} encoded`,
      `RSS ${mb(rss)} (after seeding ${mb(rssBefore)})`,
    ].join(" | "),
  );
  await database.close();
  process.exit(0);
}

console.log(`translation benchmark (${url ? "Postgres server" : "embedded Postgres"}), 5 operations per API`);
console.log("  APIs | store read | translate | validate+encode | warm rebuild | size | RSS");
for (const size of sizes) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "--max-old-space-size=8192", import.meta.filename, "child", String(size)], {
    stdio: "inherit",
    env: process.env,
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

/**
 * Translation benchmark: for 100, 1,000 and 10,000 APIs of 5 operations each, the time to read
 * the configuration from the store, translate it, validate and encode it (the xDS snapshot), and
 * the process's RSS afterwards; then what a change costs once the pipeline holds that state:
 * rebuilding the same state, and a change to one API (its object replaced, every other API the
 * same deep-frozen object, as the pipeline holds them), median and worst of BENCH_CHANGES (20).
 * Each size runs in a fresh child process so RSS is its own.
 *
 *   npm run bench:translate                 (embedded Postgres)
 *   BENCH_DATABASE_URL=postgres://… npm run bench:translate
 */
import { spawnSync } from "node:child_process";
import pg from "pg";
import { createLogger } from "../packages/control-plane/src/observability/logger";
import { openDatabase } from "../packages/control-plane/src/store/database";
import { migrateToLatest } from "../packages/control-plane/src/store/migrate";
import { loadGatewayConfig, type GatewayApi } from "../packages/control-plane/src/store/reads/gatewayConfig";
import { translate } from "../packages/control-plane/src/translator";
import { deepFreeze } from "../packages/control-plane/src/translator/util";
import { buildSnapshot, XDS_TYPE_URLS } from "../packages/control-plane/src/xds";
import { routeConfigurationStats } from "../packages/control-plane/src/xds/routeConfiguration";
import { mb, percentile, seedApis } from "./seed";

const sizes = (process.env.BENCH_SIZES ?? "100,1000,10000").split(",").map(Number);
const changes = Number(process.env.BENCH_CHANGES ?? 20);
const url = process.env.BENCH_DATABASE_URL;
const ms = (v: number) => `${v.toFixed(v < 10 ? 1 : 0).padStart(5)} ms`;

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
  // Held as the pipeline holds them: deep-frozen (what the translator memoizes on).
  for (const api of config.apis) deepFreeze(api);
  const resources = translate(config);
  const t2 = performance.now();
  const snapshot = buildSnapshot(resources);
  const t3 = performance.now();
  const routes = resources.routes.reduce((n, r) => n + ((r.resource.virtual_hosts as { routes: unknown[] }[]) ?? []).reduce((m, v) => m + v.routes.length, 0), 0);
  let bytes = 0;
  for (const map of Object.values(snapshot.resources)) for (const entry of map.values()) bytes += entry.value.length;
  const rss = process.memoryUsage().rss;

  // The same state again (a rebuild with nothing changed).
  const t4 = performance.now();
  let previous = buildSnapshot(translate(config), { previous: snapshot });
  const t5 = performance.now();

  // One API changed per rebuild: a new object for it (a header value changes), the others as they are.
  const translateMs: number[] = [];
  const snapshotMs: number[] = [];
  const totalMs: number[] = [];
  let checked = 0;
  let apis = config.apis;
  for (let i = 0; i < changes; i++) {
    const target = (i * 7919) % size;
    const changed = structuredClone(apis[target]!) as GatewayApi;
    const params = changed.stages[0]!.policies.find((p) => p.type === "setHeaders")!.params as { request: { headers: { value: string }[] } };
    params.request.headers[0]!.value = `change-${i}`;
    apis = apis.map((api, k) => (k === target ? deepFreeze(changed) : api));
    const a = performance.now();
    const out = translate({ revision: config.revision + i + 1, apis });
    const b = performance.now();
    const next = buildSnapshot(out, { previous });
    const c = performance.now();
    checked += routeConfigurationStats.checked;
    if (next.resources[XDS_TYPE_URLS.route].get("apigw-routes")!.version === previous.resources[XDS_TYPE_URLS.route].get("apigw-routes")!.version) {
      throw new Error("the change did not change the RouteConfiguration");
    }
    previous = next;
    translateMs.push(b - a);
    snapshotMs.push(c - b);
    totalMs.push(c - a);
  }
  const sorted = (v: number[]) => [...v].sort((x, y) => x - y);
  const [tr, sn, to] = [sorted(translateMs), sorted(snapshotMs), sorted(totalMs)];
  console.log(
    [
      String(size).padStart(6),
      `read ${ms(t1 - t0)}`,
      `translate ${ms(t2 - t1)}`,
      `validate+encode ${ms(t3 - t2)}`,
      `same state ${ms(t5 - t4)}`,
      `one-API change: translate ${ms(percentile(tr, 50))}, snapshot ${ms(percentile(sn, 50))}, total p50 ${ms(percentile(to, 50))} max ${ms(to[to.length - 1]!)} (${(checked / changes).toFixed(0)} routes validated per change)`,
      `${routes} Envoy routes, ${resources.clusters.length} clusters, ${mb(bytes)} encoded`,
      `RSS ${mb(rss)} (after seeding ${mb(rssBefore)})`,
    ].join(" | "),
  );
  await database.close();
  process.exit(0);
}

console.log(`translation benchmark (${url ? "Postgres server" : "embedded Postgres"}), 5 operations per API, ${changes} one-API changes`);
console.log("  APIs | store read | translate | validate+encode | same state again | one-API change | size | RSS after the first build");
for (const size of sizes) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "--max-old-space-size=8192", import.meta.filename, "child", String(size)], {
    stdio: "inherit",
    env: process.env,
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

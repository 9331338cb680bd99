/*
 * How fast APIs are created through the management API (each one a REST write: edge validation,
 * one transaction with the admission check that translates the API and runs Envoy's check, the
 * change notification, the pipeline's rebuild). Prints APIs per second and the projected time
 * for 10,000 APIs.
 *
 *   BENCH_DATABASE_URL=postgres://… npm run bench:rest-create   # BENCH_APIS=2000 BENCH_CONCURRENCY=8
 *   npm run bench:rest-create                                   # the embedded store (memory://)
 *
 * The database's public schema is dropped and created again: use a throwaway database.
 */
import { currentRevision } from "../packages/control-plane/src/store/changes";
import { benchApi, percentile, startBenchControlPlane } from "./seed";

const url = process.env.BENCH_DATABASE_URL;
const count = Number(process.env.BENCH_APIS ?? 2000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);

const controlPlane = await startBenchControlPlane(url);
const auth = "Basic " + Buffer.from("admin:admin-bench").toString("base64");
const latencies: number[] = [];
let next = 0;
let failed = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < count; i = next++) {
      const t = performance.now();
      const response = await fetch(`${controlPlane.managementUrl}/api/management/v0.9/rest-apis`, {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "application/json" },
        body: JSON.stringify(benchApi(i)),
      });
      await response.arrayBuffer();
      if (response.status !== 201) failed++;
      latencies.push(performance.now() - t);
    }
  }),
);
const answered = performance.now() - started;
const revision = await currentRevision(controlPlane.database.knex);
while (controlPlane.pipeline.publishedRevision < revision) await new Promise((r) => setTimeout(r, 5));
await controlPlane.pipeline.settled();
const published = performance.now() - started;
latencies.sort((a, b) => a - b);
const rate = count / (answered / 1000);
console.log(`store: ${url ? "Postgres server" : "embedded (memory://)"}; ${count} APIs of 5 operations, ${concurrency} clients`);
console.log(`all answered: ${(answered / 1000).toFixed(1)} s (${rate.toFixed(0)} APIs/s; ${failed} not 201); all published: ${(published / 1000).toFixed(1)} s`);
console.log(`per request: p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms`);
console.log(`projected for 10,000 APIs at this rate: ${(10_000 / rate).toFixed(0)} s (the rate falls as the store grows: measure with BENCH_APIS=10000)`);
await controlPlane.stop();
process.exit(0);

import type { Knex } from "knex";
import pg from "pg";
import { loadConfig } from "../packages/control-plane/src/config";
import { startControlPlane, type ControlPlane } from "../packages/control-plane/src/controlPlane";
import { writeTransaction } from "../packages/control-plane/src/store/changes";
import { createApi } from "../packages/control-plane/src/store/repositories/restApis";
import { restApiRequestSchema, type RestApiRequest } from "../packages/control-plane/src/rest/schemas/restApi";

/** A realistic API: 5 operations (literal and templated), a header policy, an API key policy on every third. */
export function benchApi(i: number, revision = 0): RestApiRequest {
  return restApiRequestSchema.parse({
    apiVersion: "gateway.api-platform.wso2.com/v1alpha1",
    kind: "RestApi",
    metadata: { name: `bench-api-${i}` },
    spec: {
      displayName: `Bench API ${i}`,
      version: "v1",
      context: `/bench-${i}/$version`,
      upstream: { main: { url: `http://backend-${i % 50}.internal:8080/svc/${i}` } },
      policies: [
        { name: "set-headers", params: { request: { headers: [{ name: "x-bench", value: `r${revision}` }] } } },
        ...(i % 3 === 0 ? [{ name: "api-key-auth", params: {} }] : []),
      ],
      operations: [
        { method: "GET", path: "/items" },
        { method: "POST", path: "/items" },
        { method: "GET", path: "/items/{id}" },
        { method: "PUT", path: "/items/{id}" },
        { method: "DELETE", path: "/items/{id}" },
      ],
    },
  });
}

/** Inserts `count` APIs through the store's own write path, in batches (one revision per batch). */
export async function seedApis(knex: Knex, count: number, batch = 500): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    await writeTransaction(knex, async (tx, changes) => {
      for (let i = start; i < Math.min(count, start + batch); i++) await createApi(tx, changes, benchApi(i), "bench");
    });
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** A control plane for a benchmark: on BENCH_DATABASE_URL (its public schema dropped and created again) or the embedded store in memory. */
export async function startBenchControlPlane(url: string | undefined, extra: Record<string, string> = {}): Promise<ControlPlane> {
  if (url) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
    await client.end();
  }
  return startControlPlane(
    loadConfig({
      ...(url ? { DATABASE_URL: url } : { DATA_DIR: "memory://" }),
      MASTER_KEY: "bench-master-key-0123456789abcdef",
      ADMIN_PASSWORD: "admin-bench",
      MANAGEMENT_PORT: "0",
      ADMIN_PORT: "0",
      XDS_PORT: "0",
      EXT_AUTHZ_PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      ...extra,
    }),
  );
}

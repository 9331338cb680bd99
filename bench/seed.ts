import type { Knex } from "knex";
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

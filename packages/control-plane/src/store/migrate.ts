import type { Knex } from "knex";
import * as initial from "./migrations/001_initial";
import * as changeLogApiIndex from "./migrations/002_change_log_api_index";
import * as gatewayNodes from "./migrations/003_gateway_nodes";

/** Migrations are imported, not discovered on disk, so they work the same from source or a bundle. */
const MIGRATIONS: Record<string, { up(knex: Knex): Promise<void>; down(knex: Knex): Promise<void> }> = {
  "001_initial": initial,
  "002_change_log_api_index": changeLogApiIndex,
  "003_gateway_nodes": gatewayNodes,
};

const source: Knex.MigrationSource<string> = {
  async getMigrations() {
    return Object.keys(MIGRATIONS).sort();
  },
  getMigrationName(name) {
    return name;
  },
  async getMigration(name) {
    return MIGRATIONS[name]!;
  },
};

/** Brings the schema to the newest version; returns the names of the migrations it ran. */
export async function migrateToLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest({ migrationSource: source, tableName: "schema_migrations" })) as [number, string[]];
  return applied;
}

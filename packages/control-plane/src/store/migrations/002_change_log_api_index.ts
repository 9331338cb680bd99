import type { Knex } from "knex";

/** Lets "the newest revision that touched API X" be answered without scanning the change log. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw("CREATE INDEX change_log_changes ON change_log USING gin (changes jsonb_path_ops)");
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("DROP INDEX IF EXISTS change_log_changes");
}

import type { Knex } from "knex";

/** The newest revision whose changes name the API (0 when none is left in the log). */
export async function lastApiRevision(knex: Knex, handle: string): Promise<number> {
  const row = await knex("change_log")
    .whereRaw("changes @> ?::jsonb", [JSON.stringify([{ apiIds: [handle] }])])
    .max({ revision: "revision" })
    .first();
  return Number(row?.revision ?? 0);
}

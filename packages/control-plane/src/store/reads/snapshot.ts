import type { Knex } from "knex";

/**
 * Runs `read` in one REPEATABLE READ, read-only transaction: every query sees the same snapshot,
 * and the revision read inside it is exactly the state that snapshot shows (writers commit in
 * revision order under the store's write lock).
 */
export async function readSnapshot<T>(knex: Knex, read: (tx: Knex.Transaction, revision: number) => Promise<T>): Promise<T> {
  return knex.transaction(
    async (tx) => {
      const row = await tx("change_log").max({ revision: "revision" }).first();
      return read(tx, Number(row?.revision ?? 0));
    },
    { isolationLevel: "repeatable read", readOnly: true },
  );
}

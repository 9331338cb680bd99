import type { Knex } from "knex";

/**
 * The connected Envoys of every control plane replica and what each has ACKed, so that every
 * replica answers the same `status.gateways` whichever replica an Envoy is connected to. A row
 * is kept fresh by its replica (heartbeat); rows of a replica that stopped age out.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("gateway_nodes", (t) => {
    t.text("replica").notNullable();
    t.text("stream").notNullable();
    t.text("node_id").notNullable();
    t.text("gateway_group").notNullable();
    t.bigInteger("synced_revision").nullable();
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["replica", "stream"]);
    t.index(["updated_at"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists("gateway_nodes");
}

import type { Knex } from "knex";

/** The whole data model. Later changes go in new numbered files, never in this one. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("change_log", (t) => {
    t.bigIncrements("revision").primary();
    t.jsonb("changes").notNullable();
    t.timestamp("changed_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable("rest_apis", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.text("handle").notNullable().unique();
    t.text("display_name").notNullable();
    t.text("version").notNullable();
    t.text("context").notNullable();
    t.text("resolved_context").notNullable();
    t.text("deployment_state").notNullable();
    // The stored resource (apiVersion, kind, metadata, spec) with defaults filled in.
    t.json("document").notNullable(); // json, not jsonb: keeps the client's key order
    t.text("created_by");
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
    t.timestamp("deployed_at", { useTz: true });
    t.unique(["display_name", "version"]);
    t.index(["created_at"]);
  });
  await knex.raw(`ALTER TABLE rest_apis ADD CONSTRAINT rest_apis_state_check CHECK (deployment_state IN ('deployed','undeployed'))`);

  // Routes served by deployed APIs, so that two APIs can never claim the same method and path on one vhost.
  await knex.schema.createTable("api_routes", (t) => {
    t.uuid("api_id").notNullable().references("rest_apis.id").onDelete("CASCADE");
    t.text("stage").notNullable();
    t.text("vhost").notNullable();
    t.text("method").notNullable();
    t.text("path_key").notNullable();
    t.primary(["vhost", "method", "path_key"]);
    t.index(["api_id"]);
  });

  await knex.schema.createTable("api_keys", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("api_id").notNullable().references("rest_apis.id").onDelete("CASCADE");
    t.text("name").notNullable();
    t.text("display_name");
    t.text("key_hash").notNullable().unique();
    t.text("key_suffix").notNullable();
    t.text("status").notNullable();
    t.text("source").notNullable();
    t.text("created_by").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
    t.timestamp("expires_at", { useTz: true });
    t.timestamp("revoked_at", { useTz: true });
    // The key replaced by the last regeneration stays valid until this time (grace period).
    t.text("previous_key_hash");
    t.timestamp("previous_valid_until", { useTz: true });
    t.index(["api_id"]);
  });
  await knex.raw(`CREATE UNIQUE INDEX api_keys_active_name ON api_keys (api_id, name) WHERE status = 'active'`);
  await knex.raw(`CREATE INDEX api_keys_previous_hash ON api_keys (previous_key_hash) WHERE previous_key_hash IS NOT NULL`);

  await knex.schema.createTable("subscription_plans", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.text("plan_name").notNullable().unique();
    t.text("billing_plan");
    t.boolean("stop_on_quota_reach").notNullable();
    t.integer("throttle_limit_count");
    t.text("throttle_limit_unit");
    t.timestamp("expiry_time", { useTz: true });
    t.text("status").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
  });

  await knex.schema.createTable("subscriptions", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("api_id").notNullable().references("rest_apis.id").onDelete("CASCADE");
    t.text("application_id");
    t.text("token_hash").notNullable();
    t.uuid("plan_id").references("subscription_plans.id").onDelete("RESTRICT");
    t.text("billing_customer_id");
    t.text("billing_subscription_id");
    t.text("status").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
    t.unique(["api_id", "token_hash"]);
    t.index(["token_hash"]);
  });

  await knex.schema.createTable("applications", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.text("name").notNullable().unique();
    t.text("description");
    t.jsonb("tags").notNullable().defaultTo("{}");
    t.text("ext_info");
    t.text("status").notNullable();
    t.text("app_code_hash").notNullable().unique();
    t.text("app_code_suffix").notNullable();
    t.text("created_by");
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
  });

  await knex.schema.createTable("app_key_pairs", (t) => {
    t.text("app_key").primary();
    t.uuid("app_id").notNullable().references("applications.id").onDelete("CASCADE");
    // AES-256-GCM with the master key; the AppKey is the associated data, so a sealed secret
    // cannot be moved to another key pair.
    t.text("secret_sealed").notNullable();
    t.boolean("is_default").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
    t.index(["app_id"]);
  });
  await knex.raw(`CREATE UNIQUE INDEX app_key_pairs_one_default ON app_key_pairs (app_id) WHERE is_default`);

  await knex.schema.createTable("authorizations", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.uuid("app_id").notNullable().references("applications.id").onDelete("CASCADE");
    t.uuid("api_id").notNullable().references("rest_apis.id").onDelete("CASCADE");
    t.text("stage").notNullable();
    t.timestamp("expires_at", { useTz: true });
    t.text("description");
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
    t.unique(["app_id", "api_id", "stage"]);
    t.index(["api_id", "stage"]);
  });

  await knex.schema.createTable("plugins", (t) => {
    t.uuid("id").primary().defaultTo(knex.raw("gen_random_uuid()"));
    t.text("name").notNullable().unique();
    t.text("type").notNullable();
    t.text("description");
    t.json("params").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.timestamp("updated_at", { useTz: true }).notNullable();
  });

  await knex.schema.createTable("plugin_bindings", (t) => {
    t.uuid("plugin_id").notNullable().references("plugins.id").onDelete("RESTRICT");
    t.uuid("api_id").notNullable().references("rest_apis.id").onDelete("CASCADE");
    t.text("stage").notNullable();
    // Copied from the plug-in so that the database itself enforces one plug-in of a type per API and stage.
    t.text("plugin_type").notNullable();
    t.timestamp("created_at", { useTz: true }).notNullable();
    t.primary(["plugin_id", "api_id", "stage"]);
    t.unique(["api_id", "stage", "plugin_type"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of [
    "plugin_bindings",
    "plugins",
    "authorizations",
    "app_key_pairs",
    "applications",
    "subscriptions",
    "subscription_plans",
    "api_keys",
    "api_routes",
    "rest_apis",
    "change_log",
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
}

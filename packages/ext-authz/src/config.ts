import { z } from "zod";

/**
 * Settings of the ext_authz process, all from the environment (see packages/ext-authz/README.md).
 * Invalid values stop the process at start with a message naming the variable.
 */
const portNumber = z.coerce.number().int().min(0).max(65535);

/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), anything else is an error rather than a silent default. */
const flag = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => ["true", "false", "1", "0", "yes", "no", "on", "off"].includes(v), { error: "must be true or false" })
  .transform((v) => ["true", "1", "yes", "on"].includes(v));

const schema = z
  .object({
    EXT_AUTHZ_PORT: portNumber.default(9191),
    EXT_AUTHZ_ADMIN_PORT: portNumber.default(9193),
    EXT_AUTHZ_HOST: z.string().min(1).default("0.0.0.0"),
    /** Single Redis server: `redis://[:password@]host:port/db` (or `rediss://`). */
    REDIS_URL: z.string().min(1).optional(),
    /** Redis Sentinel: `host:port,host:port`, with REDIS_SENTINEL_MASTER naming the master. */
    REDIS_SENTINELS: z.string().min(1).optional(),
    REDIS_SENTINEL_MASTER: z.string().min(1).optional(),
    /** Redis Cluster seed nodes: `host:port,host:port`. */
    REDIS_CLUSTER_NODES: z.string().min(1).optional(),
    /** How long one Redis command may take before the check fails closed (ms). */
    REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(500),
    /** Key that sealed the AppSecrets (the control plane's MASTER_KEY). */
    MASTER_KEY: z.string().min(16, { error: "must be at least 16 characters (the control plane's MASTER_KEY)" }),
    /** Allow requests when Redis cannot be reached (default: deny with 503). */
    FAIL_OPEN: flag.default(false),
    /** Take the client address from X-Forwarded-For for ipControl unless a policy says otherwise. */
    TRUST_FORWARDED_FOR: flag.default(false),
    /** How long a decrypted AppSecret stays in memory (ms); 0 disables the cache. */
    SECRET_CACHE_MS: z.coerce.number().int().min(0).max(3_600_000).default(5000),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Time allowed for in-flight checks to finish on SIGTERM before the server is closed (ms). */
    SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(5000),
    /** A connection that has not started a call this long after connecting is closed (ms; 0 = never). */
    EXT_AUTHZ_FIRST_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(0).max(3_600_000).default(10_000),
    /** A connection without any traffic this long is closed with GOAWAY (ms; 0 = never). */
    EXT_AUTHZ_IDLE_TIMEOUT_MS: z.coerce.number().int().min(0).max(86_400_000).default(300_000),
  })
  .refine((c) => !c.REDIS_SENTINELS || c.REDIS_SENTINEL_MASTER, {
    error: "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER",
    path: ["REDIS_SENTINEL_MASTER"],
  })
  .refine((c) => [c.REDIS_URL, c.REDIS_SENTINELS, c.REDIS_CLUSTER_NODES].filter(Boolean).length <= 1, {
    error: "set only one of REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES",
    path: ["REDIS_URL"],
  });

export type ExtAuthzConfig = z.infer<typeof schema>;

export function loadExtAuthzConfig(env: NodeJS.ProcessEnv = process.env): ExtAuthzConfig {
  const result = schema.safeParse(env);
  if (!result.success) {
    const detail = result.error.issues.map((i) => `${i.path.join(".") || "(config)"}: ${i.message}`).join("; ");
    throw new Error(`invalid configuration: ${detail}`);
  }
  return result.data;
}

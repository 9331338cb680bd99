import { z } from "zod";

/**
 * Every setting comes from the environment (documented in README.md). Invalid values stop the
 * process at start with a message naming the variable, rather than failing later.
 */
const portNumber = z.coerce.number().int().min(0).max(65535);

const schema = z.object({
  MANAGEMENT_PORT: portNumber.default(9090),
  ADMIN_PORT: portNumber.default(9092),
  HOST: z.string().default("0.0.0.0"),
  DATABASE_URL: z.string().optional(),
  /** Where the embedded Postgres keeps its data when DATABASE_URL is not set. */
  DATA_DIR: z.string().default(".data"),
  /** Redis for the credential projection; unset = the in-process store (embedded default). */
  REDIS_URL: z.string().optional(),
  /** Redis Sentinel instead of REDIS_URL: `host:port,host:port` and the master's name. */
  REDIS_SENTINELS: z.string().optional(),
  REDIS_SENTINEL_MASTER: z.string().default("mymaster"),
  /** Redis Cluster instead of REDIS_URL: `host:port,host:port` seed nodes. */
  REDIS_CLUSTER_NODES: z.string().optional(),
  /** ADS (xDS) gRPC port for Envoy. */
  XDS_PORT: portNumber.default(18000),
  /** Run the ext_authz service inside this process (default: when no Redis is configured). */
  EXT_AUTHZ_EMBEDDED: z.enum(["true", "false"]).optional(),
  EXT_AUTHZ_PORT: portNumber.default(9191),
  /** Envoy's plain HTTP listener port. */
  GATEWAY_HTTP_PORT: portNumber.default(8080),
  /** With both files (paths on the Envoy host), a TLS listener on GATEWAY_TLS_PORT serves the same routes. */
  GATEWAY_TLS_CERT_FILE: z.string().optional(),
  GATEWAY_TLS_KEY_FILE: z.string().optional(),
  GATEWAY_TLS_PORT: portNumber.default(8443),
  /** How long a burst of store changes is gathered before the gateways' configuration is rebuilt. */
  XDS_COALESCE_MS: z.coerce.number().int().min(0).max(1000).default(5),
  ADMIN_USER: z.string().min(1).default("admin"),
  ADMIN_PASSWORD: z.string().min(1).default("admin"),
  /** Extra users: `name:password:role` entries separated by `;` (roles: admin, developer, consumer). */
  MANAGEMENT_USERS: z.string().default(""),
  /** Key for AES-256-GCM encryption of AppSecrets; 64 hex characters, or any string of 16+ characters. */
  MASTER_KEY: z.string().min(16).optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Largest request body the management API accepts. */
  BODY_LIMIT: z.string().default("1mb"),
  /** Active API keys allowed per API and creating user. */
  API_KEY_QUOTA: z.coerce.number().int().min(1).max(10_000).default(10),
  /** Plug-ins allowed in total. */
  PLUGIN_LIMIT: z.coerce.number().int().min(1).max(1_000_000).default(1000),
});

export type Config = z.infer<typeof schema>;

export const ROLES = ["admin", "developer", "consumer"] as const;
export type Role = (typeof ROLES)[number];

export interface User {
  name: string;
  password: string;
  role: Role;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = schema.safeParse(env);
  if (!result.success) {
    const detail = result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`invalid configuration: ${detail}`);
  }
  return result.data;
}

export function usersFromConfig(config: Config): User[] {
  const users: User[] = [{ name: config.ADMIN_USER, password: config.ADMIN_PASSWORD, role: "admin" }];
  for (const entry of config.MANAGEMENT_USERS.split(";").map((s) => s.trim()).filter(Boolean)) {
    const [name, password, role] = entry.split(":");
    if (!name || !password || !ROLES.includes(role as Role)) {
      throw new Error(`invalid configuration: MANAGEMENT_USERS entry '${name ?? ""}' must be name:password:role`);
    }
    users.push({ name, password, role: role as Role });
  }
  return users;
}

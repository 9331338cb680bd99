import { loadConfig, type Config } from "../../packages/control-plane/src/config";

/**
 * Tests run against the Postgres at TEST_DATABASE_URL (CI and `bash .ci/run` create it). Without
 * it they fall back to an embedded in-memory Postgres, so that `npm test` still works on a bare
 * machine; the run says so at the top.
 */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL;
export const TEST_MASTER_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

export const USERS = {
  admin: { name: "admin", password: "admin-secret" },
  developer: { name: "dev", password: "dev-secret" },
  consumer: { name: "carol", password: "carol-secret" },
  consumer2: { name: "dave", password: "dave-secret" },
};

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    MANAGEMENT_PORT: "0",
    ADMIN_PORT: "0",
    XDS_PORT: "0",
    EXT_AUTHZ_PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    ADMIN_USER: USERS.admin.name,
    ADMIN_PASSWORD: USERS.admin.password,
    MANAGEMENT_USERS: [
      `${USERS.developer.name}:${USERS.developer.password}:developer`,
      `${USERS.consumer.name}:${USERS.consumer.password}:consumer`,
      `${USERS.consumer2.name}:${USERS.consumer2.password}:consumer`,
    ].join(";"),
    MASTER_KEY: TEST_MASTER_KEY,
    DATA_DIR: "memory://",
    BODY_LIMIT: "256kb",
    ...(TEST_DATABASE_URL ? { DATABASE_URL: TEST_DATABASE_URL } : {}),
    ...overrides,
  });
}

import type { SecretBox } from "@apigw/shared";
import type { Config } from "../config";
import type { Logger } from "../observability/logger";
import type { Database } from "../store/database";

/** Connected gateways (Envoy node groups) and the newest store revision each has fully ACKed. */
export interface GatewayStatusSource {
  connectedGateways(): { name: string; nodes: number; syncedRevision?: number }[];
}

/** What route handlers may use. */
export interface Services {
  config: Config;
  database: Database;
  secretBox: SecretBox;
  logger: Logger;
  gateways?: GatewayStatusSource;
}

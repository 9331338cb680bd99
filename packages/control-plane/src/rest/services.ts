import type { SecretBox } from "@apigw/shared";
import type { Config } from "../config";
import type { Logger } from "../observability/logger";
import type { Database } from "../store/database";

/** Connected gateways (Envoy node groups) and the newest store revision each has fully ACKed. */
export interface GatewayStatusSource {
  connectedGateways(): Promise<{ name: string; nodes: number; syncedRevision?: number }[]>;
  /** Per gateway group whose configuration includes the API: the revision published, whether it holds the API back, the translator's notes. */
  apiStatus?(handle: string): ApiBuildStatus[];
}

export interface ApiBuildStatus {
  group: string;
  revision: number;
  held?: { revision: number; problems: string[]; heldAt: string };
  diagnostics: { stage?: string; operation?: string; message: string }[];
}

/** What route handlers may use. */
export interface Services {
  config: Config;
  database: Database;
  secretBox: SecretBox;
  logger: Logger;
  gateways?: GatewayStatusSource;
}

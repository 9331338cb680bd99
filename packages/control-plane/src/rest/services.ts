import type { SecretBox } from "@apigw/shared";
import type { Config } from "../config";
import type { Logger } from "../observability/logger";
import type { Database } from "../store/database";

/** What route handlers may use. */
export interface Services {
  config: Config;
  database: Database;
  secretBox: SecretBox;
  logger: Logger;
}

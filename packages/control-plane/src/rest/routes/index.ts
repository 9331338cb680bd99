import type { RouteDefinition } from "../framework";
import { restApiRoutes } from "./restApis";

/** Every route of the management API; the OpenAPI document is generated from this list. */
export const allRoutes: readonly RouteDefinition[] = [...restApiRoutes];

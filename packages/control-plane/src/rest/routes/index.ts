import type { RouteDefinition } from "../framework";
import { apiKeyRoutes } from "./apiKeys";
import { applicationRoutes } from "./applications";
import { authorizationRoutes } from "./authorizations";
import { pluginRoutes } from "./plugins";
import { restApiRoutes } from "./restApis";
import { subscriptionPlanRoutes } from "./subscriptionPlans";
import { subscriptionRoutes } from "./subscriptions";

/** Every route of the management API; the OpenAPI document is generated from this list. */
export const allRoutes: readonly RouteDefinition[] = [
  ...restApiRoutes,
  ...apiKeyRoutes,
  ...subscriptionPlanRoutes,
  ...subscriptionRoutes,
  ...applicationRoutes,
  ...authorizationRoutes,
  ...pluginRoutes,
];

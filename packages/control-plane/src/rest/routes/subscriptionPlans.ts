import type { RouteDefinition } from "../framework";

// Filled in by the subscriptionPlans work item.
export const subscriptionPlanRoutes: RouteDefinition[] = [];

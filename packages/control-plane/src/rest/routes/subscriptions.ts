import type { RouteDefinition } from "../framework";

// Filled in by the subscriptions work item.
export const subscriptionRoutes: RouteDefinition[] = [];

import type { RouteDefinition } from "../framework";

// Filled in by the authorizations work item.
export const authorizationRoutes: RouteDefinition[] = [];

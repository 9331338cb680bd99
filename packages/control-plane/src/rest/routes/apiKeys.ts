import type { RouteDefinition } from "../framework";

// Filled in by the apiKeys work item.
export const apiKeyRoutes: RouteDefinition[] = [];

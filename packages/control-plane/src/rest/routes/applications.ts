import type { RouteDefinition } from "../framework";

// Filled in by the applications work item.
export const applicationRoutes: RouteDefinition[] = [];

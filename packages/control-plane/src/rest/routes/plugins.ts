import type { RouteDefinition } from "../framework";

// Filled in by the plugins work item.
export const pluginRoutes: RouteDefinition[] = [];

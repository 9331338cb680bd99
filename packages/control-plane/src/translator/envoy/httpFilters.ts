import { ENVOY_TYPE_URLS } from "../../envoy/schema/strict";
import type { IrRoute } from "../ir";
import type { ResolvedTranslatorOptions } from "../options";
import { sortedRecord, typed, type Json } from "../util";
import { corsFeature } from "./features/cors";
import { extAuthzFeature } from "./features/extAuthz";

/** An Envoy HTTP filter and what it needs on each route. */
export interface HttpFilterFeature {
  /** The filter's name in the HCM chain; also its key in a route's typed_per_filter_config. */
  name: string;
  /** The filter's entry in `http_filters`. */
  httpFilter(options: ResolvedTranslatorOptions): Json;
  /** The route's typed_per_filter_config value for this filter; undefined for none. */
  perRoute?(route: IrRoute, options: ResolvedTranslatorOptions): Json | undefined;
}

export const ROUTER_FILTER = "envoy.filters.http.router";

const router: HttpFilterFeature = {
  name: ROUTER_FILTER,
  httpFilter: () => ({ name: ROUTER_FILTER, typed_config: typed(ENVOY_TYPE_URLS.router) }),
};

/**
 * THE order of the HTTP filters, the only place it is decided:
 *
 *   1. CORS       (envoy.filters.http.cors)       answers preflights and adds CORS response
 *                                                  headers, before anything may refuse the request
 *   2. ext_authz  (envoy.filters.http.ext_authz)  credentials, IP and traffic policies; enabled
 *                                                  per route, disabled elsewhere
 *   3. header mutation: not a filter here. setHeaders/removeHeaders are route-level
 *                  request/response_headers_to_add/_remove applied by the router (features/
 *                  headers.ts), so they act after ext_authz. A header-mutation filter would be
 *                  inserted at this position if a policy ever needed one.
 *   4. router     (envoy.filters.http.router)     always last (Envoy requires it)
 *
 * Every filter is always in the chain, whatever the APIs: the listener then never changes when an
 * API does (a listener update drains connections); routes opt in or out per route.
 */
export const HTTP_FILTERS: readonly HttpFilterFeature[] = [corsFeature, extAuthzFeature, router];

export function httpFilters(options: ResolvedTranslatorOptions): Json[] {
  return HTTP_FILTERS.map((f) => f.httpFilter(options));
}

/** A route's typed_per_filter_config (keys sorted), or undefined when no filter has anything to say. */
export function typedPerFilterConfig(route: IrRoute, options: ResolvedTranslatorOptions): Json | undefined {
  const entries: [string, Json][] = [];
  for (const feature of HTTP_FILTERS) {
    const config = feature.perRoute?.(route, options);
    if (config) entries.push([feature.name, config]);
  }
  return entries.length ? sortedRecord(entries) : undefined;
}

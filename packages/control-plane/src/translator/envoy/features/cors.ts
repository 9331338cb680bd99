import { ENVOY_TYPE_URLS } from "../../../envoy/schema/strict";
import type { IrCors, IrRoute } from "../../ir";
import { typed, type Json } from "../../util";
import type { HttpFilterFeature } from "../httpFilters";

/*
 * cors policy → the CORS HTTP filter (always in the chain, does nothing on a route without a
 * policy) and a per-route CorsPolicy. The 405 route of a path carries the path's policy too: a
 * preflight is an OPTIONS request, which only the 405 route matches unless OPTIONS is declared,
 * and the CORS filter answers it before the router.
 *
 * Origins: `*` → any origin (regex `.*`; Envoy echoes the request's origin); an exact origin →
 * case-insensitive exact match; `https://*.example.com` → the RE2 regex
 * `(?i)https://[a-z0-9.-]+\.example\.com` (one or more subdomain labels). A pattern whose regex
 * would approach Envoy's RE2 program size limit falls back to a case-insensitive suffix match
 * (`.example.com`), which no longer checks the scheme. allowMethods defaults to the methods the
 * path answers. allowHeaders/exposeHeaders are sent only when given.
 */

export const CORS_FILTER = "envoy.filters.http.cors";

/** Regex sources longer than this use the suffix fallback (Envoy refuses programs above 100). */
const MAX_ORIGIN_REGEX_LENGTH = 80;

export function originMatcher(origin: string): Json {
  if (origin === "*") return { safe_regex: { regex: ".*" } };
  const wildcard = /^(https?):\/\/\*\.(.+)$/.exec(origin);
  if (!wildcard) return { exact: origin, ignore_case: true };
  const [, scheme, rest] = wildcard;
  const regex = `(?i)${scheme}://[a-z0-9.-]+\\.${rest!.replace(/\./g, "\\.")}`;
  if (regex.length <= MAX_ORIGIN_REGEX_LENGTH) return { safe_regex: { regex } };
  return { suffix: `.${rest}`, ignore_case: true };
}

export function corsPolicy(cors: IrCors): Json {
  return typed(ENVOY_TYPE_URLS.corsPolicy, {
    allow_origin_string_match: cors.allowOrigins.map(originMatcher),
    allow_methods: cors.allowMethods.join(","),
    ...(cors.allowHeaders?.length ? { allow_headers: cors.allowHeaders.join(",") } : {}),
    ...(cors.exposeHeaders?.length ? { expose_headers: cors.exposeHeaders.join(",") } : {}),
    ...(cors.maxAge !== undefined ? { max_age: String(cors.maxAge) } : {}),
    ...(cors.allowCredentials !== undefined ? { allow_credentials: cors.allowCredentials } : {}),
  });
}

function routeCors(route: IrRoute): IrCors | undefined {
  if (route.kind === "forward") return route.policies.cors;
  if (route.kind === "methodNotAllowed") return route.cors;
  return undefined;
}

export const corsFeature: HttpFilterFeature = {
  name: CORS_FILTER,
  httpFilter: () => ({ name: CORS_FILTER, typed_config: typed(ENVOY_TYPE_URLS.cors) }),
  perRoute(route) {
    const cors = routeCors(route);
    return cors ? corsPolicy(cors) : undefined;
  },
};

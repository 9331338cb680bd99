import { ENVOY_TYPE_URLS } from "../../envoy/schema/strict";
import { hostPlans, type GroupRender } from "../buildIr";
import type { GatewayIr, IrForwardRoute, IrPathMatch, IrPathRewrite, IrRoute, IrVirtualHost } from "../ir";
import type { ResolvedTranslatorOptions } from "../options";
import { deepFreeze, typed, type Json } from "../util";
import { headerValueOption, routeHeaderMutations } from "./features/headers";
import { typedPerFilterConfig } from "./httpFilters";
import type { NamedResource } from "./types";

/*
 * The RouteConfiguration (one, named by the `routeConfigName` option, shared by the HTTP and TLS
 * listeners): one virtual host per domain (name = domain), routes in the IR's order.
 *
 * - API route: `:method` exact header match; the path exact (`path`) or an Envoy URI template
 *   (`path_match_policy` envoy.path.match.uri_template); the upstream path by `prefix_rewrite`
 *   (exact paths: the whole path is replaced), a URI template rewrite (`path_rewrite_policy`
 *   envoy.path.rewrite.uri_template), or, where a template cannot express it, `regex_rewrite` on
 *   the context; one cluster or `weighted_clusters`; `auto_host_rewrite` for hostRewrite auto;
 *   `timeout` (option routeTimeout).
 * - 405: same path match, any method: direct_response 405, `Allow: GET, PUT`, JSON body
 *   {"status":"error","message":"Method not allowed","allowedMethods":[...]}.
 * - 404: `prefix: /`, last in every host: direct_response 404, JSON body
 *   {"status":"error","message":"No API operation matches the request path"}.
 * Direct responses carry `content-type: application/json` (Envoy keeps a content type set by the
 * route instead of its text/plain default).
 */

/*
 * Sub-objects that are the same on many routes are built once and shared (frozen): at 10,000 APIs
 * this saves a large share of the allocations. Resources must therefore be treated as immutable.
 *
 * Memoization: the Envoy JSON of a frozen IR route (buildIr freezes every IR route it makes and
 * keeps it while nothing it depends on changes) is made once per set of options and deep-frozen,
 * so an unchanged API's routes keep their identity from one translation to the next, which
 * buildSnapshot uses to skip validating and encoding them again (xds/routeConfiguration.ts).
 */
const JSON_CONTENT_TYPE = deepFreeze(headerValueOption("content-type", "application/json"));
const METHOD_MATCHERS = new Map<string, Json[]>();
function methodMatcher(method: string, alsoHead: boolean): Json[] {
  const key = alsoHead ? `${method}|HEAD` : method;
  let matcher = METHOD_MATCHERS.get(key);
  if (!matcher) {
    // RE2, anchored by Envoy (full match): `GET|HEAD`.
    const stringMatch = alsoHead ? { safe_regex: { regex: `${method}|HEAD` } } : { exact: method };
    METHOD_MATCHERS.set(key, (matcher = deepFreeze([{ name: ":method", string_match: stringMatch }])));
  }
  return matcher;
}

export const NOT_FOUND_BODY = JSON.stringify({ status: "error", message: "No API operation matches the request path" });
export function methodNotAllowedBody(allow: string[]): string {
  return JSON.stringify({ status: "error", message: "Method not allowed", allowedMethods: allow });
}

function pathMatch(match: IrPathMatch): Json {
  if (match.kind === "exact") return { path: match.path };
  return {
    path_match_policy: {
      name: "envoy.path.match.uri_template",
      typed_config: typed(ENVOY_TYPE_URLS.uriTemplateMatch, { path_template: match.template }),
    },
  };
}

function pathRewrite(rewrite: IrPathRewrite | undefined): Json {
  if (!rewrite) return {};
  switch (rewrite.kind) {
    case "replace":
      return { prefix_rewrite: rewrite.path };
    case "template":
      return {
        path_rewrite_policy: {
          name: "envoy.path.rewrite.uri_template",
          typed_config: typed(ENVOY_TYPE_URLS.uriTemplateRewrite, { path_template_rewrite: rewrite.template }),
        },
      };
    case "regex":
      return { regex_rewrite: { pattern: { regex: rewrite.pattern }, substitution: rewrite.substitution } };
  }
}

function forwardAction(route: IrForwardRoute, options: ResolvedTranslatorOptions): Json {
  const destination =
    route.destinations.length === 1
      ? { cluster: route.destinations[0]!.cluster }
      : { weighted_clusters: { clusters: route.destinations.map((d) => ({ name: d.cluster, weight: d.weight })) } };
  return {
    ...destination,
    ...pathRewrite(route.rewrite),
    ...(route.hostRewrite === "auto" ? { auto_host_rewrite: true } : {}),
    timeout: options.routeTimeout,
  };
}

function perFilter(route: IrRoute, options: ResolvedTranslatorOptions): Json {
  const config = typedPerFilterConfig(route, options);
  return config ? { typed_per_filter_config: config } : {};
}

export function envoyRoute(route: IrRoute, options: ResolvedTranslatorOptions): Json {
  switch (route.kind) {
    case "forward":
      return {
        name: route.name,
        match: { ...pathMatch(route.match), headers: methodMatcher(route.method, route.alsoHead === true) },
        route: forwardAction(route, options),
        ...routeHeaderMutations(route),
        ...perFilter(route, options),
      };
    case "methodNotAllowed":
      return {
        name: route.name,
        match: pathMatch(route.match),
        direct_response: { status: 405, body: { inline_string: methodNotAllowedBody(route.allow) } },
        response_headers_to_add: [headerValueOption("allow", route.allow.join(", ")), JSON_CONTENT_TYPE],
        ...perFilter(route, options),
      };
    case "notFound":
      return {
        name: route.name,
        match: { prefix: "/" },
        direct_response: { status: 404, body: { inline_string: NOT_FOUND_BODY } },
        response_headers_to_add: [JSON_CONTENT_TYPE],
        ...perFilter(route, options),
      };
  }
}

/** envoyRoute, memoized per frozen IR route in `memo` (one WeakMap per set of options). */
export function memoizedEnvoyRoute(route: IrRoute, options: ResolvedTranslatorOptions, memo?: WeakMap<IrRoute, Json>): Json {
  if (!memo || !Object.isFrozen(route)) return envoyRoute(route, options);
  let json = memo.get(route);
  if (!json) memo.set(route, (json = deepFreeze(envoyRoute(route, options))));
  return json;
}

/** The Envoy JSON of a group's routes and 405 routes, kept on the group's render per set of options. */
function groupJson(render: GroupRender, options: ResolvedTranslatorOptions, memo: WeakMap<IrRoute, Json>): { routes: Json[]; notAllowed: Json[] } {
  let json = render.envoy.get(memo) as { routes: Json[]; notAllowed: Json[] } | undefined;
  if (!json) {
    json = {
      routes: render.routes.map((r) => memoizedEnvoyRoute(r, options, memo)),
      notAllowed: render.notAllowed.map((r) => memoizedEnvoyRoute(r, options, memo)),
    };
    render.envoy.set(memo, json);
  }
  return json;
}

export function virtualHost(host: IrVirtualHost, options: ResolvedTranslatorOptions, memo?: WeakMap<IrRoute, Json>): Json {
  const routes = new Array<Json>(host.routes.length);
  // A host buildIr assembled from group renders: whole groups at once (no per-route lookup).
  const plan = memo ? hostPlans.get(host) : undefined;
  if (plan && memo) {
    let i = 0;
    const parts = plan.map((render) => groupJson(render, options, memo));
    for (const part of parts) for (const r of part.routes) routes[i++] = r;
    for (const part of parts) for (const r of part.notAllowed) routes[i++] = r;
    if (i === routes.length - 1) {
      routes[i] = memoizedEnvoyRoute(host.routes[i]!, options, memo);
      return { name: host.name, domains: [host.domain], routes };
    }
  }
  for (let i = 0; i < routes.length; i++) routes[i] = memoizedEnvoyRoute(host.routes[i]!, options, memo);
  return { name: host.name, domains: [host.domain], routes };
}

export function routeConfigurations(ir: GatewayIr, options: ResolvedTranslatorOptions, memo?: WeakMap<IrRoute, Json>): NamedResource[] {
  return [
    {
      name: options.routeConfigName,
      typeUrl: ENVOY_TYPE_URLS.routeConfiguration,
      resource: { name: options.routeConfigName, virtual_hosts: ir.virtualHosts.map((h) => virtualHost(h, options, memo)) },
    },
  ];
}

import type { CircuitBreakerParams, HttpMethod, Stage } from "@apigw/shared";

/*
 * The translator's intermediate representation: what the gateway must do, decided once, with no
 * Envoy syntax in it. buildIr.ts makes it from a GatewayConfig (every routing and policy decision
 * lives there: merging virtual hosts, route order, 405/404, upstream targets, which policy wins);
 * envoy/*.ts turn it into Envoy resources, one file per Envoy feature. Plain data, JSON-serialisable,
 * ordered deterministically.
 */

export interface GatewayIr {
  /** The store revision the input was read at. */
  revision: number;
  /** One per distinct domain, sorted by name. Always holds the `*` host (at least its 404). */
  virtualHosts: IrVirtualHost[];
  /** Every cluster a route refers to (and no other), sorted by name. */
  clusters: IrCluster[];
  /** Things the translator left out or could not honour exactly; never fatal. */
  diagnostics: IrDiagnostic[];
}

export interface IrDiagnostic {
  apiId?: string;
  stage?: Stage;
  operation?: string;
  message: string;
}

export interface IrVirtualHost {
  /** Unique; equal to the domain. */
  name: string;
  /** The one domain this host answers (lower case, as given by the APIs' vhosts: `*`, `sandbox-*`, `api.example.com`). */
  domain: string;
  /** In match order: API routes (most specific path first), then 405 routes, then the 404 catch-all. */
  routes: IrRoute[];
}

export type IrRoute = IrForwardRoute | IrMethodNotAllowedRoute | IrNotFoundRoute;

/** How a route's path is matched. */
export type IrPathMatch =
  /** The path equals this string (the query string is ignored). */
  | { kind: "exact"; path: string }
  /** Envoy's URI template (`/books/{id}`, `/files/{rest=**}`). */
  | { kind: "template"; template: string };

/** How the upstream path is made from the request path (the query string is always kept). */
export type IrPathRewrite =
  /** Replace the whole path (exact matches). */
  | { kind: "replace"; path: string }
  /** URI template rewrite using the variables of the match template. */
  | { kind: "template"; template: string }
  /** RE2 rewrite of the path's start: used when a template rewrite is impossible (too long, too many variables). */
  | { kind: "regex"; pattern: string; substitution: string };

export interface IrForwardRoute {
  kind: "forward";
  /** `<api handle> <stage> <METHOD> <declared path>`: for logs and stats, not unique. */
  name: string;
  apiId: string;
  stage: Stage;
  /** `METHOD path` exactly as declared in the API. */
  operation: string;
  method: HttpMethod;
  /**
   * A GET route also answers HEAD when the path declares no HEAD operation of its own (HTTP
   * requires HEAD wherever GET is served; the upstream answers it without a body).
   */
  alsoHead?: true;
  match: IrPathMatch;
  /** Absent: the upstream gets the request path unchanged. */
  rewrite?: IrPathRewrite;
  /** One entry: a plain cluster; several: weighted clusters (weights > 0). */
  destinations: { cluster: string; weight: number }[];
  /** `auto`: Host becomes the upstream's host name; `manual`: the client's Host is kept. */
  hostRewrite: "auto" | "manual";
  policies: IrRoutePolicies;
}

export interface IrRoutePolicies {
  requestHeaders?: IrHeaderMutation;
  responseHeaders?: IrHeaderMutation;
  cors?: IrCors;
  /** Present when an ext_authz-enforced policy applies to the route; absent = ext_authz disabled. */
  extAuthz?: IrExtAuthz;
}

export interface IrHeaderMutation {
  /** Set (overwrite or add), in order. */
  set: { name: string; value: string }[];
  /** Removed (before the sets are applied). */
  remove: string[];
}

export interface IrCors {
  /** `*`, exact origins, or `https://*.example.com` patterns. */
  allowOrigins: string[];
  allowMethods: string[];
  allowHeaders?: string[];
  exposeHeaders?: string[];
  maxAge?: number;
  allowCredentials?: boolean;
}

export interface IrExtAuthz {
  /** `context_extensions` of the Check request: api_id, stage, operation (CONTEXT_EXTENSIONS). */
  contextExtensions: Record<string, string>;
  /** The request body is sent to ext_authz (AppAuth signs form bodies); otherwise buffering is disabled. */
  withBody: boolean;
}

/** A known path asked with a method no operation declares. */
export interface IrMethodNotAllowedRoute {
  kind: "methodNotAllowed";
  name: string;
  match: IrPathMatch;
  /** The methods that the path answers, sorted. */
  allow: HttpMethod[];
  /** The path's CORS policy, so that preflight requests (OPTIONS) are answered here. */
  cors?: IrCors;
}

/** The last route of every virtual host. */
export interface IrNotFoundRoute {
  kind: "notFound";
  name: string;
}

export interface IrUpstreamTarget {
  scheme: "http" | "https";
  /** Host name or IP literal (IPv6 without brackets). */
  host: string;
  port: number;
  /** 0 for a host name, 4 or 6 for an IP literal. */
  ipFamily: 0 | 4 | 6;
  /** What `auto_host_rewrite` puts in Host: the host, with the port when it is not the scheme's default. */
  authority: string;
}

export interface IrCluster {
  /** `<scheme>_<host>_<port>`, plus `_<hash>` of the settings when they are not the defaults. */
  name: string;
  target: IrUpstreamTarget;
  /** From `upstreamDefinitions[].timeout.connect`; absent = the translator option's default. */
  connectTimeoutMs?: number;
  circuitBreaker?: CircuitBreakerParams;
}

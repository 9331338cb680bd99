import { ENVOY_TYPE_URLS } from "../../../envoy/schema/strict";
import type { ResolvedTranslatorOptions } from "../../options";
import type { IrRoute } from "../../ir";
import { sortedRecord, typed, type Json } from "../../util";
import type { HttpFilterFeature } from "../httpFilters";

/*
 * Credential, IP and traffic policies (everything the policy registry marks `enforcedBy:
 * "ext_authz"`: apiKeyAuth, appAuth, subscriptionKeyAuth, ipControl, trafficControl) → the
 * ext_authz HTTP filter.
 *
 * Placement: the filter is ALWAYS in the chain (after CORS, so that preflights are answered
 * without credentials), and every route says what it wants: a route whose API needs ext_authz
 * carries ExtAuthzPerRoute `check_settings.context_extensions` {api_id: API handle, stage:
 * RELEASE|TEST, operation: "METHOD path" as declared}, so the auth service never matches routes;
 * every other route (including 405/404) carries `disabled: true`. Keeping the filter in the chain
 * whatever the APIs are makes the listener independent of the APIs: an API change never updates
 * (and drains) the listener, only routes and clusters. A route that somehow carried no per-route
 * config would still be checked, and ext_authz refuses a request without context (fail closed).
 *
 * The filter: gRPC to the static cluster `ext_authz` (envoy/envoy.yaml) with a deadline,
 * transport_api_version V3, fail closed (`failure_mode_allow: false`) with 503 when the service is
 * unavailable, and the request body (`with_request_body`, raw bytes) for AppAuth form signatures;
 * routes whose API does not use appAuth set `disable_request_body_buffering` so they never wait
 * for a body.
 */

export const EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz";

const STATUS_NAMES: Record<number, string> = {
  403: "Forbidden",
  500: "InternalServerError",
  502: "BadGateway",
  503: "ServiceUnavailable",
  504: "GatewayTimeout",
};

export function extAuthzFilter(options: ResolvedTranslatorOptions): Json {
  const o = options.extAuthz;
  const statusName = STATUS_NAMES[o.statusOnError];
  if (!statusName) throw new Error(`extAuthz.statusOnError ${o.statusOnError} is not supported`);
  return {
    name: EXT_AUTHZ_FILTER,
    typed_config: typed(ENVOY_TYPE_URLS.extAuthz, {
      grpc_service: { envoy_grpc: { cluster_name: o.clusterName }, timeout: o.timeout },
      transport_api_version: "V3",
      failure_mode_allow: o.failureModeAllow,
      status_on_error: { code: statusName },
      ...(o.withRequestBody
        ? {
            with_request_body: {
              max_request_bytes: o.withRequestBody.maxRequestBytes,
              allow_partial_message: o.withRequestBody.allowPartialMessage,
              pack_as_bytes: o.withRequestBody.packAsBytes,
            },
          }
        : {}),
    }),
  };
}

/** Shared by every route without ext_authz (frozen: resources are never mutated). */
const DISABLED = Object.freeze(typed(ENVOY_TYPE_URLS.extAuthzPerRoute, { disabled: true }));

export function extAuthzPerRoute(route: IrRoute, options: ResolvedTranslatorOptions): Json {
  const settings = route.kind === "forward" ? route.policies.extAuthz : undefined;
  if (!settings) return DISABLED;
  return typed(ENVOY_TYPE_URLS.extAuthzPerRoute, {
    check_settings: {
      context_extensions: sortedRecord(Object.entries(settings.contextExtensions)),
      ...(options.extAuthz.withRequestBody && !settings.withBody ? { disable_request_body_buffering: true } : {}),
    },
  });
}

export const extAuthzFeature: HttpFilterFeature = {
  name: EXT_AUTHZ_FILTER,
  httpFilter: extAuthzFilter,
  perRoute: extAuthzPerRoute,
};

import type { IrHeaderMutation, IrRoute } from "../../ir";
import type { Json } from "../../util";

/*
 * setHeaders / removeHeaders → route-level header mutation, applied by the router: no HTTP filter
 * needed. Request headers are changed before the request goes upstream (after ext_authz, so the
 * auth service sees the client's headers), response headers before the response goes back.
 * Removals happen before additions (Envoy's order), so a policy may remove a header and set it
 * anew. A set overwrites a header the request or response already has
 * (OVERWRITE_IF_EXISTS_OR_ADD). Envoy reads header values as format strings (`%REQ(x)%`...): a
 * literal `%` is written `%%`, so values arrive exactly as configured. Names are lower-cased.
 */

export function headerValueOption(name: string, value: string): Json {
  return {
    header: { key: name.toLowerCase(), value: value.replace(/%/g, "%%") },
    append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
  };
}

function mutation(m: IrHeaderMutation | undefined, direction: "request" | "response"): Json {
  if (!m) return {};
  return {
    ...(m.set.length ? { [`${direction}_headers_to_add`]: m.set.map((h) => headerValueOption(h.name, h.value)) } : {}),
    ...(m.remove.length ? { [`${direction}_headers_to_remove`]: m.remove.map((h) => h.toLowerCase()) } : {}),
  };
}

/** Route fields (request/response_headers_to_add/_remove) for an API route. */
export function routeHeaderMutations(route: IrRoute): Json {
  if (route.kind !== "forward") return {};
  return { ...mutation(route.policies.requestHeaders, "request"), ...mutation(route.policies.responseHeaders, "response") };
}

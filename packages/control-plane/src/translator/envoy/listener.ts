import { ENVOY_TYPE_URLS } from "../../envoy/schema/strict";
import type { ResolvedTranslatorOptions, TlsDataSource } from "../options";
import { typed, type Json } from "../util";
import { httpFilters } from "./httpFilters";
import type { NamedResource } from "./types";

/*
 * Listeners: `http-<port>` (8080), and `https-<port>` (8443) when a certificate is configured.
 * Names depend only on the port, so a listener's address never changes under its name (Envoy
 * refuses that). Each has one filter chain with the HTTP connection manager:
 * - routes by RDS over ADS (`config_source: {ads: {}, resource_api_version: V3}`), route
 *   configuration `routeConfigName` (shared by both listeners);
 * - the HTTP filters of httpFilters.ts, in that order, router last;
 * - edge settings: use_remote_address (option), normalize_path + merge_slashes (the path that
 *   routes and ext_authz see is the normalised one), strip_matching_host_port (a Host of
 *   `api.example.com:8080` on the 8080 listener matches the domain `api.example.com`);
 * - an access log to stdout (option accessLog).
 * Nothing here depends on the APIs: API changes never touch the listeners.
 */

function dataSource(source: TlsDataSource): Json {
  return "filename" in source ? { filename: source.filename } : { inline_string: source.inlineString };
}

function connectionManager(statPrefix: string, options: ResolvedTranslatorOptions): Json {
  return typed(ENVOY_TYPE_URLS.httpConnectionManager, {
    stat_prefix: statPrefix,
    codec_type: "AUTO",
    rds: { route_config_name: options.routeConfigName, config_source: { ads: {}, resource_api_version: "V3" } },
    http_filters: httpFilters(options),
    ...(options.accessLog
      ? {
          access_log: [
            {
              name: "envoy.access_loggers.stdout",
              typed_config: typed(ENVOY_TYPE_URLS.stdoutAccessLog),
            },
          ],
        }
      : {}),
    use_remote_address: options.useRemoteAddress,
    normalize_path: true,
    merge_slashes: true,
    strip_matching_host_port: true,
  });
}

function listener(name: string, port: number, options: ResolvedTranslatorOptions, tls?: NonNullable<ResolvedTranslatorOptions["tls"]>): NamedResource {
  const chain: Json = {
    filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: connectionManager(name.replace(/-/g, "_"), options) }],
    ...(tls
      ? {
          transport_socket: {
            name: "envoy.transport_sockets.tls",
            typed_config: typed(ENVOY_TYPE_URLS.downstreamTlsContext, {
              common_tls_context: {
                tls_certificates: [{ certificate_chain: dataSource(tls.certificateChain), private_key: dataSource(tls.privateKey) }],
                alpn_protocols: ["h2", "http/1.1"],
              },
            }),
          },
        }
      : {}),
  };
  return {
    name,
    typeUrl: ENVOY_TYPE_URLS.listener,
    resource: { name, address: { socket_address: { address: options.listenAddress, port_value: port } }, filter_chains: [chain] },
  };
}

export function listenerResources(options: ResolvedTranslatorOptions): NamedResource[] {
  const out = [listener(`http-${options.httpPort}`, options.httpPort, options)];
  if (options.tls) out.push(listener(`https-${options.tls.port}`, options.tls.port, options, options.tls));
  return out;
}

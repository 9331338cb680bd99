import { envoyDuration, parseDuration } from "./util";

/**
 * How the translator shapes what does not come from the store. Every field is optional; the
 * defaults are listed on each field and in DEFAULT_TRANSLATOR_OPTIONS. Durations are written as
 * the store writes them (`500ms`, `5s`, `1m`).
 */
export interface TranslatorOptions {
  /** Address the listeners bind. Default `0.0.0.0`. */
  listenAddress?: string;
  /** Plain HTTP listener port. Default 8080; the listener is named `http-<port>`. */
  httpPort?: number;
  /**
   * A second listener with TLS, only when a certificate is given. Default: none. The listener is
   * named `https-<port>` (default port 8443) and serves the same routes.
   */
  tls?: {
    port?: number;
    /** PEM certificate chain: a file path on the Envoy host, or the PEM text itself. */
    certificateChain: TlsDataSource;
    /** PEM private key: a file path on the Envoy host, or the PEM text itself (then it travels in LDS). */
    privateKey: TlsDataSource;
  };
  /** Name of the RouteConfiguration served over RDS (shared by both listeners). Default `apigw-routes`. */
  routeConfigName?: string;
  extAuthz?: {
    /** Static cluster of the ext_authz gRPC service (defined in envoy/envoy.yaml). Default `ext_authz`. */
    clusterName?: string;
    /** Deadline of one Check call. Default `500ms`. */
    timeout?: string;
    /** Let requests through when the service cannot be reached. Default false (fail closed). */
    failureModeAllow?: boolean;
    /** HTTP status when the service fails (and failureModeAllow is false). Default 503. */
    statusOnError?: 503 | 500 | 502 | 504 | 403;
    /**
     * Request body sent with the Check (form bodies are part of AppAuth signatures). Only routes
     * whose API uses appAuth buffer it; the others set `disable_request_body_buffering`.
     * Default `{maxRequestBytes: 8192, allowPartialMessage: true, packAsBytes: true}`; `false`
     * sends no body at all.
     */
    withRequestBody?: { maxRequestBytes?: number; allowPartialMessage?: boolean; packAsBytes?: boolean } | false;
  };
  /** Upstream connect timeout when the API's upstream definition sets none. Default `5s`. */
  defaultConnectTimeout?: string;
  /** Timeout of a whole request on every API route (Envoy's own default is 15 s). Default `30s`. */
  routeTimeout?: string;
  /** Cluster type for upstreams named by a hostname. Default `STRICT_DNS`. */
  dnsClusterType?: "STRICT_DNS" | "LOGICAL_DNS";
  /** DNS lookup family of hostname clusters. Default `V4_PREFERRED`. */
  dnsLookupFamily?: "AUTO" | "V4_ONLY" | "V6_ONLY" | "V4_PREFERRED" | "ALL";
  /**
   * Upstreams given as IP literals: STATIC clusters with inline endpoints (default), or EDS
   * clusters whose ClusterLoadAssignment is sent as an `endpoints` resource (`true`).
   */
  ipUpstreamsViaEds?: boolean;
  /** CA bundle used to verify HTTPS upstreams. Default `/etc/ssl/certs/ca-certificates.crt` (the system bundle of Envoy's image). */
  upstreamTrustedCaFile?: string;
  /** Envoy is the edge: the peer address is the client's and is appended to X-Forwarded-For. Default true. */
  useRemoteAddress?: boolean;
  /** Access log of every request to Envoy's stdout. Default true. */
  accessLog?: boolean;
}

export type TlsDataSource = { filename: string } | { inlineString: string };

export interface ResolvedTranslatorOptions {
  listenAddress: string;
  httpPort: number;
  tls?: { port: number; certificateChain: TlsDataSource; privateKey: TlsDataSource };
  routeConfigName: string;
  extAuthz: {
    clusterName: string;
    timeout: string;
    failureModeAllow: boolean;
    statusOnError: number;
    withRequestBody: { maxRequestBytes: number; allowPartialMessage: boolean; packAsBytes: boolean } | false;
  };
  /** Envoy duration strings from here on. */
  defaultConnectTimeout: string;
  routeTimeout: string;
  dnsClusterType: "STRICT_DNS" | "LOGICAL_DNS";
  dnsLookupFamily: "AUTO" | "V4_ONLY" | "V6_ONLY" | "V4_PREFERRED" | "ALL";
  ipUpstreamsViaEds: boolean;
  upstreamTrustedCaFile: string;
  useRemoteAddress: boolean;
  accessLog: boolean;
}

export const DEFAULT_TRANSLATOR_OPTIONS = {
  listenAddress: "0.0.0.0",
  httpPort: 8080,
  tlsPort: 8443,
  routeConfigName: "apigw-routes",
  extAuthz: {
    clusterName: "ext_authz",
    timeout: "500ms",
    failureModeAllow: false,
    statusOnError: 503,
    withRequestBody: { maxRequestBytes: 8192, allowPartialMessage: true, packAsBytes: true },
  },
  defaultConnectTimeout: "5s",
  routeTimeout: "30s",
  dnsClusterType: "STRICT_DNS",
  dnsLookupFamily: "V4_PREFERRED",
  ipUpstreamsViaEds: false,
  upstreamTrustedCaFile: "/etc/ssl/certs/ca-certificates.crt",
  useRemoteAddress: true,
  accessLog: true,
} as const;

function port(value: number | undefined, fallback: number, what: string): number {
  const p = value ?? fallback;
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`${what}: ${p} is not a TCP port`);
  return p;
}

/** Applies the defaults and checks the values (throws on a malformed option: a programming error, not input). */
export function resolveTranslatorOptions(options: TranslatorOptions = {}): ResolvedTranslatorOptions {
  const d = DEFAULT_TRANSLATOR_OPTIONS;
  const ext = options.extAuthz ?? {};
  const body = ext.withRequestBody === false ? false : { ...d.extAuthz.withRequestBody, ...(ext.withRequestBody ?? {}) };
  const httpPort = port(options.httpPort, d.httpPort, "httpPort");
  const tls = options.tls ? { port: port(options.tls.port, d.tlsPort, "tls.port"), certificateChain: options.tls.certificateChain, privateKey: options.tls.privateKey } : undefined;
  if (tls && tls.port === httpPort) throw new Error("tls.port must differ from httpPort");
  const routeConfigName = options.routeConfigName ?? d.routeConfigName;
  if (!routeConfigName) throw new Error("routeConfigName must not be empty");
  return {
    listenAddress: options.listenAddress ?? d.listenAddress,
    httpPort,
    ...(tls ? { tls } : {}),
    routeConfigName,
    extAuthz: {
      clusterName: ext.clusterName ?? d.extAuthz.clusterName,
      timeout: envoyDuration(parseDuration(ext.timeout ?? d.extAuthz.timeout, "extAuthz.timeout")),
      failureModeAllow: ext.failureModeAllow ?? d.extAuthz.failureModeAllow,
      statusOnError: ext.statusOnError ?? d.extAuthz.statusOnError,
      withRequestBody: body,
    },
    defaultConnectTimeout: envoyDuration(parseDuration(options.defaultConnectTimeout ?? d.defaultConnectTimeout, "defaultConnectTimeout")),
    routeTimeout: envoyDuration(parseDuration(options.routeTimeout ?? d.routeTimeout, "routeTimeout")),
    dnsClusterType: options.dnsClusterType ?? d.dnsClusterType,
    dnsLookupFamily: options.dnsLookupFamily ?? d.dnsLookupFamily,
    ipUpstreamsViaEds: options.ipUpstreamsViaEds ?? d.ipUpstreamsViaEds,
    upstreamTrustedCaFile: options.upstreamTrustedCaFile ?? d.upstreamTrustedCaFile,
    useRemoteAddress: options.useRemoteAddress ?? d.useRemoteAddress,
    accessLog: options.accessLog ?? d.accessLog,
  };
}

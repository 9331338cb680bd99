import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import YAML from "yaml";
import { REPO_ROOT, REQUIRED_MESSAGE_TYPES } from "../../packages/control-plane/src/envoy/schema/build-descriptors";
import { envoyRegistryInfo, loadEnvoyRegistry } from "../../packages/control-plane/src/envoy/schema/registry";
import {
  anyJson,
  anyOf,
  checkEnvoyResource,
  decodeEnvoyResource,
  encodeStrict,
  ENVOY_TYPE_URLS as U,
  EnvoyResourceError,
  uriTemplateProblems,
  validateEnvoyResource,
  type ResourceIssue,
} from "../../packages/control-plane/src/envoy/schema/strict";

type Json = Record<string, any>;

// ---------------------------------------------------------------------------------------------
// Fixtures: valid resources, as the translator will produce them (Envoy YAML field names)

const HCM_PATH = "filter_chains[0].filters[0].typed_config";

function listener(): Json {
  return {
    name: "http_8080",
    address: { socket_address: { address: "0.0.0.0", port_value: 8080 } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: anyJson(U.httpConnectionManager, {
              stat_prefix: "ingress_http",
              codec_type: "AUTO",
              rds: { route_config_name: "routes_8080", config_source: { ads: {}, resource_api_version: "V3" } },
              http_filters: [
                {
                  name: "envoy.filters.http.ext_authz",
                  typed_config: anyJson(U.extAuthz, {
                    grpc_service: { envoy_grpc: { cluster_name: "ext_authz" }, timeout: "0.5s" },
                    transport_api_version: "V3",
                    failure_mode_allow: false,
                    status_on_error: { code: "ServiceUnavailable" },
                  }),
                },
                { name: "envoy.filters.http.cors", typed_config: anyJson(U.cors) },
                { name: "envoy.filters.http.router", typed_config: anyJson(U.router) },
              ],
            }),
          },
        ],
      },
    ],
  };
}

function cluster(): Json {
  return {
    name: "api_petstore",
    type: "STRICT_DNS",
    connect_timeout: "5s",
    lb_policy: "ROUND_ROBIN",
    dns_lookup_family: "V4_ONLY",
    load_assignment: {
      cluster_name: "api_petstore",
      endpoints: [
        { lb_endpoints: [{ endpoint: { address: { socket_address: { address: "petstore.example.com", port_value: 443 } } } }] },
      ],
    },
    transport_socket: {
      name: "envoy.transport_sockets.tls",
      typed_config: anyJson(U.upstreamTlsContext, {
        sni: "petstore.example.com",
        common_tls_context: { validation_context: { trusted_ca: { filename: "/etc/ssl/certs/ca-certificates.crt" } } },
      }),
    },
  };
}

const ROUTES = "virtual_hosts[0].routes";

function routeConfiguration(): Json {
  return {
    name: "routes_8080",
    virtual_hosts: [
      {
        name: "petstore",
        domains: ["petstore.example.com", "*.petstore.example.com"],
        routes: [
          {
            name: "get-pet",
            match: {
              safe_regex: { regex: "^/pets/[0-9]+$" },
              headers: [{ name: ":method", string_match: { exact: "GET" } }],
            },
            route: { cluster: "api_petstore", timeout: "30s", auto_host_rewrite: true },
          },
          {
            name: "book-chapters",
            match: {
              path_match_policy: {
                name: "envoy.path.match.uri_template.uri_template_matcher",
                typed_config: anyJson(U.uriTemplateMatch, { path_template: "/books/{id}/chapters/{rest=**}" }),
              },
            },
            route: {
              cluster: "api_petstore",
              path_rewrite_policy: {
                name: "envoy.path.rewrite.uri_template.uri_template_rewriter",
                typed_config: anyJson(U.uriTemplateRewrite, { path_template_rewrite: "/v2/books/{id}/{rest}" }),
              },
            },
            typed_per_filter_config: {
              "envoy.filters.http.ext_authz": anyJson(U.extAuthzPerRoute, {
                check_settings: { context_extensions: { api: "petstore", route: "book-chapters" } },
              }),
            },
          },
          {
            name: "canary",
            match: { prefix: "/" },
            route: {
              weighted_clusters: {
                clusters: [
                  { name: "api_petstore", weight: 80 },
                  { name: "api_petstore_canary", weight: 20 },
                ],
              },
            },
          },
        ],
        typed_per_filter_config: {
          "envoy.filters.http.cors": anyJson(U.corsPolicy, {
            allow_origin_string_match: [{ exact: "https://app.example.com" }],
            allow_methods: "GET, POST",
          }),
        },
      },
    ],
  };
}

function clusterLoadAssignment(): Json {
  return {
    cluster_name: "api_eds",
    endpoints: [
      {
        lb_endpoints: [
          { endpoint: { address: { socket_address: { address: "10.0.0.12", port_value: 8080 } } } },
          { endpoint: { address: { socket_address: { address: "fd00::12", port_value: 8080 } } }, load_balancing_weight: 2 },
        ],
      },
    ],
  };
}

const VALID: [string, string, () => Json][] = [
  ["Listener with an HCM (RDS over ADS, ext_authz, CORS, router)", U.listener, listener],
  ["Cluster (STRICT_DNS, load_assignment, TLS with SNI)", U.cluster, cluster],
  ["RouteConfiguration (safe_regex, uri_template match + rewrite, weighted clusters)", U.routeConfiguration, routeConfiguration],
  ["ClusterLoadAssignment", U.clusterLoadAssignment, clusterLoadAssignment],
];

// ---------------------------------------------------------------------------------------------

function find(issues: ResourceIssue[], pathExpected: string, messagePart: string | RegExp): ResourceIssue {
  const hit = issues.find(
    (i) => i.path === pathExpected && (typeof messagePart === "string" ? i.message.includes(messagePart) : messagePart.test(i.message)),
  );
  expect(hit, `expected an issue at "${pathExpected}" matching ${messagePart}; got ${JSON.stringify(issues, null, 2)}`).to.not.equal(undefined);
  return hit!;
}

describe("envoy schema: strict encoding and validation", function () {
  before(function () {
    // Loading the committed descriptor set takes ~0.1 s; building it when missing ~1 s.
    this.timeout(60_000);
    loadEnvoyRegistry();
  });

  describe("descriptor set", () => {
    it("holds every type the control plane needs, and the PGV extensions", () => {
      const registry = loadEnvoyRegistry();
      for (const type of REQUIRED_MESSAGE_TYPES) expect(registry.getMessage(type), type).to.not.equal(undefined);
      for (const typeUrl of Object.values(U)) expect(registry.getMessage(typeUrl.split("/")[1]!), typeUrl).to.not.equal(undefined);
      expect(registry.getExtension("validate.rules")).to.not.equal(undefined);
      expect(registry.getMessage("validate.StringRules")!.fields.map((f) => f.name)).to.include("ignore_empty");
      const info = envoyRegistryInfo();
      expect(info.files).to.be.greaterThan(300);
      expect(info.bytes).to.be.lessThan(8 * 1024 * 1024);
    });
  });

  describe("valid resources pass and encode", () => {
    for (const [title, typeUrl, make] of VALID) {
      it(`${title}: no issues, non-empty bytes, nothing lost on a round trip`, () => {
        expect(validateEnvoyResource(typeUrl, make())).to.deep.equal([]);
        const bytes = encodeStrict(typeUrl, make());
        expect(bytes).to.be.instanceOf(Uint8Array);
        expect(bytes.length).to.be.greaterThan(20);
        const { issues, bytes: checked } = checkEnvoyResource(typeUrl, make());
        expect(issues).to.deep.equal([]);
        expect(Buffer.from(checked!).equals(Buffer.from(bytes))).to.equal(true);
        // decoding the bytes gives back what went in (Any payloads included)
        const back = decodeEnvoyResource(typeUrl, bytes);
        expect(encodeStrict(typeUrl, back)).to.deep.equal(bytes);
      });
    }

    it("keeps Any payload fields (the SNI inside the TLS context survives the encoding)", () => {
      const back = decodeEnvoyResource(U.cluster, encodeStrict(U.cluster, cluster())) as Json;
      expect(back.transport_socket.typed_config["@type"]).to.equal(U.upstreamTlsContext);
      expect(back.transport_socket.typed_config.sni).to.equal("petstore.example.com");
      expect(back.type).to.equal("STRICT_DNS");
    });

    it("encodes deterministically whatever the order of map keys", () => {
      const a = routeConfiguration();
      const b = routeConfiguration();
      const route = b.virtual_hosts[0].routes[1];
      route.typed_per_filter_config["envoy.filters.http.ext_authz"].check_settings.context_extensions = {
        route: "book-chapters",
        api: "petstore",
      };
      expect(Object.keys(route.typed_per_filter_config["envoy.filters.http.ext_authz"].check_settings.context_extensions)).to.deep.equal(["route", "api"]);
      expect(Buffer.from(encodeStrict(U.routeConfiguration, a)).equals(Buffer.from(encodeStrict(U.routeConfiguration, b)))).to.equal(true);
    });

    it("accepts lowerCamelCase JSON names and bare type names", () => {
      const c = cluster();
      c.connectTimeout = c.connect_timeout;
      delete c.connect_timeout;
      expect(validateEnvoyResource("envoy.config.cluster.v3.Cluster", c)).to.deep.equal([]);
    });

    it("anyOf gives {type_url, value} for a DiscoveryResponse and refuses an invalid resource", () => {
      const any = anyOf(U.cluster, cluster());
      expect(any.type_url).to.equal("type.googleapis.com/envoy.config.cluster.v3.Cluster");
      expect(any.value).to.deep.equal(encodeStrict(U.cluster, cluster()));
      const nameless = cluster();
      delete nameless.name;
      expect(() => anyOf(U.cluster, nameless))
        .to.throw(EnvoyResourceError)
        .that.satisfies((e: EnvoyResourceError) => e.issues.some((i) => i.path === "name"));
    });

    it("validates the ADS and ext_authz messages (Discovery*, Delta*, CheckRequest/CheckResponse)", () => {
      const node = { id: "envoy-1", cluster: "gw" };
      expect(validateEnvoyResource(U.discoveryRequest, { node, type_url: U.cluster, version_info: "", response_nonce: "" })).to.deep.equal([]);
      expect(
        validateEnvoyResource(U.discoveryResponse, {
          version_info: "7",
          nonce: "n7",
          type_url: U.cluster,
          resources: [anyJson(U.cluster, cluster())],
        }),
      ).to.deep.equal([]);
      expect(validateEnvoyResource(U.deltaDiscoveryRequest, { node, type_url: U.clusterLoadAssignment, resource_names_subscribe: ["api_eds"] })).to.deep.equal([]);
      expect(
        validateEnvoyResource(U.deltaDiscoveryResponse, {
          system_version_info: "7",
          nonce: "d1",
          type_url: U.clusterLoadAssignment,
          resources: [{ name: "api_eds", version: "abc", resource: anyJson(U.clusterLoadAssignment, clusterLoadAssignment()) }],
          removed_resources: ["old"],
        }),
      ).to.deep.equal([]);
      expect(
        validateEnvoyResource(U.checkRequest, {
          attributes: {
            source: { address: { socket_address: { address: "192.0.2.1", port_value: 50000 } } },
            request: { http: { method: "GET", path: "/pets/1?x=1", host: "petstore.example.com", scheme: "https", headers: { ":path": "/pets/1?x=1" } } },
            context_extensions: { api: "petstore" },
          },
        }),
      ).to.deep.equal([]);
      expect(
        validateEnvoyResource(U.checkResponse, {
          status: { code: 0 },
          ok_response: { headers: [{ header: { key: "x-consumer", value: "carol" } }], headers_to_remove: ["authorization"] },
        }),
      ).to.deep.equal([]);
      expect(
        validateEnvoyResource(U.checkResponse, {
          status: { code: 16 },
          denied_response: { status: { code: "Unauthorized" }, body: '{"error":"invalid key"}' },
        }),
      ).to.deep.equal([]);
    });
  });

  describe("decode errors (nothing is dropped silently)", () => {
    it("an unknown field, with a hint", () => {
      const c = cluster();
      c.conect_timeout = "5s";
      const issue = find(validateEnvoyResource(U.cluster, c), "conect_timeout", 'unknown field "conect_timeout"');
      expect(issue.message).to.include('did you mean "connect_timeout"');
      expect(() => encodeStrict(U.cluster, c)).to.throw(EnvoyResourceError, /conect_timeout/);
    });

    it("an unknown field inside an Any payload", () => {
      const l = listener();
      l.filter_chains[0].filters[0].typed_config.stat_prefx = "x";
      find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.stat_prefx`, "unknown field");
    });

    it('a misspelled enum name (type: "STRICT_DNZ") is not turned into STATIC', () => {
      const c = cluster();
      c.type = "STRICT_DNZ";
      const issue = find(validateEnvoyResource(U.cluster, c), "type", '"STRICT_DNZ"');
      expect(issue.message).to.include("STRICT_DNS");
      expect(() => encodeStrict(U.cluster, c)).to.throw(EnvoyResourceError);
    });

    it("a misspelled Any @type", () => {
      const l = listener();
      l.filter_chains[0].filters[0].typed_config.http_filters[2].typed_config["@type"] =
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr";
      const issue = find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.http_filters[2].typed_config.@type`, "unknown type");
      expect(issue.message).to.include(U.router);
    });

    it("a wrong JSON type: a string where an integer is expected", () => {
      const c = cluster();
      c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = "eighty";
      find(
        validateEnvoyResource(U.cluster, c),
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value",
        /"eighty".*uint32/,
      );
    });

    it("a wrong JSON type: a number where a duration string is expected, an object where a list is", () => {
      const c = cluster();
      c.connect_timeout = 5;
      c.load_assignment.endpoints = { lb_endpoints: [] };
      const issues = validateEnvoyResource(U.cluster, c);
      find(issues, "connect_timeout", "google.protobuf.Duration");
      find(issues, "load_assignment.endpoints", "expected a list");
    });

    it("two members of one oneof, and one field given twice", () => {
      const c = cluster();
      c.cluster_type = { name: "envoy.clusters.aggregate" };
      c.connectTimeout = "1s";
      const issues = validateEnvoyResource(U.cluster, c);
      // keys are read in sorted order, so the second member met is "type"
      find(issues, "type", /only one of type, cluster_type.*cluster_type is set too/);
      find(issues, "connect_timeout", "set more than once");
    });

    it("an unknown resource type", () => {
      find(validateEnvoyResource("type.googleapis.com/envoy.config.cluster.v3.Clusterr", {}), "", "unknown resource type");
    });
  });

  describe("protoc-gen-validate rules", () => {
    it("a Cluster without a name (string min_len)", () => {
      const c = cluster();
      delete c.name;
      find(validateEnvoyResource(U.cluster, c), "name", "must not be empty");
    });

    it("connect_timeout 0s (duration gt 0)", () => {
      const c = cluster();
      c.connect_timeout = "0s";
      find(validateEnvoyResource(U.cluster, c), "connect_timeout", "greater than 0s");
    });

    it("a route without its required action, and one without its required match", () => {
      const rc = routeConfiguration();
      delete rc.virtual_hosts[0].routes[0].route;
      delete rc.virtual_hosts[0].routes[2].match;
      rc.virtual_hosts[0].routes[1].match = { case_sensitive: true };
      const issues = validateEnvoyResource(U.routeConfiguration, rc);
      find(issues, `${ROUTES}[0].action`, /one of route, redirect, .* is required/);
      find(issues, `${ROUTES}[2].match`, "is required");
      find(issues, `${ROUTES}[1].match.path_specifier`, /one of prefix, path, safe_regex.* is required/);
    });

    it("weighted clusters: a weight out of the uint32 range, a zero sum, an overflowing sum", () => {
      const rc = routeConfiguration();
      const wc = rc.virtual_hosts[0].routes[2].route.weighted_clusters;
      wc.clusters[0].weight = 4294967296;
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[2].route.weighted_clusters.clusters[0].weight`, "out of range");

      wc.clusters[0].weight = 0;
      wc.clusters[1].weight = 0;
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[2].route.weighted_clusters.clusters`, "greater than 0");

      wc.clusters[0].weight = 4294967295;
      wc.clusters[1].weight = 1;
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[2].route.weighted_clusters.clusters`, "must not exceed 4294967295");

      wc.clusters = [];
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[2].route.weighted_clusters.clusters`, "at least 1 item");
    });

    it("ExtAuthz with an empty gRPC cluster name (inside the listener's Any payloads, and alone)", () => {
      const l = listener();
      const extAuthz = l.filter_chains[0].filters[0].typed_config.http_filters[0].typed_config;
      extAuthz.grpc_service.envoy_grpc.cluster_name = "";
      find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.http_filters[0].typed_config.grpc_service.envoy_grpc.cluster_name`, "must not be empty");
      const { "@type": _type, ...alone } = extAuthz;
      find(validateEnvoyResource(U.extAuthz, alone), "grpc_service.envoy_grpc.cluster_name", "must not be empty");
    });

    it("HCM without stat_prefix, and a header name that is not a valid HTTP header name", () => {
      const l = listener();
      delete l.filter_chains[0].filters[0].typed_config.stat_prefix;
      const rc = routeConfiguration();
      // HeaderValue.key uses the loose form of HTTP_HEADER_NAME: a space passes, a line break does not
      rc.virtual_hosts[0].request_headers_to_add = [{ header: { key: "x-bad\r\nx-injected", value: "1" } }];
      find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.stat_prefix`, "must not be empty");
      find(validateEnvoyResource(U.routeConfiguration, rc), "virtual_hosts[0].request_headers_to_add[0].header.key", "HTTP header name");
    });

    it("enum defined_only, repeated min_items, map min_pairs, uint32 ranges", () => {
      const c = cluster();
      c.lb_policy = 42; // a number that is not a defined LbPolicy
      c.circuit_breakers = { thresholds: [{ priority: "DEFAULT", max_connections: 10 }] };
      c.health_checks = [
        { timeout: "1s", interval: "5s", unhealthy_threshold: 3, healthy_threshold: 1, http_health_check: { path: "/health" } },
      ];
      const issues = validateEnvoyResource(U.cluster, c);
      find(issues, "lb_policy", "not a defined value");
      expect(issues).to.have.length(1);

      const l = listener();
      l.filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.status_on_error = { code: 42 };
      find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.http_filters[0].typed_config.status_on_error.code`, "not a defined value");

      const rc = routeConfiguration();
      rc.virtual_hosts[0].domains = [];
      find(validateEnvoyResource(U.routeConfiguration, rc), "virtual_hosts[0].domains", "at least 1 item");

      const hc = cluster();
      hc.health_checks = [{ timeout: "1s", interval: "5s", http_health_check: { path: "/health" } }];
      const hcIssues = validateEnvoyResource(U.cluster, hc);
      find(hcIssues, "health_checks[0].unhealthy_threshold", "is required");

      // uint32 gte/lte on wrapper fields, inside an Any inside a map
      const h2 = cluster();
      h2.typed_extension_protocol_options = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": anyJson(U.httpProtocolOptions, {
          explicit_http_config: { http2_protocol_options: { initial_stream_window_size: 1000, max_concurrent_streams: 0 } },
        }),
      };
      const h2Path = 'typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicit_http_config.http2_protocol_options';
      const h2Issues = validateEnvoyResource(U.cluster, h2);
      find(h2Issues, `${h2Path}.initial_stream_window_size`, "greater than or equal to 65535 and less than or equal to 2147483647 (got 1000)");
      find(h2Issues, `${h2Path}.max_concurrent_streams`, "greater than or equal to 1");

      // map min_pairs
      const matcher = {
        matcher_tree: {
          input: { name: "header", typed_config: anyJson("envoy.type.matcher.v3.HttpRequestHeaderMatchInput", { header_name: "x-tenant" }) },
          exact_match_map: { map: {} },
        },
      };
      find(validateEnvoyResource("envoy.config.common.matcher.v3.Matcher", matcher), "matcher_tree.exact_match_map.map", "at least 1 entry");
    });

    it("an Any left empty (typed_config: {}) is an issue", () => {
      const c = cluster();
      c.transport_socket.typed_config = {};
      find(validateEnvoyResource(U.cluster, c), "transport_socket.typed_config", "without");
    });

    it("deprecated fields are reported only when asked", () => {
      const rc = routeConfiguration();
      rc.virtual_hosts[0].routes[2].route.weighted_clusters.total_weight = 100;
      expect(validateEnvoyResource(U.routeConfiguration, rc)).to.deep.equal([]);
      find(validateEnvoyResource(U.routeConfiguration, rc, { deprecated: true }), `${ROUTES}[2].route.weighted_clusters.total_weight`, "deprecated");
    });
  });

  describe("RE2 regexes", () => {
    it("a lookahead (?=x) is refused at its safe_regex.regex", () => {
      const rc = routeConfiguration();
      rc.virtual_hosts[0].routes[0].match.safe_regex.regex = "^/pets/(?=x)";
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[0].match.safe_regex.regex`, "not a valid RE2");
    });

    it("a backreference in a header matcher's safe_regex is refused", () => {
      const rc = routeConfiguration();
      rc.virtual_hosts[0].routes[0].match.headers.push({ name: "x-tag", string_match: { safe_regex: { regex: "(a)\\1" } } });
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[0].match.headers[1].string_match.safe_regex.regex`, "RE2");
    });

    it("a regex whose program is larger than Envoy's limit is refused", () => {
      const rc = routeConfiguration();
      const alternation = "users|orders|products|invoices|customers|payments|shipments|carts|reviews|categories|suppliers|warehouses";
      rc.virtual_hosts[0].routes[0].match.safe_regex.regex = `^/(${alternation})/[0-9]+$`;
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[0].match.safe_regex.regex`, "program size");
      expect(validateEnvoyResource(U.routeConfiguration, rc, { regexProgramSizeLimit: 100_000 })).to.deep.equal([]);
    });
  });

  describe("Envoy rules beyond PGV", () => {
    it("a domain in two virtual hosts, a duplicate virtual host name, a misplaced wildcard", () => {
      const rc = routeConfiguration();
      rc.virtual_hosts.push({
        name: "petstore",
        domains: ["PETSTORE.example.com", "pet*.example.com"],
        routes: [{ match: { prefix: "/" }, direct_response: { status: 404 } }],
      });
      const issues = validateEnvoyResource(U.routeConfiguration, rc);
      find(issues, "virtual_hosts[1].name", "duplicate virtual host name");
      find(issues, "virtual_hosts[1].domains[0]", "duplicate domain");
      find(issues, "virtual_hosts[1].domains[1]", "first or the last character");
    });

    it("URI templates: a variable name with a dash, a rewrite variable the match does not capture", () => {
      const rc = routeConfiguration();
      const route = rc.virtual_hosts[0].routes[1];
      route.match.path_match_policy.typed_config.path_template = "/books/{book-id}";
      route.route.path_rewrite_policy.typed_config.path_template_rewrite = "/v2/books/{id}";
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[1].match.path_match_policy.typed_config.path_template`, 'variable name "book-id"');

      route.match.path_match_policy.typed_config.path_template = "/books/{book_id}";
      find(
        validateEnvoyResource(U.routeConfiguration, rc),
        `${ROUTES}[1].route.path_rewrite_policy.typed_config.path_template_rewrite`,
        'variable "id" is not captured by the match template (has book_id)',
      );
    });

    it("URI template syntax rules", () => {
      expect(uriTemplateProblems("/books/{id}/chapters/{rest=**}", "match").problems).to.deep.equal([]);
      expect(uriTemplateProblems("books/{id}", "match").problems.join()).to.include('start with "/"');
      expect(uriTemplateProblems("/a//b", "match").problems.join()).to.include("//");
      expect(uriTemplateProblems("/{rest=**}/{x}", "match").problems.join()).to.include('may follow "**"');
      expect(uriTemplateProblems("/{path=**}.m3u8", "match").problems).to.deep.equal([]); // literals may follow
      expect(uriTemplateProblems("/a*b", "match").problems.join()).to.include("invalid literal");
      expect(uriTemplateProblems("/a b", "match").problems.join()).to.include("printable");
      expect(uriTemplateProblems("/{a}/{b}/{c}/{d}/{e}/{f}", "match").problems.join()).to.include("at most 5");
      expect(uriTemplateProblems("/{a}/{a}", "match").problems.join()).to.include("twice");
      expect(uriTemplateProblems("/x/{id=*}", "rewrite").problems.join()).to.include("plain {id}");
    });

    it("two rewrites at once on one route", () => {
      const rc = routeConfiguration();
      rc.virtual_hosts[0].routes[1].route.prefix_rewrite = "/v2/";
      find(validateEnvoyResource(U.routeConfiguration, rc), `${ROUTES}[1].route.path_rewrite_policy`, "only one of prefix_rewrite");
    });

    it("the router filter must be the last HTTP filter", () => {
      const l = listener();
      const filters = l.filter_chains[0].filters[0].typed_config.http_filters;
      filters.reverse();
      const issues = validateEnvoyResource(U.listener, l);
      find(issues, `${HCM_PATH}.http_filters[0]`, "router filter must be the last");
      find(issues, `${HCM_PATH}.http_filters[2]`, "last HTTP filter must be the router");
    });

    it("ExtAuthz transport_api_version must be V3", () => {
      const l = listener();
      delete l.filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.transport_api_version;
      find(validateEnvoyResource(U.listener, l), `${HCM_PATH}.http_filters[0].typed_config.transport_api_version`, "must be V3");
    });

    it("clusters: DNS/STATIC need endpoints, STATIC needs IPs, EDS needs eds_config; EDS endpoints are IPs", () => {
      const noEndpoints = cluster();
      delete noEndpoints.load_assignment;
      find(validateEnvoyResource(U.cluster, noEndpoints), "load_assignment", "at least one endpoint");

      const staticHost = cluster();
      staticHost.type = "STATIC";
      find(
        validateEnvoyResource(U.cluster, staticHost),
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
        "must be an IP address",
      );

      const eds = { name: "api_eds", type: "EDS", connect_timeout: "1s" };
      find(validateEnvoyResource(U.cluster, eds), "eds_cluster_config.eds_config", "EDS cluster");
      expect(
        validateEnvoyResource(U.cluster, { ...eds, eds_cluster_config: { eds_config: { ads: {}, resource_api_version: "V3" } } }),
      ).to.deep.equal([]);

      const cla = clusterLoadAssignment();
      cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = "backend.internal";
      find(
        validateEnvoyResource(U.clusterLoadAssignment, cla),
        "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address",
        "must be an IP address",
      );
    });

    it("a DiscoveryResponse whose resources do not match its type_url or repeat a name", () => {
      const issues = validateEnvoyResource(U.discoveryResponse, {
        version_info: "1",
        nonce: "n1",
        type_url: U.cluster,
        resources: [anyJson(U.cluster, cluster()), anyJson(U.cluster, cluster()), anyJson(U.clusterLoadAssignment, clusterLoadAssignment())],
      });
      find(issues, "resources[1]", 'resource "api_petstore" appears twice');
      find(issues, "resources[2]", "differs from the response's type_url");
    });

    it("semantic rules can be turned off (PGV still applies)", () => {
      const l = listener();
      l.filter_chains[0].filters[0].typed_config.http_filters.reverse();
      expect(validateEnvoyResource(U.listener, l, { semantic: false })).to.deep.equal([]);
    });
  });

  describe("envoy/envoy.yaml", () => {
    const file = path.join(REPO_ROOT, "envoy", "envoy.yaml");

    it("validates as envoy.config.bootstrap.v3.Bootstrap with no issues", () => {
      const bootstrap = YAML.parse(fs.readFileSync(file, "utf8"));
      expect(validateEnvoyResource(U.bootstrap, bootstrap)).to.deep.equal([]);
      expect(encodeStrict(U.bootstrap, bootstrap).length).to.be.greaterThan(100);
    });

    it("has ADS over gRPC, V3, node on first message only, and HTTP/2 static clusters", () => {
      const bootstrap = YAML.parse(fs.readFileSync(file, "utf8"));
      const ads = bootstrap.dynamic_resources.ads_config;
      expect(ads).to.include({ api_type: "GRPC", transport_api_version: "V3", set_node_on_first_message_only: true });
      expect(ads.grpc_services[0].envoy_grpc.cluster_name).to.equal("xds_cluster");
      expect(bootstrap.dynamic_resources.cds_config).to.deep.equal({ ads: {}, resource_api_version: "V3" });
      expect(bootstrap.dynamic_resources.lds_config).to.deep.equal({ ads: {}, resource_api_version: "V3" });
      const clusters = Object.fromEntries(bootstrap.static_resources.clusters.map((c: Json) => [c.name, c]));
      for (const [name, host, port] of [["xds_cluster", "control-plane", 18000], ["ext_authz", "ext-authz", 9191]] as const) {
        const c = clusters[name];
        expect(c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).to.deep.equal({ address: host, port_value: port });
        const options = c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        expect(options["@type"]).to.equal(U.httpProtocolOptions);
        expect(options.explicit_http_config).to.have.property("http2_protocol_options");
      }
      expect(bootstrap.admin.address.socket_address.port_value).to.equal(9901);
    });

    it("a typo in the bootstrap would be caught", () => {
      const bootstrap = YAML.parse(fs.readFileSync(file, "utf8"));
      bootstrap.dynamic_resources.ads_config.api_type = "GRCP";
      find(validateEnvoyResource(U.bootstrap, bootstrap), "dynamic_resources.ads_config.api_type", '"GRCP"');
    });
  });
});

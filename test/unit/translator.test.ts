import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { CONTEXT_EXTENSIONS } from "@apigw/shared";
import { ENVOY_TYPE_URLS as U, validateEnvoyResource } from "../../packages/control-plane/src/envoy/schema/strict";
import type { GatewayApi, GatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { loadGatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { caseInput, GOLDEN_DIR, goldenCases, readJson } from "../support/golden";
import {
  buildIr,
  GATEWAY_LABEL,
  HTTP_FILTERS,
  resolveTranslatorOptions,
  selectApisForGateway,
  translate,
  type EnvoyResources,
  type NamedResource,
  type TranslatorOptions,
} from "../../packages/control-plane/src/translator/index";
import { del, post } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

type Json = Record<string, any>;

/*
 * Golden files: test/golden/translator/<case>.input.json (a GatewayConfig), optional
 * <case>.options.json (TranslatorOptions) and <case>.output.json (the EnvoyResources, as
 * JSON.stringify(resources, null, 2)). `UPDATE_GOLDEN=1 npx mocha test/unit/translator.test.ts`
 * rewrites the outputs (and deletes outputs whose input is gone); review the diff before keeping it.
 */
const UPDATE = process.env.UPDATE_GOLDEN === "1";
const KINDS = ["listeners", "routes", "clusters", "endpoints"] as const;
const cases = goldenCases;

const serialize = (resources: EnvoyResources) => JSON.stringify(resources, null, 2) + "\n";

const EXPECTED_TYPE: Record<(typeof KINDS)[number], string> = {
  listeners: U.listener,
  routes: U.routeConfiguration,
  clusters: U.cluster,
  endpoints: U.clusterLoadAssignment,
};

/** Schema issues of every resource, as `kind/name: path: message`. */
function schemaIssues(resources: EnvoyResources): string[] {
  const out: string[] = [];
  for (const kind of KINDS) {
    for (const r of resources[kind]) {
      for (const issue of validateEnvoyResource(r.typeUrl, r.resource)) out.push(`${kind}/${r.name}: ${issue.path}: ${issue.message}`);
    }
  }
  return out;
}

function hcmOf(listener: NamedResource): Json {
  return (listener.resource as Json).filter_chains[0].filters[0].typed_config;
}

/** Rules that span resources, which the per-resource schema check cannot see. */
function consistencyIssues(resources: EnvoyResources): string[] {
  const out: string[] = [];
  for (const kind of KINDS) {
    const names = resources[kind].map((r) => r.name);
    if (new Set(names).size !== names.length) out.push(`${kind}: duplicate names`);
    if (JSON.stringify(names) !== JSON.stringify([...names].sort())) out.push(`${kind}: not sorted by name`);
    for (const r of resources[kind]) {
      if (r.typeUrl !== EXPECTED_TYPE[kind]) out.push(`${kind}/${r.name}: type URL ${r.typeUrl}`);
      const own = kind === "endpoints" ? (r.resource as Json).cluster_name : (r.resource as Json).name;
      if (own !== r.name) out.push(`${kind}/${r.name}: the resource is named ${own}`);
      if ("@type" in r.resource) out.push(`${kind}/${r.name}: top-level @type`);
    }
  }
  const routeNames = new Set(resources.routes.map((r) => r.name));
  const clusterNames = new Set(resources.clusters.map((r) => r.name));
  const referenced = new Set<string>();
  for (const listener of resources.listeners) {
    const hcm = hcmOf(listener);
    if (!routeNames.has(hcm.rds.route_config_name)) out.push(`listener ${listener.name}: RDS names a missing route configuration`);
    const filters = new Set((hcm.http_filters as Json[]).map((f) => f.name));
    for (const rc of resources.routes) {
      for (const vh of (rc.resource as Json).virtual_hosts as Json[]) {
        for (const route of vh.routes as Json[]) {
          for (const key of Object.keys(route.typed_per_filter_config ?? {})) {
            if (!filters.has(key)) out.push(`route ${route.name}: typed_per_filter_config key ${key} is not a filter of ${listener.name}`);
          }
        }
      }
    }
  }
  for (const rc of resources.routes) {
    const vhosts = (rc.resource as Json).virtual_hosts as Json[];
    for (const vh of vhosts) {
      const routes = vh.routes as Json[];
      const last = routes[routes.length - 1];
      if (last?.match?.prefix !== "/" || last?.direct_response?.status !== 404) out.push(`vhost ${vh.name}: does not end with the 404 catch-all`);
      for (const route of routes) {
        const action = route.route as Json | undefined;
        if (!action) continue;
        const targets: string[] = action.cluster ? [action.cluster] : (action.weighted_clusters.clusters as Json[]).map((c) => c.name);
        for (const t of targets) {
          referenced.add(t);
          if (!clusterNames.has(t)) out.push(`route ${route.name}: cluster ${t} is not emitted`);
        }
        if (action.prefix_rewrite !== undefined && route.match.path_match_policy) out.push(`route ${route.name}: prefix_rewrite with a URI template match`);
      }
    }
  }
  for (const name of clusterNames) if (!referenced.has(name)) out.push(`cluster ${name}: no route uses it`);
  const eds = resources.clusters.filter((c) => (c.resource as Json).type === "EDS").map((c) => c.name);
  const cla = resources.endpoints.map((e) => e.name);
  if (JSON.stringify(eds) !== JSON.stringify(cla)) out.push(`EDS clusters ${eds.join(",")} and endpoints ${cla.join(",")} differ`);
  return out;
}

/** All routes of all virtual hosts of a translation. */
function routesOf(resources: EnvoyResources): { vhost: string; route: Json }[] {
  return resources.routes.flatMap((rc) => ((rc.resource as Json).virtual_hosts as Json[]).flatMap((vh) => (vh.routes as Json[]).map((route) => ({ vhost: vh.name as string, route }))));
}

function vhost(resources: EnvoyResources, name: string): Json {
  const found = ((resources.routes[0]!.resource as Json).virtual_hosts as Json[]).find((v) => v.name === name);
  if (!found) throw new Error(`no virtual host ${name}`);
  return found;
}

const matchText = (route: Json): string =>
  route.match.path ?? route.match.prefix ?? route.match.path_match_policy?.typed_config.path_template ?? JSON.stringify(route.match);
/** The method a route was declared for (a GET route's matcher may also accept HEAD). */
const methodOf = (route: Json): string | undefined => {
  const m = route.match.headers?.[0]?.string_match;
  return m?.exact ?? m?.safe_regex?.regex.split("|")[0];
};
/** Whether a route's :method matcher accepts `method` (exact, or an RE2 alternation matched in full). */
const acceptsMethod = (route: Json, method: string): boolean => {
  const m = route.match.headers?.[0]?.string_match;
  if (!m) return true;
  if (m.exact !== undefined) return m.exact === method;
  return new RegExp(`^(?:${m.safe_regex.regex})$`).test(method);
};

/** Index of the first route (in match order) that answers `method` on `path`: a tiny Envoy route matcher for the forms we emit. */
function firstMatch(routes: Json[], method: string, requestPath: string): Json | undefined {
  return routes.find((route) => {
    if (!acceptsMethod(route, method)) return false;
    if (route.match.prefix !== undefined) return requestPath.startsWith(route.match.prefix);
    if (route.match.path !== undefined) return route.match.path === requestPath;
    const template: string = route.match.path_match_policy.typed_config.path_template;
    const source = template
      .split(/(\{[^}]*\}|\*\*)/)
      .map((part) => {
        if (part === "**" || /=\*\*\}$/.test(part)) return "[a-zA-Z0-9\\-._~%!$&'()+,;:@=/]*";
        if (part.startsWith("{")) return "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]+";
        return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      })
      .join("");
    return new RegExp(`^${source}$`).test(requestPath);
  });
}

function gatewayApi(handle: string, overrides: Partial<GatewayApi> = {}): GatewayApi {
  return {
    id: `00000000-0000-4000-8000-${handle.length.toString().padStart(12, "0")}`,
    handle,
    displayName: handle,
    version: "v1",
    context: `/${handle}`,
    resolvedContext: `/${handle}`,
    labels: {},
    annotations: {},
    upstreamDefinitions: [],
    subscriptionPlans: [],
    updatedAt: "2025-06-01T12:00:00.000Z",
    stages: [
      {
        stage: "RELEASE",
        vhost: "*",
        upstream: { url: `http://${handle}.internal:8080`, hostRewrite: "auto" },
        policies: [],
        operations: [{ method: "GET", path: "/items", policies: [] }],
      },
    ],
    ...overrides,
  };
}

describe("translator", () => {
  describe("golden files", () => {
    it("has a case per feature", () => {
      expect(cases).to.include.members([
        "basic",
        "templates-ordering",
        "merged-vhosts",
        "sandbox-stage",
        "weighted-upstreams",
        "operation-upstream",
        "tls-and-ip-upstreams",
        "host-rewrite-manual",
        "headers",
        "cors",
        "circuit-breaker",
        "ext-authz",
        "empty",
      ]);
    });

    it("has no output file without an input file", () => {
      const stale = fs
        .readdirSync(GOLDEN_DIR)
        .filter((f) => f.endsWith(".output.json") || f.endsWith(".options.json"))
        .filter((f) => !cases.includes(f.replace(/\.(output|options)\.json$/, "")));
      if (UPDATE) for (const f of stale) fs.rmSync(path.join(GOLDEN_DIR, f));
      else expect(stale).to.deep.equal([]);
    });

    for (const name of cases) {
      describe(name, () => {
        const outputFile = path.join(GOLDEN_DIR, `${name}.output.json`);

        it("translates to the expected resources", () => {
          const { config, options } = caseInput(name);
          const actual = serialize(translate(config, options));
          if (UPDATE) fs.writeFileSync(outputFile, actual);
          expect(fs.existsSync(outputFile), `${outputFile} is missing: run with UPDATE_GOLDEN=1`).to.equal(true);
          expect(actual).to.equal(fs.readFileSync(outputFile, "utf8"));
        });

        it("has an expected output that passes Envoy's schema with zero issues", () => {
          const expected = readJson<EnvoyResources>(outputFile);
          const count = KINDS.reduce((n, k) => n + expected[k].length, 0);
          expect(count).to.be.greaterThan(0);
          expect(schemaIssues(expected)).to.deep.equal([]);
        });

        it("has an expected output whose resources are consistent with each other", () => {
          expect(consistencyIssues(readJson<EnvoyResources>(outputFile))).to.deep.equal([]);
        });

        it("is deterministic: twice the same, and the same with the APIs and operations shuffled", () => {
          const { config, options } = caseInput(name);
          const once = serialize(translate(config, options));
          expect(serialize(translate(structuredClone(config), options))).to.equal(once);
          const shuffled: GatewayConfig = structuredClone(config);
          shuffled.apis.reverse();
          if (shuffled.apis.length > 2) shuffled.apis.push(shuffled.apis.shift()!);
          for (const api of shuffled.apis) for (const stage of api.stages) stage.operations.reverse();
          for (const api of shuffled.apis) api.stages.reverse();
          expect(serialize(translate(shuffled, options))).to.equal(once);
        });
      });
    }
  });

  describe("listener and HTTP filters", () => {
    it("uses the documented defaults: http-8080 on 0.0.0.0, RDS over ADS, CORS then ext_authz then router", () => {
      const out = translate({ revision: 1, apis: [] });
      expect(out.listeners.map((l) => l.name)).to.deep.equal(["http-8080"]);
      const listener = out.listeners[0]!.resource as Json;
      expect(listener.address).to.deep.equal({ socket_address: { address: "0.0.0.0", port_value: 8080 } });
      const hcm = hcmOf(out.listeners[0]!);
      expect(hcm.rds).to.deep.equal({ route_config_name: "apigw-routes", config_source: { ads: {}, resource_api_version: "V3" } });
      expect((hcm.http_filters as Json[]).map((f) => f.name)).to.deep.equal([
        "envoy.filters.http.cors",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
      ]);
      expect(HTTP_FILTERS.map((f) => f.name)).to.deep.equal((hcm.http_filters as Json[]).map((f) => f.name));
      const extAuthz = (hcm.http_filters as Json[])[1]!.typed_config;
      expect(extAuthz).to.deep.include({
        grpc_service: { envoy_grpc: { cluster_name: "ext_authz" }, timeout: "0.500s" },
        transport_api_version: "V3",
        failure_mode_allow: false,
        status_on_error: { code: "ServiceUnavailable" },
        with_request_body: { max_request_bytes: 8192, allow_partial_message: true, pack_as_bytes: true },
      });
      expect(out.routes.map((r) => r.name)).to.deep.equal(["apigw-routes"]);
      expect(out.clusters).to.deep.equal([]);
      expect(out.endpoints).to.deep.equal([]);
    });

    it("adds the TLS listener only when a certificate is configured, with inline PEM or files", () => {
      const inline = translate({ revision: 1, apis: [] }, { tls: { certificateChain: { inlineString: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n" }, privateKey: { inlineString: "-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n" } } });
      expect(inline.listeners.map((l) => l.name)).to.deep.equal(["http-8080", "https-8443"]);
      const tls = (inline.listeners[1]!.resource as Json).filter_chains[0].transport_socket;
      expect(tls.typed_config["@type"]).to.equal("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext");
      expect(tls.typed_config.common_tls_context.tls_certificates[0].private_key).to.have.property("inline_string");
      expect(schemaIssues(inline)).to.deep.equal([]);
      expect(hcmOf(inline.listeners[1]!).rds.route_config_name).to.equal(hcmOf(inline.listeners[0]!).rds.route_config_name);
    });

    it("does not change the listeners when APIs change (no drain on API updates)", () => {
      const a = translate({ revision: 1, apis: [] });
      const b = translate({ revision: 2, apis: [gatewayApi("x", { stages: [{ ...gatewayApi("x").stages[0]!, policies: [{ type: "apiKeyAuth", version: "v1", params: {}, enforcedBy: "ext_authz", source: { kind: "inline", scope: "api" } }] }] })] });
      expect(JSON.stringify(b.listeners)).to.equal(JSON.stringify(a.listeners));
    });

    it("honours the options and refuses malformed ones", () => {
      const out = translate({ revision: 1, apis: [gatewayApi("x")] }, {
        httpPort: 10000,
        routeConfigName: "edge",
        extAuthz: { clusterName: "authz", timeout: "250ms", statusOnError: 403, withRequestBody: false },
        routeTimeout: "1m",
        defaultConnectTimeout: "750ms",
        useRemoteAddress: false,
      });
      expect(out.listeners[0]!.name).to.equal("http-10000");
      const hcm = hcmOf(out.listeners[0]!);
      expect(hcm.rds.route_config_name).to.equal("edge");
      expect(hcm.use_remote_address).to.equal(false);
      const extAuthz = (hcm.http_filters as Json[])[1]!.typed_config;
      expect(extAuthz.grpc_service).to.deep.equal({ envoy_grpc: { cluster_name: "authz" }, timeout: "0.250s" });
      expect(extAuthz.status_on_error).to.deep.equal({ code: "Forbidden" });
      expect(extAuthz).to.not.have.property("with_request_body");
      expect(routesOf(out)[0]!.route.route.timeout).to.equal("60s");
      expect((out.clusters[0]!.resource as Json).connect_timeout).to.equal("0.750s");
      expect(schemaIssues(out)).to.deep.equal([]);
      expect(() => resolveTranslatorOptions({ httpPort: 70000 })).to.throw(/port/);
      expect(() => resolveTranslatorOptions({ routeTimeout: "soon" })).to.throw(/routeTimeout/);
      expect(() => resolveTranslatorOptions({ tls: { port: 8080, certificateChain: { filename: "a" }, privateKey: { filename: "b" } } })).to.throw(/differ/);
    });
  });

  describe("routes", () => {
    const { config } = caseInput("templates-ordering");
    const out = translate(config);
    const routes = vhost(out, "*").routes as Json[];

    it("orders literal paths before templates, so /books/new is not shadowed by /books/{id}", () => {
      expect(firstMatch(routes, "GET", "/library/books/new")!.name).to.equal("library RELEASE GET /books/new");
      expect(firstMatch(routes, "GET", "/library/books/42")!.name).to.equal("library RELEASE GET /books/{id}");
      const indexOf = (text: string) => routes.findIndex((r) => matchText(r) === text);
      expect(indexOf("/library/books/new")).to.be.lessThan(indexOf("/library/books/{id}"));
    });

    it("lets a method of a more general path answer a literal path that lacks it", () => {
      const put = firstMatch(routes, "PUT", "/library/books/new")!;
      expect(put.name).to.equal("library RELEASE PUT /books/{book-id}");
    });

    it("answers a known path with a wrong method 405, with Allow and a JSON body listing every method that answers it", () => {
      const route = firstMatch(routes, "PATCH", "/library/books/new")!;
      expect(route.direct_response.status).to.equal(405);
      const allow = route.response_headers_to_add.find((h: Json) => h.header.key === "allow").header.value;
      expect(allow).to.equal("DELETE, GET, HEAD, PUT");
      expect(JSON.parse(route.direct_response.body.inline_string)).to.deep.equal({ status: "error", message: "Method not allowed", allowedMethods: ["DELETE", "GET", "HEAD", "PUT"] });
      expect(route.response_headers_to_add.find((h: Json) => h.header.key === "content-type").header.value).to.equal("application/json");
      expect(route.typed_per_filter_config["envoy.filters.http.ext_authz"]).to.deep.equal({ "@type": U.extAuthzPerRoute, disabled: true });
    });

    it("answers an unknown path 404 with a JSON body (last route of every virtual host)", () => {
      const route = firstMatch(routes, "GET", "/nothing/here")!;
      expect(route.direct_response.status).to.equal(404);
      expect(JSON.parse(route.direct_response.body.inline_string)).to.deep.equal({ status: "error", message: "No API operation matches the request path" });
      expect(routes[routes.length - 1]).to.equal(route);
    });

    it("serves both forms of a trailing slash, upstream in the form the client used", () => {
      const bare = firstMatch(routes, "GET", "/library/authors")!;
      const slash = firstMatch(routes, "GET", "/library/authors/")!;
      expect([bare.name, slash.name]).to.deep.equal(["library RELEASE GET /authors/", "library RELEASE GET /authors/"]);
      expect(bare.route.prefix_rewrite).to.equal("/authors");
      expect(slash.route.prefix_rewrite).to.equal("/authors/");
      const template = firstMatch(routes, "GET", "/library/books/7/")!;
      expect(template.route.path_rewrite_policy.typed_config.path_template_rewrite).to.equal("/books/{id}/");
    });

    it("matches the exact method with a :method header matcher", () => {
      const route = firstMatch(routes, "DELETE", "/library/books/7")!;
      expect(route.match.headers).to.deep.equal([{ name: ":method", string_match: { exact: "DELETE" } }]);
    });

    it("answers HEAD with the GET operation of a path that declares no HEAD, and lists HEAD in Allow", () => {
      const head = firstMatch(routes, "HEAD", "/library/books/new")!;
      expect(head.name).to.equal("library RELEASE GET /books/new");
      expect(head.match.headers).to.deep.equal([{ name: ":method", string_match: { safe_regex: { regex: "GET|HEAD" } } }]);
      expect(firstMatch(routes, "HEAD", "/library/books/7")!.name).to.equal("library RELEASE GET /books/{id}");
      // A path whose only operations are not GET has no HEAD either: 405.
      const put = firstMatch(routes, "PUT", "/library/books/7")!;
      expect(put.match.headers).to.deep.equal([{ name: ":method", string_match: { exact: "PUT" } }]);
    });

    it("leaves HEAD to a path's own HEAD operation when it declares one", () => {
      const api = gatewayApi("heads");
      api.stages[0]!.operations = [
        { method: "GET", path: "/items", policies: [] },
        { method: "HEAD", path: "/items", policies: [] },
        { method: "GET", path: "/other", policies: [] },
      ];
      const hostRoutes = vhost(translate({ revision: 1, apis: [api] }), "*").routes as Json[];
      expect(firstMatch(hostRoutes, "HEAD", "/heads/items")!.name).to.equal("heads RELEASE HEAD /items");
      expect(firstMatch(hostRoutes, "GET", "/heads/items")!.match.headers[0].string_match).to.deep.equal({ exact: "GET" });
      expect(firstMatch(hostRoutes, "HEAD", "/heads/other")!.name).to.equal("heads RELEASE GET /other");
    });

    it("renames variables Envoy refuses, the same way in the match and the rewrite", () => {
      const route = firstMatch(routes, "GET", "/library/books/7/chapters/3")!;
      expect(route.match.path_match_policy.typed_config.path_template).to.equal("/library/books/{book_id}/chapters/{v_chapter}");
      expect(route.route.path_rewrite_policy.typed_config.path_template_rewrite).to.equal("/books/{book_id}/chapters/{v_chapter}");
      const long = firstMatch(routes, "GET", "/library/shelves/1/2/x/y")!;
      expect(long.match.path_match_policy.typed_config.path_template).to.equal("/library/shelves/{shelfIdentifierL}/{rest}/{rest_2=**}");
    });

    it("turns a final * into {rest=**} and also answers the bare prefix", () => {
      expect(firstMatch(routes, "GET", "/library/files/a/b.txt")!.match.path_match_policy.typed_config.path_template).to.equal("/library/files/{rest=**}");
      expect(firstMatch(routes, "GET", "/library/files")!.name).to.equal("library RELEASE GET /files/*");
      expect(firstMatch(routes, "POST", "/library/files/report")!.name).to.equal("library RELEASE POST /files/{name}");
    });

    it("uses a regex rewrite of the context where a template cannot hold the variables (5 variables and a *)", () => {
      const route = firstMatch(routes, "GET", "/library/a/1/2/3/4/5/deep/er")!;
      expect(route.match.path_match_policy.typed_config.path_template).to.equal("/library/a/{v1}/{v2}/{v3}/{v4}/{v5}/**");
      expect(route.route.regex_rewrite).to.deep.equal({ pattern: { regex: "^(?:/[^/]+){1}" }, substitution: "" });
    });

    it("leaves the path alone when the context is / and the upstream has no path", () => {
      const route = firstMatch(routes, "GET", "/status")!;
      expect(route.name).to.equal("root-api RELEASE GET /status");
      expect(route.route).to.not.have.property("prefix_rewrite");
      expect(firstMatch(routes, "GET", "/docs/a/b")!.route).to.not.have.property("path_rewrite_policy");
    });

    it("reports, and leaves out, an operation whose template exceeds Envoy's limit", () => {
      const long = "/" + "x".repeat(250) + "/{id}";
      const ir = buildIr({ revision: 1, apis: [gatewayApi("big", { stages: [{ ...gatewayApi("big").stages[0]!, operations: [{ method: "GET", path: long, policies: [] }, { method: "GET", path: "/ok", policies: [] }] }] })] });
      expect(ir.diagnostics.map((d) => d.message)).to.deep.equal(["left out: the path template is longer than 256 characters (Envoy's URI template limit)"]);
      const forward = ir.virtualHosts[0]!.routes.filter((r) => r.kind === "forward");
      expect(forward.map((r) => r.name)).to.deep.equal(["big RELEASE GET /ok", "big RELEASE GET /ok"]);
    });
  });

  describe("virtual hosts", () => {
    const { config } = caseInput("merged-vhosts");
    const out = translate(config);
    const names = ((out.routes[0]!.resource as Json).virtual_hosts as Json[]).map((v) => v.name);

    it("merges APIs sharing a domain (case-insensitively) into one virtual host per domain", () => {
      expect(names).to.deep.equal(["*", "api.example.com"]);
      const host = vhost(out, "api.example.com");
      expect(host.domains).to.deep.equal(["api.example.com"]);
      const apis = new Set((host.routes as Json[]).filter((r) => r.route).map((r) => r.name.split(" ")[0]));
      expect([...apis].sort()).to.deep.equal(["authors-api", "authors-api-copy", "books-api"]);
    });

    it("keeps the first API's operation when two claim the same method and path on one host, and says so", () => {
      const ir = buildIr(config);
      expect(ir.diagnostics).to.deep.equal([
        { apiId: "authors-api-copy", stage: "RELEASE", operation: "POST /", message: "left out: POST /authors on host 'api.example.com' is already served by 'authors-api' (RELEASE)" },
      ]);
      const post = firstMatch(vhost(out, "api.example.com").routes, "POST", "/authors")!;
      expect(post.name).to.equal("authors-api RELEASE POST /");
    });

    it("shares one cluster between APIs using the same upstream", () => {
      expect(out.clusters.map((c) => c.name)).to.deep.equal(["http_orders.internal_9000", "http_other.internal_8080", "http_shared.internal_8080"]);
    });

    it("adds a sandbox host only when a sandbox upstream exists, with its own clusters", () => {
      const sandbox = translate(caseInput("sandbox-stage").config);
      const hosts = ((sandbox.routes[0]!.resource as Json).virtual_hosts as Json[]).map((v) => v.name);
      expect(hosts).to.deep.equal(["*", "sandbox-*", "sandbox.weather.example.com", "weather.example.com"]);
      const charge = firstMatch(vhost(sandbox, "sandbox-*").routes, "POST", "/payments/charges")!;
      expect(charge.route.cluster).to.equal("https_sandbox.payments.example.com_443");
      const single = translate({ revision: 1, apis: [gatewayApi("only-main")] });
      expect(((single.routes[0]!.resource as Json).virtual_hosts as Json[]).map((v) => v.name)).to.deep.equal(["*"]);
    });
  });

  describe("upstreams", () => {
    it("routes an operation with its own upstream there (per stage), and leaves one whose upstream cannot be used out, saying so", () => {
      const { config } = caseInput("operation-upstream");
      const out = translate(config);
      const release = vhost(out, "*").routes as Json[];
      expect(firstMatch(release, "GET", "/orders/items")!.route).to.include({ cluster: "http_orders.internal_8080", prefix_rewrite: "/api/items", auto_host_rewrite: true });
      const write = firstMatch(release, "POST", "/orders/items")!.route;
      expect(write).to.include({ cluster: "https_writer.internal_443", prefix_rewrite: "/v2/items" });
      expect(write).to.not.have.property("auto_host_rewrite");
      const report = firstMatch(release, "GET", "/orders/reports/7")!.route;
      expect(report.weighted_clusters.clusters.map((c: Json) => c.weight)).to.deep.equal([70, 30]);
      expect(report.path_rewrite_policy.typed_config.path_template_rewrite).to.equal("/reporting/reports/{id}");
      expect(firstMatch(release, "GET", "/orders/broken")?.route).to.equal(undefined);
      const sandbox = vhost(out, "sandbox-*").routes as Json[];
      expect(firstMatch(sandbox, "POST", "/orders/items")!.route.cluster).to.equal("http_orders-sandbox.internal_8080");
      expect(firstMatch(sandbox, "GET", "/orders/reports/7")!.route.cluster).to.equal("http_reports-sandbox.internal_9000");
      expect(out.clusters.map((c) => c.name)).to.include.members(["https_writer.internal_443", "http_reports-sandbox.internal_9000"]);
      expect(buildIr(config).diagnostics).to.deep.equal([
        { apiId: "orders", stage: "RELEASE", operation: "GET /broken", message: "operation left out: its upstream cannot be used: upstream ref 'missing' names no upstream definition" },
      ]);
      expect(schemaIssues(out)).to.deep.equal([]);
      expect(consistencyIssues(out)).to.deep.equal([]);
    });

    it("makes weighted clusters with the given weights (default 100), drops weight 0, prepends URL path + basePath, sets the connect timeout", () => {
      const out = translate(caseInput("weighted-upstreams").config);
      const release = firstMatch(vhost(out, "*").routes, "GET", "/shop/v2/carts/9")!;
      expect(release.route.weighted_clusters.clusters).to.deep.equal([
        { name: release.route.weighted_clusters.clusters[0].name, weight: 90 },
        { name: release.route.weighted_clusters.clusters[1].name, weight: 10 },
      ]);
      expect(release.route.weighted_clusters.clusters.map((c: Json) => c.name.replace(/_[0-9a-f]{8}$/, ""))).to.deep.equal([
        "http_shop-stable.internal_8080",
        "http_shop-canary.internal_8080",
      ]);
      expect(release.route.path_rewrite_policy.typed_config.path_template_rewrite).to.equal("/svc/api/carts/{cartId}");
      const stable = out.clusters.find((c) => c.name.startsWith("http_shop-stable"))!.resource as Json;
      expect(stable.connect_timeout).to.equal("1.500s");
      expect(out.clusters.some((c) => c.name.includes("shop-old") || c.name.includes("never"))).to.equal(false);
      const defaults = firstMatch(vhost(out, "*").routes, "GET", "/defaults")!;
      expect(defaults.route.weighted_clusters.clusters).to.deep.equal([
        { name: "http_a.internal_80", weight: 100 },
        { name: "http_b.internal_80", weight: 100 },
      ]);
    });

    it("uses DNS clusters for host names, STATIC for IPs, TLS with SNI and SAN checks for https", () => {
      const out = translate(caseInput("tls-and-ip-upstreams").config);
      const byName = Object.fromEntries(out.clusters.map((c) => [c.name, c.resource as Json]));
      expect(Object.keys(byName)).to.deep.equal(["http_10.1.2.3_8080", "http_2001:db8::1_9090", "https_192.0.2.10_443", "https_secure.example.com_8443"]);
      expect(byName["https_secure.example.com_8443"]!.type).to.equal("STRICT_DNS");
      const tls = byName["https_secure.example.com_8443"]!.transport_socket;
      expect(tls.name).to.equal("envoy.transport_sockets.tls");
      expect(tls.typed_config.sni).to.equal("secure.example.com");
      expect(tls.typed_config.common_tls_context.validation_context).to.deep.equal({
        trusted_ca: { filename: "/etc/ssl/certs/ca-certificates.crt" },
        match_typed_subject_alt_names: [{ san_type: "DNS", matcher: { exact: "secure.example.com" } }],
      });
      expect(byName["https_192.0.2.10_443"]!.type).to.equal("STATIC");
      expect(byName["https_192.0.2.10_443"]!.transport_socket.typed_config).to.not.have.property("sni");
      expect(byName["http_2001:db8::1_9090"]!.load_assignment.endpoints[0].lb_endpoints[0].endpoint).to.deep.equal({
        address: { socket_address: { address: "2001:db8::1", port_value: 9090 } },
        hostname: "[2001:db8::1]:9090",
      });
    });

    it("sends IP upstreams by EDS when asked", () => {
      const { config, options } = caseInput("ip-upstreams-eds");
      const out = translate(config, options);
      expect(out.endpoints.map((e) => e.name)).to.deep.equal(["http_10.1.2.3_8080"]);
      const eds = out.clusters.find((c) => c.name === "http_10.1.2.3_8080")!.resource as Json;
      expect(eds.type).to.equal("EDS");
      expect(eds.eds_cluster_config).to.deep.equal({ eds_config: { ads: {}, resource_api_version: "V3" } });
      expect((out.clusters.find((c) => c.name === "http_dns.internal_80")!.resource as Json).type).to.equal("LOGICAL_DNS");
    });

    it("rewrites Host for hostRewrite auto and keeps the client's for manual", () => {
      const out = translate(caseInput("host-rewrite-manual").config);
      const routes = vhost(out, "*").routes as Json[];
      expect(firstMatch(routes, "GET", "/auto/items")!.route.auto_host_rewrite).to.equal(true);
      expect(firstMatch(routes, "GET", "/keep/items")!.route).to.not.have.property("auto_host_rewrite");
      expect(firstMatch(routes, "GET", "/keep/items")!.route.cluster).to.equal(firstMatch(routes, "GET", "/auto/items")!.route.cluster);
    });

    it("emits no cluster for an undeployed (absent) API, and only the clusters routes use", () => {
      const both = translate({ revision: 1, apis: [gatewayApi("a"), gatewayApi("b")] });
      const one = translate({ revision: 2, apis: [gatewayApi("a")] });
      expect(both.clusters.map((c) => c.name)).to.deep.equal(["http_a.internal_8080", "http_b.internal_8080"]);
      expect(one.clusters.map((c) => c.name)).to.deep.equal(["http_a.internal_8080"]);
      expect(routesOf(one).some(({ route }) => route.name?.startsWith("b "))).to.equal(false);
    });
  });

  describe("policies", () => {
    it("maps setHeaders/removeHeaders to route header mutations, the operation's replacing the API's", () => {
      const routes = vhost(translate(caseInput("headers").config), "*").routes as Json[];
      const inherit = firstMatch(routes, "GET", "/headers/inherit")!;
      expect(inherit.request_headers_to_add).to.deep.equal([
        { header: { key: "x-gateway-version", value: "v1.0.0" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" },
        { header: { key: "x-discount", value: "50%%" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" },
      ]);
      expect(inherit.response_headers_to_add).to.deep.equal([{ header: { key: "x-environment", value: "production" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" }]);
      const override = firstMatch(routes, "GET", "/headers/override")!;
      expect(override.request_headers_to_add).to.deep.equal([{ header: { key: "x-op", value: "only-this" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" }]);
      expect(override).to.not.have.property("response_headers_to_add");
      const remove = firstMatch(routes, "GET", "/headers/remove-too")!;
      expect(remove.request_headers_to_remove).to.deep.equal(["x-debug"]);
      expect(remove.response_headers_to_remove).to.deep.equal(["server", "x-powered-by"]);
      expect(remove.request_headers_to_add).to.have.length(2);
    });

    it("maps cors to the CORS filter's per-route policy, also on the 405 route that answers preflights", () => {
      const routes = vhost(translate(caseInput("cors").config), "*").routes as Json[];
      const get = firstMatch(routes, "GET", "/cors/items")!;
      const policy = get.typed_per_filter_config["envoy.filters.http.cors"];
      expect(policy).to.deep.equal({
        "@type": U.corsPolicy,
        allow_origin_string_match: [
          { exact: "https://app.example.com", ignore_case: true },
          { safe_regex: { regex: "(?i)https://[a-z0-9.-]+\\.example\\.org" } },
          { exact: "http://localhost:3000", ignore_case: true },
        ],
        allow_methods: "GET,HEAD,POST",
        allow_headers: "Content-Type,API-Key",
        expose_headers: "X-Request-Id",
        max_age: "600",
        allow_credentials: true,
      });
      const preflight = firstMatch(routes, "OPTIONS", "/cors/items")!;
      expect(preflight.direct_response.status).to.equal(405);
      expect(preflight.typed_per_filter_config["envoy.filters.http.cors"]).to.deep.equal(policy);
      const any = firstMatch(routes, "GET", "/open")!.typed_per_filter_config["envoy.filters.http.cors"];
      expect(any.allow_origin_string_match).to.deep.equal([{ safe_regex: { regex: ".*" } }]);
      expect(any.allow_methods).to.equal("GET,OPTIONS");
    });

    it("maps circuitBreaker to the cluster's thresholds and outlier detection, in a cluster of its own", () => {
      const out = translate(caseInput("circuit-breaker").config);
      expect(out.clusters.map((c) => c.name.replace(/_[0-9a-f]{8}$/, "_<hash>"))).to.have.members([
        "http_backend.internal_8080",
        "http_backend.internal_8080_<hash>",
        "http_backend.internal_8080_<hash>",
      ]);
      const routes = vhost(out, "*").routes as Json[];
      const fragile = out.clusters.find((c) => c.name === firstMatch(routes, "GET", "/fragile/items")!.route.cluster)!.resource as Json;
      expect(fragile.circuit_breakers).to.deep.equal({ thresholds: [{ priority: "DEFAULT", max_connections: 100, max_pending_requests: 10, max_requests: 200 }] });
      expect(fragile.outlier_detection).to.deep.equal({ consecutive_5xx: 5, base_ejection_time: "30s", max_ejection_percent: 50 });
      const minimal = out.clusters.find((c) => c.name === firstMatch(routes, "GET", "/minimal/items")!.route.cluster)!.resource as Json;
      expect(minimal).to.not.have.property("circuit_breakers");
      expect(minimal.outlier_detection).to.deep.equal({ consecutive_5xx: 3, base_ejection_time: "90s" });
      expect(firstMatch(routes, "GET", "/sturdy/items")!.route.cluster).to.equal("http_backend.internal_8080");
    });

    it("enables ext_authz with context extensions only on routes that need it, with the body only for appAuth", () => {
      const out = translate(caseInput("ext-authz").config);
      const routes = vhost(out, "*").routes as Json[];
      const ext = (method: string, p: string, routesList = routes) => firstMatch(routesList, method, p)!.typed_per_filter_config["envoy.filters.http.ext_authz"];
      expect(ext("GET", "/keyed/items/5")).to.deep.equal({
        "@type": U.extAuthzPerRoute,
        check_settings: {
          context_extensions: { [CONTEXT_EXTENSIONS.apiId]: "keyed", [CONTEXT_EXTENSIONS.operation]: "GET /items/{item-id}", [CONTEXT_EXTENSIONS.stage]: "RELEASE" },
          disable_request_body_buffering: true,
        },
      });
      expect(ext("POST", "/signed/orders").check_settings).to.deep.equal({
        context_extensions: { api_id: "signed", operation: "POST /orders", stage: "RELEASE" },
      });
      expect(ext("POST", "/signed/orders", vhost(out, "sandbox-*").routes).check_settings.context_extensions.stage).to.equal("TEST");
      expect(ext("GET", "/mixed/public")).to.deep.equal({ "@type": U.extAuthzPerRoute, disabled: true });
      expect(ext("DELETE", "/mixed/admin/1").check_settings.context_extensions).to.deep.equal({ api_id: "open-with-guarded-op", operation: "DELETE /admin/{id}", stage: "RELEASE" });
      expect(ext("GET", "/limited/items").check_settings.context_extensions.operation).to.equal("GET /items");
      expect(ext("POST", "/limited/items").check_settings.context_extensions.operation).to.equal("POST /items");
      expect(ext("GET", "/nowhere")).to.deep.equal({ "@type": U.extAuthzPerRoute, disabled: true });
    });
  });

  describe("gateway selection", () => {
    const config: GatewayConfig = {
      revision: 9,
      apis: [
        gatewayApi("everywhere"),
        gatewayApi("eu-only", { labels: { [GATEWAY_LABEL]: "edge-eu" } }),
        gatewayApi("eu-and-us", { labels: { [GATEWAY_LABEL]: " edge-eu , edge-us " } }),
        gatewayApi("star", { labels: { [GATEWAY_LABEL]: "*" } }),
        gatewayApi("blank", { labels: { [GATEWAY_LABEL]: "" } }),
      ],
    };

    it("serves an API on every gateway unless its gateways label names some", () => {
      const handles = (name: string) => selectApisForGateway(config, name).apis.map((a) => a.handle);
      expect(handles("edge-eu")).to.deep.equal(["everywhere", "eu-only", "eu-and-us", "star", "blank"]);
      expect(handles("edge-us")).to.deep.equal(["everywhere", "eu-and-us", "star", "blank"]);
      expect(handles("apigw-gateway")).to.deep.equal(["everywhere", "star", "blank"]);
      expect(selectApisForGateway(config, "x").revision).to.equal(9);
      expect(config.apis).to.have.length(5);
    });
  });

  describe("from the store", () => {
    // The suite's reset truncates tables without a change notification: delete what this test
    // created through the API so that the running control plane's pipeline forgets it too.
    afterEach(async () => {
      for (const handle of ["reading-list-api-v1.0", "petstore-v1", "hidden-v1"]) await del(`/rest-apis/${handle}`);
      await harness().pipeline.settled();
    });

    it("translates a configuration built through the REST API without a schema or consistency issue", async () => {
      const created = [
        await post("/rest-apis", restApi()),
        await post(
          "/rest-apis",
          otherApi("petstore-v1", {
            upstream: { main: { ref: "pets" }, sandbox: { url: "http://pets-sandbox.internal:8080", hostRewrite: "manual" } },
            upstreamDefinitions: [
              { name: "pets", basePath: "/api", timeout: { connect: "2s" }, upstreams: [{ url: "https://pets-a.example.com", weight: 80 }, { url: "https://pets-b.example.com", weight: 20 }] },
            ],
            policies: [
              { name: "api-key-auth", params: { key: "X-API-Key", in: "header" } },
              { name: "cors", params: { allowOrigins: ["https://*.example.com"] } },
              { name: "circuit-breaker", params: { consecutiveErrors: 5, ejectionTime: "10s" } },
            ],
            operations: [
              { method: "GET", path: "/pets" },
              { method: "GET", path: "/pets/{pet-id}", policies: [{ name: "ip-control", params: { deny: ["192.0.2.0/24"] } }] },
              { method: "GET", path: "/pets/mine" },
              { method: "GET", path: "/files/*" },
            ],
          }),
        ),
        await post("/rest-apis", otherApi("hidden-v1", { displayName: "Hidden", context: "/hidden", deploymentState: "undeployed", upstream: { main: { url: "http://hidden.internal" } } })),
      ];
      for (const reply of created) expect(reply.status, reply.text).to.equal(201);
      const plugin = await post("/plugins", { name: "slow-down", type: "trafficControl", params: { unit: "MINUTE", apiLimit: 60 } });
      expect(plugin.status, plugin.text).to.equal(201);
      const bound = await post(`/plugins/${plugin.body.plugin.id}/bindings`, { apiIds: ["reading-list-api-v1.0"], stage: "RELEASE" });
      expect(bound.status, bound.text).to.equal(201);

      const config = await loadGatewayConfig(harness().database.knex);
      const ir = buildIr(config);
      expect(ir.diagnostics).to.deep.equal([]);
      const out = translate(config);
      expect(schemaIssues(out)).to.deep.equal([]);
      expect(consistencyIssues(out)).to.deep.equal([]);

      const routes = vhost(out, "*").routes as Json[];
      const reading = firstMatch(routes, "GET", "/reading-list/v1.0/books/12")!;
      expect(reading.typed_per_filter_config["envoy.filters.http.ext_authz"].check_settings.context_extensions).to.deep.equal({
        api_id: "reading-list-api-v1.0",
        operation: "GET /books/{id}",
        stage: "RELEASE",
      });
      expect(reading.request_headers_to_add[0].header).to.deep.equal({ key: "x-gateway-version", value: "v1.0.0" });
      expect(reading.route.path_rewrite_policy.typed_config.path_template_rewrite).to.equal("/samples/reading-list/v1.0/books/{id}");
      expect(firstMatch(routes, "GET", "/petstore/v1/pets/mine")!.name).to.equal("petstore-v1 RELEASE GET /pets/mine");
      const pet = firstMatch(routes, "GET", "/petstore/v1/pets/3")!;
      expect(pet.route.weighted_clusters.clusters.map((c: Json) => c.weight)).to.deep.equal([80, 20]);
      expect(pet.typed_per_filter_config["envoy.filters.http.cors"].allow_origin_string_match).to.deep.equal([{ safe_regex: { regex: "(?i)https://[a-z0-9.-]+\\.example\\.com" } }]);
      expect(routesOf(out).some(({ route }) => String(route.name).startsWith("hidden-v1"))).to.equal(false);
      expect(out.clusters.some((c) => c.name.includes("hidden"))).to.equal(false);
      const sandbox = firstMatch(vhost(out, "sandbox-*").routes, "GET", "/petstore/v1/pets")!;
      expect(sandbox.route.cluster).to.match(/^http_pets-sandbox\.internal_8080_[0-9a-f]{8}$/);
      expect(sandbox.route).to.not.have.property("auto_host_rewrite");
    });
  });
});

import { expect } from "chai";
import { loadGatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import { translate } from "../../packages/control-plane/src/translator";
import { call, countRows, del, fields, get, post, put, type Reply } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

/*
 * Validation at the edge: string content (NUL, lone surrogates, header safety) and Envoy's ranges
 * (durations, weights, ports) are refused with a 400 naming the field, before anything reaches the
 * store or the translator; the refused write changes nothing.
 */

const API = "reading-list-api-v1.0";

type Json = Record<string, any>;

function messageOf(reply: Reply, field: string): string | undefined {
  return ((reply.body?.errors ?? []) as { field: string; message: string }[]).find((e) => e.field === field)?.message;
}

/** Sends `request` and expects a 400 in the error shape naming `field`, with nothing stored. */
async function refused(request: () => Promise<Reply>, field: string, message?: RegExp): Promise<Reply> {
  const changes = await countRows("change_log");
  const reply = await request();
  expect(reply.status, reply.text).to.equal(400);
  expect(reply.body.status).to.equal("error");
  expect(fields(reply), reply.text).to.include(field);
  if (message) expect(messageOf(reply, field)).to.match(message);
  expect(await countRows("change_log"), "a refused write changed the store").to.equal(changes);
  return reply;
}

async function created(reply: Promise<Reply>): Promise<Json> {
  const r = await reply;
  expect(r.status, r.text).to.be.oneOf([200, 201]);
  return r.body;
}

function withSetHeader(value: string, name = "x-env") {
  return { name: "set-headers", params: { request: { headers: [{ name, value }] } } };
}

describe("validation at the edge", () => {
  beforeEach(async () => {
    await created(post("/rest-apis", restApi()));
  });

  describe("NUL characters", () => {
    it("in a path parameter answer 400 naming the parameter, on every route family", async () => {
      const app = (await created(post("/applications", { name: "reader-app" }))).application;
      const cases: [string, string, string, unknown?][] = [
        ["DELETE", "/rest-apis/a%00b", "id"],
        ["PUT", "/rest-apis/a%00b", "id", restApi()],
        ["DELETE", `/rest-apis/${API}/api-keys/a%00b`, "apiKeyName"],
        ["PUT", `/rest-apis/${API}/api-keys/a%00b`, "apiKeyName", { apiKey: "k".repeat(20) }],
        ["POST", `/rest-apis/${API}/api-keys/a%00b/regenerate`, "apiKeyName", {}],
        ["PUT", "/subscriptions/a%00b", "subscriptionId", { status: "REVOKED" }],
        ["DELETE", "/subscriptions/a%00b", "subscriptionId"],
        ["PUT", "/subscription-plans/a%00b", "planId", { status: "INACTIVE" }],
        ["DELETE", "/plugins/a%00b", "pluginId"],
        ["DELETE", `/plugins/a%00b/bindings/RELEASE/${API}`, "pluginId"],
        ["DELETE", "/applications/a%00b", "appId"],
        ["POST", `/applications/${app.id}/key-pairs/a%00b/reset-secret`, "appKey", {}],
        ["DELETE", "/authorizations/a%00b", "authorizationId"],
      ];
      for (const [method, path, field, body] of cases) {
        const reply = await refused(() => call(method, path, { body, as: path.includes("api-keys") ? "consumer" : "admin" }), field, /NUL/);
        expect(reply.body.message, `${method} ${path}`).to.equal("Configuration validation failed");
      }
    });

    it("in a query parameter answer 400 naming it", async () => {
      await refused(() => get("/subscriptions?applicationId=a%00b"), "applicationId", /NUL/);
      await refused(() => get("/applications?name=a%00b"), "name", /NUL/);
    });

    it("in body strings and object keys answer 400 naming the field, on every route family", async () => {
      const app = (await created(post("/applications", { name: "reader-app" }))).application;
      const plan = await created(post("/subscription-plans", { planName: "Gold", throttleLimitCount: 10, throttleLimitUnit: "Min" }));
      const cases: [string, string, unknown, string][] = [
        ["POST", "/subscriptions", { apiId: API, subscriptionToken: "tok-123456", applicationId: "a\u0000b" }, "applicationId"],
        ["POST", "/subscriptions", { apiId: API, subscriptionToken: "tok-123456", billingCustomerId: "cus\u0000" }, "billingCustomerId"],
        ["POST", "/subscriptions", { apiId: `${API}\u0000`, subscriptionToken: "tok-123456" }, "apiId"],
        ["POST", "/subscription-plans", { planName: "Silver", billingPlan: "\u0000" }, "billingPlan"],
        ["PUT", `/subscription-plans/${plan.id}`, { billingPlan: "x\u0000" }, "billingPlan"],
        ["POST", "/applications", { name: "other-app", description: "a\u0000" }, "description"],
        ["PUT", `/applications/${app.id}`, { tags: { "te\u0000am": "a" } }, "tags.te\\u0000am"],
        ["POST", "/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE", description: "\u0000" }, "description"],
        ["POST", `/rest-apis/${API}/api-keys`, { name: "my-key", displayName: "My\u0000Key" }, "displayName"],
        ["POST", "/plugins", { name: "nul-plugin", type: "cors", description: "\u0000", params: { allowOrigins: ["*"] } }, "description"],
        ["POST", "/rest-apis", restApi("other", { displayName: "Other" }, { metadata: { name: "other", annotations: { note: "a\u0000b" } } }), "metadata.annotations.note"],
        ["PUT", `/rest-apis/${API}`, restApi(API, { policies: [withSetHeader("v\u0000")] }), "spec.policies[0].params.request.headers[0].value"],
      ];
      for (const [method, path, body, field] of cases) {
        await refused(() => call(method, path, { body, as: path.includes("api-keys") ? "consumer" : "admin" }), field, /NUL/);
      }
      expect(await countRows("subscriptions")).to.equal(0);
    });
  });

  describe("Unicode", () => {
    it("a lone UTF-16 surrogate is refused inline and in a plug-in, naming the field; a surrogate pair is fine", async () => {
      const inline = '{"name":"set-headers","params":{"request":{"headers":[{"name":"x-env","value":"a\\udc00b"}]}}}';
      const body = JSON.stringify(restApi(API)).replace('"policies":[', `"policies":[${inline},`);
      await refused(() => put(`/rest-apis/${API}`, body), "spec.policies[0].params.request.headers[0].value", /lone UTF-16 surrogate/);
      const plugin = '{"name":"surrogate","type":"setHeaders","params":{"request":{"headers":[{"name":"x-env","value":"a\\ud800"}]}}}';
      await refused(() => post("/plugins", plugin), "params.request.headers[0].value", /lone UTF-16 surrogate/);
      await refused(() => post("/applications", '{"name":"app-\\udfff"}'), "name", /lone UTF-16 surrogate/);
      const ok = await put(`/rest-apis/${API}`, restApi(API, { policies: [withSetHeader("smile 😀")] }));
      expect(ok.status, ok.text).to.equal(200);
    });
  });

  describe("header safety", () => {
    it("refuses header values with control characters and header names that are not tokens, inline and as plug-ins alike", async () => {
      for (const value of ["a\r\nx-injected: 1", "a\nb", "bell\u0007"]) {
        await refused(() => put(`/rest-apis/${API}`, restApi(API, { policies: [withSetHeader(value)] })), "spec.policies[0].params.request.headers[0].value", /control characters/);
        await refused(
          () => post("/plugins", { name: "hdr-plugin", type: "setHeaders", params: { request: { headers: [{ name: "x-env", value }] } } }),
          "params.request.headers[0].value",
          /control characters/,
        );
      }
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { policies: [withSetHeader("v", "bad name")] })), "spec.policies[0].params.request.headers[0].name");
      await refused(() => post("/plugins", { name: "cors-plugin", type: "cors", params: { allowOrigins: ["*"], allowHeaders: ["x-a\r\n"] } }), "params.allowHeaders[0]");
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { policies: [withSetHeader("€".repeat(3000))] })), "spec.policies[0].params.request.headers[0].value", /bytes/);
      const tab = await put(`/rest-apis/${API}`, restApi(API, { policies: [withSetHeader("a\tb")] }));
      expect(tab.status, tab.text).to.equal(200);
    });
  });

  describe("Envoy's ranges", () => {
    const RANGE = /between 1ms and 315576000000s/;

    it("refuses a circuit breaker ejection time beyond a protobuf Duration or below 1ms, inline and as a plug-in", async () => {
      for (const ejectionTime of ["999999999h", "0.0000001ms", "0.5ms"]) {
        await refused(
          () => put(`/rest-apis/${API}`, restApi(API, { policies: [{ name: "circuit-breaker", params: { consecutiveErrors: 5, ejectionTime } }] })),
          "spec.policies[0].params.ejectionTime",
          RANGE,
        );
        await refused(() => post("/plugins", { name: "cb-plugin", type: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime } }), "params.ejectionTime", RANGE);
      }
      const plugin = await created(post("/plugins", { name: "cb-plugin", type: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime: "30s" } }));
      await refused(() => put(`/plugins/${plugin.plugin.id}`, { params: { consecutiveErrors: 5, ejectionTime: "999999999h" } }), "params.ejectionTime", RANGE);
    });

    it("refuses an upstream connect timeout that would be 0 at Envoy's resolution, or too long", async () => {
      for (const connect of ["0.0000001ms", "0.999ms", "999999999h"]) {
        const body = restApi(API, { upstream: { main: { ref: "backends" } }, upstreamDefinitions: [{ name: "backends", timeout: { connect }, upstreams: [{ url: "http://a.internal:8080" }] }] });
        await refused(() => put(`/rest-apis/${API}`, body), "spec.upstreamDefinitions[0].timeout.connect", RANGE);
      }
    });

    it("says what a weight may be when it is over 100 or negative", async () => {
      for (const weight of [150, -1]) {
        const body = restApi(API, { upstream: { main: { ref: "backends" } }, upstreamDefinitions: [{ name: "backends", upstreams: [{ url: "http://a.internal:8080", weight }] }] });
        const reply = await refused(() => put(`/rest-apis/${API}`, body), "spec.upstreamDefinitions[0].upstreams[0].weight");
        expect(messageOf(reply, "spec.upstreamDefinitions[0].upstreams[0].weight")).to.equal("must be between 0 and 100 (a share of the traffic in percent)");
      }
      const fraction = restApi(API, { upstream: { main: { ref: "b" } }, upstreamDefinitions: [{ name: "b", upstreams: [{ url: "http://a.internal:8080", weight: 1.5 }] }] });
      expect(messageOf(await refused(() => put(`/rest-apis/${API}`, fraction), "spec.upstreamDefinitions[0].upstreams[0].weight"), "spec.upstreamDefinitions[0].upstreams[0].weight")).to.equal("must be an integer");
    });

    it("refuses port 0 in upstream URLs and ports beyond 65535 on vhosts", async () => {
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { upstream: { main: { url: "http://a.internal:0" } } })), "spec.upstream.main.url");
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { vhosts: { main: "api.example.com:99999" } })), "spec.vhosts.main", /65535/);
    });

    it("refuses a main vhost equal to the sandbox stage's default host when the API has a sandbox", async () => {
      const body = restApi(API, { upstream: { main: { url: "http://a.internal" }, sandbox: { url: "http://b.internal" } }, vhosts: { main: "Sandbox-*" } });
      await refused(() => put(`/rest-apis/${API}`, body), "spec.vhosts.main", /sandbox/);
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { vhosts: { main: "API.example.com", sandbox: "api.example.com" } })), "spec.vhosts.sandbox");
    });

    it("refuses more than 1000 headers to add per route (Envoy's limit), counting every setHeaders policy of a list", async () => {
      const policies = (n: number) =>
        Array.from({ length: n }, (_, j) => ({
          name: "set-headers",
          executionCondition: `request.header['x-c'] == '${j}'`,
          params: { response: { headers: Array.from({ length: 64 }, (_, i) => ({ name: `x-h${j}-${i}`, value: "v" })) } },
        }));
      await refused(() => put(`/rest-apis/${API}`, restApi(API, { policies: policies(16) })), "spec.policies", /add 1024 response headers; a route takes at most 1000/);
      await refused(
        () => put(`/rest-apis/${API}`, restApi(API, { policies: [], operations: [{ method: "GET", path: "/books", policies: policies(16) }] })),
        "spec.operations[0].policies",
        /at most 1000/,
      );
      const fifteen = await put(`/rest-apis/${API}`, restApi(API, { policies: policies(15) }));
      expect(fifteen.status, fifteen.text).to.equal(200);
    });

    it("refuses nesting deeper than 32 levels", async () => {
      let deep: unknown = "leaf";
      for (let i = 0; i < 40; i++) deep = { deep };
      // A YAML alias that contains itself is a cycle, not just a deep value: refused the same way.
      await refused(() => post("/applications", "name: deep-app\ntags: &t {a: *t}\n", { contentType: "application/yaml" }), "tags.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a", /nested too deeply/);
      await refused(() => post("/applications", { name: "deep-app", tags: deep }), "tags.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep.deep", /nested too deeply/);
    });
  });

  describe("per-operation upstream", () => {
    afterEach(async () => {
      // The reset truncates without notifying: delete through the API so the pipeline forgets it.
      await del(`/rest-apis/${API}`);
      await del("/rest-apis/petstore-v1");
      await harness().pipeline.settled();
    });

    it("is stored, returned and routed to (per stage); the other operations keep the API's upstream", async () => {
      const body = otherApi("petstore-v1", {
        upstream: { main: { url: "http://pets.internal:8080" }, sandbox: { url: "http://pets-sandbox.internal:8080" } },
        upstreamDefinitions: [{ name: "images", basePath: "/img", upstreams: [{ url: "http://images-a.internal:9000", weight: 50 }, { url: "http://images-b.internal:9000", weight: 50 }] }],
        operations: [
          { method: "GET", path: "/pets" },
          { method: "GET", path: "/pets/{petId}/photo", upstream: { main: { ref: "images" }, sandbox: { url: "http://images-sandbox.internal:9000", hostRewrite: "manual" } } },
          { method: "POST", path: "/pets", upstream: { main: { url: "https://writer.internal/v2" } } },
        ],
      });
      const reply = await created(post("/rest-apis", body));
      expect(reply.spec.operations[1].upstream).to.deep.equal({ main: { ref: "images" }, sandbox: { url: "http://images-sandbox.internal:9000", hostRewrite: "manual" } });
      expect((await get("/rest-apis/petstore-v1")).body.spec.operations[2].upstream).to.deep.equal({ main: { url: "https://writer.internal/v2" } });

      const out = translate(await loadGatewayConfig(harness().database.knex, { handles: ["petstore-v1"] }));
      const routes = (name: string) => ((out.routes[0]!.resource as Json).virtual_hosts as Json[]).find((v) => v.name === name)!.routes as Json[];
      const named = (host: string, route: string) => routes(host).find((r) => r.name === route)!.route;
      expect(named("*", "petstore-v1 RELEASE GET /pets").cluster).to.equal("http_pets.internal_8080");
      expect(named("*", "petstore-v1 RELEASE POST /pets").cluster).to.equal("https_writer.internal_443");
      expect(named("*", "petstore-v1 RELEASE GET /pets/{petId}/photo").weighted_clusters.clusters.map((c: Json) => c.name)).to.deep.equal([
        "http_images-a.internal_9000",
        "http_images-b.internal_9000",
      ]);
      expect(named("sandbox-*", "petstore-v1 TEST GET /pets/{petId}/photo").cluster).to.equal("http_images-sandbox.internal_9000");
      expect(named("sandbox-*", "petstore-v1 TEST POST /pets").cluster).to.equal("http_pets-sandbox.internal_8080");
    });

    it("refuses an unknown ref, a sandbox on an API without one, and an empty upstream, naming the field", async () => {
      const op = (upstream: unknown) => restApi(API, { operations: [{ method: "GET", path: "/books", upstream }] });
      await refused(() => put(`/rest-apis/${API}`, op({ main: { ref: "nowhere" } })), "spec.operations[0].upstream.main.ref", /no upstreamDefinition/);
      await refused(() => put(`/rest-apis/${API}`, op({ sandbox: { url: "http://b.internal" } })), "spec.operations[0].upstream.sandbox", /no sandbox stage/);
      await refused(() => put(`/rest-apis/${API}`, op({})), "spec.operations[0].upstream");
      await refused(() => put(`/rest-apis/${API}`, op({ main: { url: "http://a.internal", ref: "x" } })), "spec.operations[0].upstream.main");
    });
  });
});

import { expect } from "chai";
import { countRows, get, post, put } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { published } from "../support/wait";

/*
 * What is accepted reaches Envoy, or is refused with a 400 naming the field: values that the REST
 * schemas accept but Envoy's rules refuse (the examples of the issue that froze every gateway)
 * are refused at write time, inline and through plug-ins, and change nothing.
 */

function setHeadersValue(value: string) {
  return { name: "set-headers", version: "v1", params: { request: { headers: [{ name: "x-note", value }] } } };
}

/** A raw JSON body, so that escapes such as a lone surrogate reach the server as the client wrote them. */
function raw(body: unknown, replace: [string, string]): string {
  return JSON.stringify(body).replace(replace[0], replace[1]);
}

async function expectRefused(reply: { status: number; body: any; text: string }, field: RegExp) {
  if (process.env.SHOW) console.log(reply.text);
  expect(reply.status, reply.text).to.equal(400);
  expect(reply.body.status).to.equal("error");
  expect(reply.body.errors, reply.text).to.be.an("array").that.is.not.empty;
  expect(reply.body.errors.map((e: { field: string }) => e.field).join(" "), reply.text).to.match(field);
}

async function failuresSoFar(): Promise<number> {
  const metric = await harness().metrics.registry.getSingleMetric("apigw_xds_rebuild_failures_total")?.get();
  return metric?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

describe("admission: what Envoy would refuse is refused at write time", () => {
  it("refuses a setHeaders value with a lone UTF-16 surrogate, inline, and stores nothing", async () => {
    const body = restApi("surrogate-api", { policies: [setHeadersValue("aSURROGATEb")] });
    const reply = await post("/rest-apis", raw(body, ["SURROGATE", "\\udc00"]));
    await expectRefused(reply, /spec\.policies/);
    expect(await countRows("rest_apis")).to.equal(0);
  });

  it("refuses a circuit breaker ejectionTime beyond Envoy's range, inline and as a plug-in", async () => {
    const policy = { name: "circuit-breaker", version: "v1", params: { consecutiveErrors: 5, ejectionTime: "999999999h" } };
    await expectRefused(await post("/rest-apis", restApi("cb-api", { policies: [policy] })), /spec\.policies/);
    expect(await countRows("rest_apis")).to.equal(0);

    expect((await post("/rest-apis", restApi("cb-api"))).status).to.equal(201);
    const plugin = await post("/plugins", { name: "huge-ejection", type: "circuitBreaker", params: policy.params });
    if (plugin.status === 201) {
      // Accepted as a plug-in (not bound yet): binding it would break the API, so the binding is refused.
      const bind = await post(`/plugins/${plugin.body.plugin.id}/bindings`, { apiIds: ["cb-api"], stage: "RELEASE" });
      await expectRefused(bind, /apiIds|params/);
      expect(await countRows("plugin_bindings")).to.equal(0);
    } else {
      await expectRefused(plugin, /params/);
    }
  });

  it("refuses a plug-in update that would break the APIs it is bound to, naming the API", async () => {
    expect((await post("/rest-apis", restApi("cb-api"))).status).to.equal(201);
    const plugin = await post("/plugins", { name: "breaker", type: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime: "30s" } });
    expect(plugin.status, plugin.text).to.equal(201);
    expect((await post(`/plugins/${plugin.body.plugin.id}/bindings`, { apiIds: ["cb-api"], stage: "RELEASE" })).status).to.equal(201);
    const update = await put(`/plugins/${plugin.body.plugin.id}`, {
      name: "breaker",
      type: "circuitBreaker",
      params: { consecutiveErrors: 5, ejectionTime: "999999999h" },
    });
    await expectRefused(update, /params/);
    const stored = await get(`/plugins/${plugin.body.plugin.id}`);
    expect(stored.body.plugin.params.ejectionTime).to.equal("30s");
  });

  it("refuses an upstream connect timeout that rounds to zero", async () => {
    const reply = await post(
      "/rest-apis",
      restApi("timeout-api", {
        upstream: { main: { ref: "backends" } },
        upstreamDefinitions: [{ name: "backends", timeout: { connect: "0.0000001ms" }, upstreams: [{ url: "http://a.internal:8080" }] }],
      }),
    );
    await expectRefused(reply, /spec\.upstream/);
    expect(await countRows("rest_apis")).to.equal(0);
  });

  it("after every refusal the gateway group still publishes: another API's change is served", async () => {
    const before = await failuresSoFar();
    await post("/rest-apis", raw(restApi("bad", { policies: [setHeadersValue("xSURROGATEy")] }), ["SURROGATE", "\\ud800"]));
    const good = await post("/rest-apis", otherApi());
    expect(good.status, good.text).to.equal(201);
    await published();
    expect(await failuresSoFar()).to.equal(before);
    const routes = harness().pipeline.cache.getSnapshot("default")?.snapshot.resources["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"];
    expect(JSON.stringify([...(routes?.values() ?? [])].map((r) => r.resource))).to.contain("/petstore/v1/pets");
  });
});

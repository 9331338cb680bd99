import { expect } from "chai";
import type { RestApiRequest } from "../../packages/control-plane/src/rest/schemas/restApi";
import { setAdmissionCheck, writeTransaction } from "../../packages/control-plane/src/store/changes";
import { createApi, getApiOr404, updateApi } from "../../packages/control-plane/src/store/repositories/restApis";
import { admissionCheck } from "../../packages/control-plane/src/pipeline/admission";
import { translatorOptions } from "../../packages/control-plane/src/controlPlane";
import { XDS_TYPE_URLS } from "../../packages/control-plane/src/xds";
import { GatewayPipeline } from "../../packages/control-plane/src/pipeline/gatewayPipeline";
import { get, post, put } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { published } from "../support/wait";
import { connectSotw, decodeSotw, type SotwClient } from "../support/xdsClient";

/*
 * One API's problem never blocks another API. An API that the admission check would refuse can
 * still reach the store (written before an upgrade tightened a rule, or by an older replica):
 * here it is written with the check switched off. The pipeline holds that API back (at its last
 * good version, or leaves a new one out), every other API keeps propagating to Envoy, and the
 * API's status says what happened.
 */

type Json = Record<string, any>;

/** A value that Envoy refuses (base_ejection_time beyond google.protobuf.Duration's range). */
const BAD_BREAKER = { name: "circuit-breaker", version: "v1", params: { consecutiveErrors: 5, ejectionTime: "999999999h" } };

/** Writes an API straight through the store with the admission check off, as an older writer would have. */
async function writeUnchecked(body: unknown, update = false): Promise<void> {
  const knex = harness().database.knex;
  // Not parsed by the REST schema either: the edge refuses this value too, an older writer did not.
  const request = body as RestApiRequest;
  setAdmissionCheck(knex, undefined);
  try {
    await writeTransaction(knex, async (tx, changes) =>
      update ? updateApi(tx, changes, await getApiOr404(tx, request.metadata.name), request) : createApi(tx, changes, request, "admin"),
    );
  } finally {
    setAdmissionCheck(knex, admissionCheck(translatorOptions(harness().config)));
  }
}

function subscribe(client: SotwClient): void {
  client.request(XDS_TYPE_URLS.cluster);
  client.request(XDS_TYPE_URLS.listener);
  client.request(XDS_TYPE_URLS.route, ["apigw-routes"]);
}

async function routesUntil(client: SotwClient, done: (paths: string) => boolean, timeoutMs = 5000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await client.next(Math.max(1, deadline - Date.now()));
    client.ack(response);
    if (response.typeUrl !== XDS_TYPE_URLS.route) continue;
    const text = JSON.stringify(decodeSotw(response).map((r) => r.json as Json));
    if (done(text)) return text;
  }
}

describe("isolation: one API's problem never blocks another", () => {
  const open: SotwClient[] = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  it("leaves out a new API that Envoy would refuse, keeps serving the others, and says so in its status", async () => {
    const client = connectSotw(`127.0.0.1:${harness().xdsPort}`, { id: "envoy-isolation", cluster: "default" });
    open.push(client);
    subscribe(client);
    expect((await post("/rest-apis", otherApi())).status).to.equal(201);
    await routesUntil(client, (t) => t.includes("/petstore/v1/pets"));

    await writeUnchecked(restApi("broken-api", { policies: [BAD_BREAKER] }));
    await published();

    // Another API's change still reaches the ADS client, and the broken API is not in it.
    const reply = await put("/rest-apis/petstore-v1", otherApi("petstore-v1", { operations: [{ method: "GET", path: "/pets" }, { method: "GET", path: "/owners" }] }));
    expect(reply.status, reply.text).to.equal(200);
    const served = await routesUntil(client, (t) => t.includes("/petstore/v1/owners"));
    expect(served).to.not.contain("/reading-list/v1.0/books");

    const status = await get("/rest-apis/broken-api");
    expect(status.status).to.equal(200);
    const conditions = status.body.status.conditions as Json[];
    const accepted = conditions.find((c) => c.type === "Accepted");
    expect(accepted, JSON.stringify(conditions)).to.include({ status: "False", reason: "Invalid" });
    expect(accepted!.message).to.contain("base_ejection_time");
    expect(conditions.find((c) => c.type === "Programmed")).to.include({ status: "False" });
    const ok = await get("/rest-apis/petstore-v1");
    expect(ok.body.status.conditions.find((c: Json) => c.type === "Accepted")).to.include({ status: "True" });
  });

  it("holds a changed API at its last good version and serves it again once fixed", async () => {
    const client = connectSotw(`127.0.0.1:${harness().xdsPort}`, { id: "envoy-hold", cluster: "default" });
    open.push(client);
    subscribe(client);
    expect((await post("/rest-apis", restApi())).status).to.equal(201);
    expect((await post("/rest-apis", otherApi())).status).to.equal(201);
    await routesUntil(client, (t) => t.includes("/reading-list/v1.0/books") && t.includes("/petstore/v1/pets"));

    // The new version adds /authors but carries a value Envoy refuses: the old version stays served.
    await writeUnchecked(
      restApi("reading-list-api-v1.0", { policies: [BAD_BREAKER], operations: [{ method: "GET", path: "/books" }, { method: "GET", path: "/authors" }] }),
      true,
    );
    expect((await put("/rest-apis/petstore-v1", otherApi("petstore-v1", { operations: [{ method: "GET", path: "/vets" }] }))).status).to.equal(200);
    const served = await routesUntil(client, (t) => t.includes("/petstore/v1/vets"));
    expect(served).to.contain("/reading-list/v1.0/books/{id}");
    expect(served).to.not.contain("/reading-list/v1.0/authors");
    const held = await get("/rest-apis/reading-list-api-v1.0");
    const accepted = (held.body.status.conditions as Json[]).find((c) => c.type === "Accepted");
    expect(accepted).to.include({ status: "False", reason: "Invalid" });
    expect(accepted!.message).to.contain("last good version");

    // Fixed through the API: served again, and the status clears.
    const fixed = await put("/rest-apis/reading-list-api-v1.0", restApi("reading-list-api-v1.0", { operations: [{ method: "GET", path: "/authors" }] }));
    expect(fixed.status, fixed.text).to.equal(200);
    await routesUntil(client, (t) => t.includes("/reading-list/v1.0/authors"));
    const after = await get("/rest-apis/reading-list-api-v1.0");
    expect((after.body.status.conditions as Json[]).find((c) => c.type === "Accepted")).to.include({ status: "True" });
  });

  it("reports a gateway group whose build fails as a whole in its health (/ready), not as published", async () => {
    // Options the translator refuses make every build of the group throw, whatever the APIs.
    const { knex } = harness().database;
    const pipeline = new GatewayPipeline({
      knex,
      database: harness().database,
      logger: harness().logger.child({ test: "unpublished" }),
      translator: { httpPort: 8080, tls: { port: 8080, certificateChain: { filename: "/c" }, privateKey: { filename: "/k" } } },
    });
    await pipeline.start();
    try {
      const health = pipeline.health();
      expect(health.ok).to.equal(false);
      expect(health.lastError).to.contain("default");
      expect(pipeline.cache.getSnapshot("default")).to.equal(undefined);
    } finally {
      await pipeline.stop();
    }
    expect(harness().pipeline.health().ok).to.equal(true);
  });
});


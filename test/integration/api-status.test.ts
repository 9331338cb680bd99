import { expect } from "chai";
import { startControlPlane, type ControlPlane } from "../../packages/control-plane/src/controlPlane";
import { XDS_TYPE_URLS } from "../../packages/control-plane/src/xds";
import { get, post, put } from "../support/client";
import { TEST_DATABASE_URL, testConfig, USERS } from "../support/environment";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { published } from "../support/wait";
import { connectSotw, type SotwClient } from "../support/xdsClient";

/*
 * status.conditions and status.gateways tell the truth: nothing is "synced" when no gateway serves
 * the API, what the gateway leaves out is named, and every replica gives the same answer whichever
 * replica the Envoy is connected to.
 */

type Json = Record<string, any>;

const condition = (body: Json, type: string): Json => (body.status.conditions as Json[]).find((c) => c.type === type)!;

/** Subscribes to everything and ACKs every response until `done` holds. */
async function ackUntil(client: SotwClient, done: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    try {
      client.ack(await client.next(100));
    } catch {
      // no response within 100 ms: look again
    }
  }
}

function subscribe(client: SotwClient): void {
  client.request(XDS_TYPE_URLS.cluster);
  client.request(XDS_TYPE_URLS.listener);
  client.request(XDS_TYPE_URLS.route, ["apigw-routes"]);
}

async function getFrom(url: string, path: string): Promise<Json> {
  const auth = "Basic " + Buffer.from(`${USERS.admin.name}:${USERS.admin.password}`).toString("base64");
  const response = await fetch(`${url}/api/management/v0.9${path}`, { headers: { Authorization: auth } });
  return (await response.json()) as Json;
}

describe("API status: conditions and gateways", () => {
  const open: SotwClient[] = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  it("is not synced and not Programmed while no gateway serves the API", async () => {
    expect((await post("/rest-apis", restApi())).status).to.equal(201);
    await published();
    const reply = await get("/rest-apis/reading-list-api-v1.0");
    expect(reply.body.status.gateways.synced).to.equal(false);
    expect(reply.body.status.gateways.gateways).to.deep.equal([]);
    expect(condition(reply.body, "Accepted")).to.include({ status: "True" });
    expect(condition(reply.body, "Programmed")).to.include({ status: "False", reason: "NoGateways" });
    expect(condition(reply.body, "Degraded")).to.include({ status: "False" });
    expect(condition(reply.body, "Programmed").observedRevision).to.equal(reply.body.status.gateways.revision);
  });

  it("becomes Programmed once the connected gateway ACKs, and Pending again after a change it has not ACKed", async () => {
    expect((await post("/rest-apis", restApi())).status).to.equal(201);
    const client = connectSotw(`127.0.0.1:${harness().xdsPort}`, { id: "envoy-status", cluster: "status-gw" });
    open.push(client);
    subscribe(client);
    await ackUntil(client, async () => condition((await get("/rest-apis/reading-list-api-v1.0")).body, "Programmed").status === "True");
    const synced = await get("/rest-apis/reading-list-api-v1.0");
    expect(synced.body.status.gateways.synced).to.equal(true);
    expect(synced.body.status.gateways.gateways).to.deep.include({ name: "status-gw", nodes: 1, ackedRevision: synced.body.status.gateways.revision });

    expect((await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { operations: [{ method: "GET", path: "/x" }] }))).status).to.equal(200);
    await published();
    const pending = await get("/rest-apis/reading-list-api-v1.0");
    expect(pending.body.status.gateways.synced).to.equal(false);
    expect(condition(pending.body, "Programmed")).to.include({ status: "False", reason: "Pending" });
  });

  it("names what the gateway serves differently from the declaration (Degraded)", async () => {
    const body = restApi("conditional", {
      policies: [{ name: "set-headers", version: "v1", executionCondition: "request.header['x'] == 'y'", params: { request: { headers: [{ name: "x-a", value: "b" }] } } }],
    });
    const created = await post("/rest-apis", body);
    expect(created.status, created.text).to.equal(201);
    await published();
    const reply = await get("/rest-apis/conditional");
    const degraded = condition(reply.body, "Degraded");
    expect(degraded).to.include({ status: "True", reason: "PartiallyServed" });
    expect(degraded.message).to.contain("executionCondition");
  });

  it("says Undeployed for an undeployed API", async () => {
    expect((await post("/rest-apis", restApi(undefined, { deploymentState: "undeployed" }))).status).to.equal(201);
    const reply = await get("/rest-apis/reading-list-api-v1.0");
    expect(condition(reply.body, "Programmed")).to.include({ status: "False", reason: "Undeployed" });
    expect(reply.body.status.gateways.synced).to.equal(false);
  });

  describe("with two replicas on one store", () => {
    let replica: ControlPlane | undefined;
    before(async function () {
      if (!TEST_DATABASE_URL) this.skip(); // replicas share a Postgres server
      replica = await startControlPlane(testConfig());
    });
    after(async () => {
      await replica?.stop();
    });

    it("answers the same status.gateways from every replica, whichever one the Envoy is connected to", async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const client = connectSotw(`127.0.0.1:${replica!.xdsPort}`, { id: "envoy-on-replica", cluster: "replica-gw" });
      open.push(client);
      subscribe(client);
      // The harness replica (no Envoy of its own here) reports the Envoy connected to the other one.
      await ackUntil(client, async () => {
        const body = (await get("/rest-apis/reading-list-api-v1.0")).body;
        return body.status.gateways.synced === true && condition(body, "Programmed").status === "True";
      });
      const here = (await get("/rest-apis/reading-list-api-v1.0")).body.status.gateways;
      const there = (await getFrom(replica!.managementUrl, "/rest-apis/reading-list-api-v1.0")).status.gateways;
      expect(here).to.deep.equal(there);
      expect(here.gateways.map((g: Json) => g.name)).to.include("replica-gw");
    });
  });
});

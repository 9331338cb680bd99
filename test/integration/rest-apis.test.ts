import { expect } from "chai";
import YAML from "yaml";
import { call, countRows, del, fields, get, post, put } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";

describe("rest-apis", () => {
  describe("POST /rest-apis", () => {
    it("creates an API and answers 201 with the stored resource and its status", async () => {
      const reply = await post("/rest-apis", restApi());
      expect(reply.status).to.equal(201);
      expect(reply.body.metadata.name).to.equal("reading-list-api-v1.0");
      expect(reply.body.spec.displayName).to.equal("Reading-List-API");
      expect(reply.body.spec.vhosts).to.deep.equal({ main: "*", sandbox: "sandbox-*" });
      expect(reply.body.status).to.include({ id: "reading-list-api-v1.0", state: "deployed" });
      expect(Date.parse(reply.body.status.createdAt)).to.be.a("number").and.not.NaN;
      expect(reply.body.status.deployedAt).to.be.a("string");
      expect(reply.headers.get("location")).to.equal("/api/management/v0.9/rest-apis/reading-list-api-v1.0");
      expect(Object.keys(reply.body)).to.deep.equal(["apiVersion", "kind", "metadata", "spec", "status"]);
    });

    it("accepts a YAML body", async () => {
      const reply = await post("/rest-apis", YAML.stringify(restApi()), { contentType: "application/yaml" });
      expect(reply.status).to.equal(201);
      expect(reply.body.spec.context).to.equal("/reading-list/$version");
    });

    it("honours deploymentState: undeployed on create and omits deployedAt", async () => {
      const reply = await post("/rest-apis", restApi(undefined, { deploymentState: "undeployed" }));
      expect(reply.status).to.equal(201);
      expect(reply.body.status.state).to.equal("undeployed");
      expect(reply.body.status).to.not.have.property("deployedAt");
      expect(await countRows("api_routes")).to.equal(0);
    });

    it("keeps upstream definitions, vhosts, labels and operation policies", async () => {
      const body = restApi("weighted", {
        upstream: { main: { ref: "backends", hostRewrite: "manual" }, sandbox: { url: "http://sandbox.internal:8080" } },
        upstreamDefinitions: [
          {
            name: "backends",
            basePath: "/api/v2",
            timeout: { connect: "500ms" },
            upstreams: [{ url: "http://a.internal:8080", weight: 80 }, { url: "http://b.internal:8080", weight: 20 }],
          },
        ],
        vhosts: { main: "api.example.com", sandbox: "sandbox.example.com" },
        operations: [{ method: "GET", path: "/books", policies: [{ name: "remove-headers", version: "v1", params: { request: { headers: ["x-debug"] } } }] }],
      });
      (body.metadata as Record<string, unknown>).labels = { team: "books", gateway: "edge" };
      const reply = await post("/rest-apis", body);
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.spec.upstreamDefinitions[0].upstreams[1]).to.deep.equal({ url: "http://b.internal:8080", weight: 20 });
      expect(reply.body.spec.vhosts).to.deep.equal({ main: "api.example.com", sandbox: "sandbox.example.com" });
      expect(reply.body.metadata.labels).to.deep.equal({ team: "books", gateway: "edge" });
      expect(reply.body.spec.operations[0].policies[0].name).to.equal("remove-headers");
      expect(await countRows("api_routes")).to.equal(2); // one operation, RELEASE and TEST
    });

    it("lists every failing field at once and stores nothing", async () => {
      const reply = await post("/rest-apis", {
        apiVersion: "v2",
        kind: "Api",
        metadata: { name: "has space" },
        spec: {
          displayName: "Bad/Name",
          version: "v1.0.0-beta",
          context: "/trailing/",
          upstream: { main: { url: "ftp://example.com", ref: "nope" } },
          policies: [{ name: "set-headerz", version: "v1.0.0" }],
          operations: [{ method: "GETS", path: "/books/{id" }],
        },
      });
      expect(reply.status).to.equal(400);
      expect(reply.body.status).to.equal("error");
      expect(reply.body.message).to.equal("Configuration validation failed");
      expect(fields(reply)).to.include.members([
        "apiVersion",
        "kind",
        "metadata.name",
        "spec.displayName",
        "spec.version",
        "spec.context",
        "spec.upstream.main",
        "spec.upstream.main.url",
        "spec.policies[0].version",
        "spec.operations[0].method",
        "spec.operations[0].path",
      ]);
      expect(await countRows("rest_apis")).to.equal(0);
      expect(await countRows("change_log")).to.equal(0);
    });

    it("rejects missing required fields by name", async () => {
      const reply = await post("/rest-apis", { apiVersion: "gateway.api-platform.wso2.com/v1alpha1", kind: "RestApi", metadata: {}, spec: { operations: [] } });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["metadata.name", "spec.displayName", "spec.version", "spec.context", "spec.upstream", "spec.operations"]);
    });

    it("validates policy params against the policy type and rejects unknown policies", async () => {
      const reply = await post(
        "/rest-apis",
        restApi(undefined, {
          policies: [
            { name: "set-headers", version: "v1", params: { request: { headers: [{ name: "bad header", value: "x" }] } } },
            { name: "no-such-policy", version: "v1", params: {} },
            { name: "cors", params: { allowOrigins: ["*"], allowCredentials: true } },
          ],
        }),
      );
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members([
        "spec.policies[0].params.request.headers[0].name",
        "spec.policies[1].name",
        "spec.policies[2].params.allowCredentials",
      ]);
    });

    it("rejects a policy that applies to a whole API when it is set on an operation", async () => {
      const reply = await post("/rest-apis", restApi(undefined, { operations: [{ method: "GET", path: "/x", policies: [{ name: "cors", params: { allowOrigins: ["*"] } }] }] }));
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["spec.operations[0].policies[0].name"]);
    });

    it("rejects duplicate operations, unknown refs and duplicate upstream definitions", async () => {
      const reply = await post(
        "/rest-apis",
        restApi(undefined, {
          upstream: { main: { ref: "missing" } },
          upstreamDefinitions: [
            { name: "a", upstreams: [{ url: "http://a:1" }] },
            { name: "a", upstreams: [{ url: "http://b:1" }] },
          ],
          operations: [
            { method: "GET", path: "/books/{id}" },
            { method: "GET", path: "/books/{bookId}" },
          ],
        }),
      );
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["spec.upstream.main.ref", "spec.upstreamDefinitions[1].name", "spec.operations[1]"]);
    });

    it("answers 409 for an existing handle and for an existing displayName+version", async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const sameHandle = await post("/rest-apis", otherApi("reading-list-api-v1.0"));
      expect(sameHandle.status).to.equal(409);
      expect(sameHandle.body.message).to.contain("reading-list-api-v1.0");
      const sameNameVersion = await post("/rest-apis", restApi("another-handle", { context: "/other" }));
      expect(sameNameVersion.status).to.equal(409);
      expect(sameNameVersion.body.message).to.contain("Reading-List-API");
      expect(await countRows("rest_apis")).to.equal(1);
    });

    it("answers 409 when another deployed API already serves the same route on the same vhost", async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      const clash = await post("/rest-apis", restApi("copy", { displayName: "Copy", operations: [{ method: "GET", path: "/books/{bookId}" }] }));
      expect(clash.status).to.equal(409);
      expect(clash.body.message).to.contain("GET /reading-list/v1.0/books/{}");
      // Same route on another vhost, or while undeployed, is fine.
      const otherHost = await post("/rest-apis", restApi("copy", { displayName: "Copy", vhosts: { main: "books.example.com" } }));
      expect(otherHost.status).to.equal(201);
      const undeployed = await post("/rest-apis", restApi("copy2", { displayName: "Copy2", deploymentState: "undeployed" }));
      expect(undeployed.status).to.equal(201);
      // ...until it is deployed.
      const deploy = await put("/rest-apis/copy2", restApi("copy2", { displayName: "Copy2", deploymentState: "deployed" }));
      expect(deploy.status).to.equal(409);
    });

    it("answers 400 for malformed JSON and YAML, 415 for other content types", async () => {
      const json = await post("/rest-apis", '{"apiVersion": ', { contentType: "application/json" });
      expect(json.status).to.equal(400);
      expect(json.body.message).to.match(/Malformed JSON/);
      const yaml = await post("/rest-apis", "spec: [unclosed", { contentType: "application/yaml" });
      expect(yaml.status).to.equal(400);
      expect(yaml.body.message).to.match(/Malformed YAML/);
      const xml = await post("/rest-apis", "<api/>", { contentType: "application/xml" });
      expect(xml.status).to.equal(415);
      expect(xml.body.status).to.equal("error");
      const arrayBody = await post("/rest-apis", [1, 2]);
      expect(arrayBody.status).to.equal(400);
      expect(await countRows("rest_apis")).to.equal(0);
    });

    it("answers 400 for an empty body", async () => {
      const reply = await call("POST", "/rest-apis", { contentType: "application/json" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["body"]);
    });

    it("answers 413 for a body over the limit", async () => {
      const huge = restApi();
      (huge.metadata as Record<string, unknown>).annotations = { big: "x".repeat(300_000) };
      const reply = await post("/rest-apis", huge);
      expect(reply.status).to.equal(413);
      expect(reply.body.status).to.equal("error");
    });

    it("rejects YAML alias bombs without expanding them", async () => {
      const bomb = ["a: &a [x,x,x,x,x,x,x,x,x,x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill("*" + String.fromCharCode(97 + i)).join(",")}]`)].join("\n");
      const reply = await post("/rest-apis", bomb, { contentType: "application/yaml" });
      expect(reply.status).to.equal(400);
    });

    it("handles regex-hostile and over-long strings quickly with a 400", async () => {
      const reply = await post(
        "/rest-apis",
        restApi("x".repeat(5000), {
          displayName: "a".repeat(50_000) + "!",
          context: "/" + "a/".repeat(20_000),
          version: "1".repeat(10_000) + "x",
          operations: [{ method: "GET", path: "/" + "{a}".repeat(10_000) }],
        }),
      );
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["metadata.name", "spec.displayName", "spec.context", "spec.version", "spec.operations[0].path"]);
    });

    it("fills wrong types with clear messages", async () => {
      const reply = await post("/rest-apis", restApi(undefined, { operations: "GET /books", upstream: { main: { url: 42 } }, deploymentState: "paused" }));
      expect(reply.status).to.equal(400);
      const byField = Object.fromEntries((reply.body.errors as { field: string; message: string }[]).map((e) => [e.field, e.message]));
      expect(byField["spec.operations"]).to.equal("must be an array");
      expect(byField["spec.deploymentState"]).to.equal("must be one of: deployed, undeployed");
      expect(byField["spec.upstream.main.url"]).to.equal("must be a string");
    });
  });

  describe("GET /rest-apis", () => {
    beforeEach(async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
      expect((await post("/rest-apis", otherApi("petstore-v1", { deploymentState: "undeployed" }))).status).to.equal(201);
    });

    it("lists newest first with a count", async () => {
      const reply = await get("/rest-apis");
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.count).to.equal(2);
      expect(reply.body.apis.map((a: { metadata: { name: string } }) => a.metadata.name)).to.deep.equal(["petstore-v1", "reading-list-api-v1.0"]);
    });

    it("filters by displayName, version, resolved context and status", async () => {
      const names = async (query: string) =>
        ((await get(`/rest-apis?${query}`)).body.apis as { metadata: { name: string } }[]).map((a) => a.metadata.name);
      expect(await names("displayName=Petstore")).to.deep.equal(["petstore-v1"]);
      expect(await names("version=v1.0")).to.deep.equal(["reading-list-api-v1.0"]);
      expect(await names("context=/reading-list/v1.0")).to.deep.equal(["reading-list-api-v1.0"]);
      expect(await names("status=undeployed")).to.deep.equal(["petstore-v1"]);
      expect(await names("displayName=nothing")).to.deep.equal([]);
    });

    it("rejects an unknown status filter", async () => {
      const reply = await get("/rest-apis?status=paused");
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["status"]);
    });

    it("answers an empty list as [] rather than null", async () => {
      await del("/rest-apis/petstore-v1");
      await del("/rest-apis/reading-list-api-v1.0");
      const reply = await get("/rest-apis");
      expect(reply.body).to.deep.equal({ status: "success", count: 0, apis: [] });
    });
  });

  describe("GET /rest-apis/{id}", () => {
    it("returns the API or 404", async () => {
      await post("/rest-apis", restApi());
      const found = await get("/rest-apis/reading-list-api-v1.0");
      expect(found.status).to.equal(200);
      expect(found.body.spec.operations).to.have.length(5);
      const missing = await get("/rest-apis/nope");
      expect(missing.status).to.equal(404);
      expect(missing.body).to.deep.equal({ status: "error", message: "RestAPI with handle 'nope' not found" });
    });
  });

  describe("PUT /rest-apis/{id}", () => {
    beforeEach(async () => {
      expect((await post("/rest-apis", restApi())).status).to.equal(201);
    });

    it("replaces the API and keeps createdAt", async () => {
      const before = (await get("/rest-apis/reading-list-api-v1.0")).body;
      const reply = await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { displayName: "Reading-List", operations: [{ method: "GET", path: "/books" }] }));
      expect(reply.status).to.equal(200);
      expect(reply.body.spec.displayName).to.equal("Reading-List");
      expect(reply.body.spec.operations).to.have.length(1);
      expect(reply.body.status.createdAt).to.equal(before.status.createdAt);
      expect(Date.parse(reply.body.status.updatedAt)).to.be.at.least(Date.parse(before.status.updatedAt));
      expect(await countRows("api_routes")).to.equal(1);
    });

    it("undeploys and redeploys", async () => {
      const undeployed = await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { deploymentState: "undeployed" }));
      expect(undeployed.status).to.equal(200);
      expect(undeployed.body.status.state).to.equal("undeployed");
      expect(undeployed.body.status).to.not.have.property("deployedAt");
      expect(await countRows("api_routes")).to.equal(0);
      const redeployed = await put("/rest-apis/reading-list-api-v1.0", restApi());
      expect(redeployed.body.status.state).to.equal("deployed");
      expect(redeployed.body.status.deployedAt).to.be.a("string");
    });

    it("checks handle mismatch before existence, existence before validation", async () => {
      const mismatch = await put("/rest-apis/reading-list-api-v1.0", restApi("renamed"));
      expect(mismatch.status).to.equal(400);
      expect(mismatch.body.message).to.match(/handle mismatch/);
      const missing = await put("/rest-apis/unknown", { ...restApi("unknown"), kind: "Wrong" });
      expect(missing.status).to.equal(404);
      const invalid = await put("/rest-apis/reading-list-api-v1.0", restApi(undefined, { context: "no-slash" }));
      expect(invalid.status).to.equal(400);
      expect(fields(invalid)).to.deep.equal(["spec.context"]);
    });

    it("answers 409 when the new displayName+version belongs to another API", async () => {
      await post("/rest-apis", otherApi());
      const reply = await put("/rest-apis/petstore-v1", otherApi("petstore-v1", { displayName: "Reading-List-API", version: "v1.0" }));
      expect(reply.status).to.equal(409);
      expect((await get("/rest-apis/petstore-v1")).body.spec.displayName).to.equal("Petstore");
    });
  });

  describe("DELETE /rest-apis/{id}", () => {
    it("deletes, then answers 404", async () => {
      await post("/rest-apis", restApi());
      const first = await del("/rest-apis/reading-list-api-v1.0");
      expect(first.status).to.equal(200);
      expect(first.body).to.deep.equal({ status: "success", message: "RestAPI deleted successfully", id: "reading-list-api-v1.0" });
      expect((await del("/rest-apis/reading-list-api-v1.0")).status).to.equal(404);
      expect(await countRows("api_routes")).to.equal(0);
    });
  });

  describe("authentication and roles", () => {
    it("answers 401 without credentials, with WWW-Authenticate", async () => {
      const reply = await get("/rest-apis", { as: null });
      expect(reply.status).to.equal(401);
      expect(reply.body.error).to.equal("no valid authentication credentials provided");
      expect(reply.body.status).to.equal("error");
      expect(reply.headers.get("www-authenticate")).to.match(/^Basic/);
    });

    it("answers 401 for a wrong password", async () => {
      const reply = await get("/rest-apis", { as: null, headers: { Authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") } });
      expect(reply.status).to.equal(401);
      expect(reply.body.error).to.equal("authentication failed");
    });

    it("answers 403 for a consumer and lets a developer in", async () => {
      expect((await get("/rest-apis", { as: "consumer" })).status).to.equal(403);
      expect((await post("/rest-apis", restApi(), { as: "consumer" })).status).to.equal(403);
      expect(await countRows("rest_apis")).to.equal(0);
      expect((await get("/rest-apis", { as: "developer" })).status).to.equal(200);
    });
  });

  describe("unknown routes and methods", () => {
    it("answers 405 with Allow for a known path, 404 otherwise, in the error shape", async () => {
      const patch = await call("PATCH", "/rest-apis");
      expect(patch.status).to.equal(405);
      expect(patch.headers.get("allow")).to.equal("GET, POST");
      const unknown = await get("/nothing-here");
      expect(unknown.status).to.equal(404);
      expect(unknown.body.status).to.equal("error");
    });
  });
});

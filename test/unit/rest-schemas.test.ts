import { expect } from "chai";
import { loadConfig, usersFromConfig } from "../../packages/control-plane/src/config";
import { fieldPath } from "../../packages/control-plane/src/errors";
import { routeKeys } from "../../packages/control-plane/src/store/repositories/restApis";
import { checkOperationPath, pathKey, restApiRequestSchema } from "../../packages/control-plane/src/rest/schemas/restApi";
import { restApi } from "../support/fixtures";

describe("rest-api schema helpers", () => {
  it("accepts valid operation paths and explains invalid ones", () => {
    for (const ok of ["/", "/books", "/books/{id}", "/books/{id}/", "/a/{b}/c/{d_e}", "/files/*", "/v1.0/x~y"]) {
      expect(checkOperationPath(ok), ok).to.equal(undefined);
    }
    expect(checkOperationPath("books")).to.match(/start with/);
    expect(checkOperationPath("/a//b")).to.match(/\/\//);
    expect(checkOperationPath("/books/{id")).to.match(/whole segment/);
    expect(checkOperationPath("/books/x{id}")).to.match(/whole segment/);
    expect(checkOperationPath("/{a}/{a}")).to.match(/twice/);
    expect(checkOperationPath("/{a}/{b}/{c}/{d}/{e}/{f}")).to.match(/at most 5/);
    expect(checkOperationPath("/a b")).to.match(/not allowed/);
    expect(checkOperationPath("/*/x")).to.match(/not allowed/);
  });

  it("treats routes that differ only in variable names or a trailing slash as the same", () => {
    expect(pathKey("/books/{id}")).to.equal(pathKey("/books/{bookId}/"));
    expect(pathKey("/books/new")).to.not.equal(pathKey("/books/{id}"));
    expect(pathKey("/")).to.equal("/");
  });

  it("derives route keys per stage, with the sandbox only when it has an upstream", () => {
    const main = restApiRequestSchema.parse(restApi(undefined, { operations: [{ method: "GET", path: "/" }, { method: "GET", path: "/b/{x}" }] }));
    expect(routeKeys(main).map((k) => `${k.stage} ${k.vhost} ${k.method} ${k.path_key}`)).to.deep.equal([
      "RELEASE * GET /reading-list/v1.0",
      "RELEASE * GET /reading-list/v1.0/b/{}",
    ]);
    const both = restApiRequestSchema.parse(restApi(undefined, { context: "/", upstream: { main: { url: "http://a" }, sandbox: { url: "http://b" } }, operations: [{ method: "PUT", path: "/x" }] }));
    expect(routeKeys(both).map((k) => `${k.stage} ${k.vhost} ${k.path_key}`)).to.deep.equal(["RELEASE * /x", "TEST sandbox-* /x"]);
  });

  it("formats field paths the way WSO2 reports them", () => {
    expect(fieldPath(["spec", "upstreamDefinitions", 0, "upstreams", 1, "url"])).to.equal("spec.upstreamDefinitions[0].upstreams[1].url");
    expect(fieldPath([0, "name"], "")).to.equal("[0].name");
  });
});

describe("configuration", () => {
  it("applies defaults and names the variable that is wrong", () => {
    const config = loadConfig({});
    expect(config.MANAGEMENT_PORT).to.equal(9090);
    expect(config.ADMIN_PORT).to.equal(9092);
    expect(config.ADMIN_USER).to.equal("admin");
    expect(() => loadConfig({ MANAGEMENT_PORT: "70000" })).to.throw(/MANAGEMENT_PORT/);
    expect(() => loadConfig({ MASTER_KEY: "short" })).to.throw(/MASTER_KEY/);
  });

  it("reads extra users with roles and rejects malformed entries", () => {
    const users = usersFromConfig(loadConfig({ MANAGEMENT_USERS: "ann:pw1:developer; bob:pw2:consumer" }));
    expect(users.map((u) => `${u.name}:${u.role}`)).to.deep.equal(["admin:admin", "ann:developer", "bob:consumer"]);
    expect(() => usersFromConfig(loadConfig({ MANAGEMENT_USERS: "ann:pw:root" }))).to.throw(/MANAGEMENT_USERS/);
  });
});

describe("gateway options from the environment", () => {
  it("adds a TLS listener only when both certificate files are given", async () => {
    const { translatorOptions } = await import("../../packages/control-plane/src/controlPlane");
    expect(translatorOptions(loadConfig({}))).to.deep.equal({ httpPort: 8080 });
    expect(translatorOptions(loadConfig({ GATEWAY_TLS_CERT_FILE: "/etc/envoy/tls.crt" }))).to.deep.equal({ httpPort: 8080 });
    expect(translatorOptions(loadConfig({ GATEWAY_HTTP_PORT: "10080", GATEWAY_TLS_CERT_FILE: "/c.pem", GATEWAY_TLS_KEY_FILE: "/k.pem" }))).to.deep.equal({
      httpPort: 10080,
      tls: { port: 8443, certificateChain: { filename: "/c.pem" }, privateKey: { filename: "/k.pem" } },
    });
  });
});

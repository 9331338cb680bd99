import { expect } from "chai";
import {
  API_KEY_PATTERN,
  SecretBox,
  constantTimeEqual,
  durationToMillis,
  findPolicyType,
  generateApiKey,
  hashApiKey,
  isIpOrCidr,
  maskSecret,
  randomAlphanumeric,
  resolveContext,
  validatePolicy,
} from "@apigw/shared";

describe("shared: credentials and crypto", () => {
  it("generates apip_ keys of 32 random bytes in hex and hashes them with SHA-256", () => {
    const a = generateApiKey();
    const b = generateApiKey();
    expect(a).to.match(API_KEY_PATTERN);
    expect(a).to.not.equal(b);
    expect(hashApiKey("abc")).to.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(maskSecret(a)).to.equal("***" + a.slice(-5));
  });

  it("compares in constant time and returns the right answer", () => {
    expect(constantTimeEqual("secret", "secret")).to.equal(true);
    expect(constantTimeEqual("secret", "secreT")).to.equal(false);
    expect(constantTimeEqual("secret", "secret!")).to.equal(false);
  });

  it("draws random alphanumerics of the requested length", () => {
    const value = randomAlphanumeric(40);
    expect(value).to.match(/^[a-z0-9]{40}$/);
  });

  it("seals and opens secrets with AES-256-GCM, bound to their associated data", () => {
    const box = new SecretBox("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0");
    const sealed = box.encrypt("app-secret-123", "appkey-1");
    expect(sealed).to.match(/^v1\./);
    expect(sealed).to.not.contain("app-secret-123");
    expect(box.encrypt("app-secret-123", "appkey-1")).to.not.equal(sealed); // fresh IV each time
    expect(box.decrypt(sealed, "appkey-1")).to.equal("app-secret-123");
    expect(() => box.decrypt(sealed, "appkey-2")).to.throw();
    expect(() => new SecretBox("another-master-key-of-16+").decrypt(sealed, "appkey-1")).to.throw();
    const tampered = sealed.slice(0, -2) + (sealed.endsWith("A") ? "BB" : "AA");
    expect(() => box.decrypt(tampered, "appkey-1")).to.throw();
    expect(() => new SecretBox("short")).to.throw(/16/);
  });
});

describe("shared: model helpers", () => {
  it("resolves $version anywhere in a context", () => {
    expect(resolveContext("/reading-list/$version", "v1.0")).to.equal("/reading-list/v1.0");
    expect(resolveContext("/$version/a/$version", "v2")).to.equal("/v2/a/v2");
    expect(resolveContext("/plain", "v2")).to.equal("/plain");
  });

  it("parses durations", () => {
    expect(durationToMillis("500ms")).to.equal(500);
    expect(durationToMillis("1m30s")).to.equal(90_000);
    expect(durationToMillis("2h")).to.equal(7_200_000);
  });

  it("accepts IPs and CIDR blocks of the right prefix length only", () => {
    for (const ok of ["10.0.0.1", "10.0.0.0/8", "0.0.0.0/0", "::1", "2001:db8::/32", "2001:db8::/128"]) expect(isIpOrCidr(ok), ok).to.equal(true);
    for (const bad of ["10.0.0.0/33", "10.0.0", "2001:db8::/129", "10.0.0.0/", "host.example.com", "10.0.0.0/8/8", "1.2.3.4/x"]) expect(isIpOrCidr(bad), bad).to.equal(false);
  });
});

describe("shared: policy registry", () => {
  it("finds a type by its canonical name and by its WSO2-style alias", () => {
    expect(findPolicyType("setHeaders")?.type).to.equal("setHeaders");
    expect(findPolicyType("set-headers")?.type).to.equal("setHeaders");
    expect(findPolicyType("api-key-auth")?.enforcedBy).to.equal("ext_authz");
    expect(findPolicyType("nope")).to.equal(undefined);
  });

  it("validates params and reports paths below params", () => {
    const result = validatePolicy({ name: "ipControl", params: { allow: ["10.0.0.0/8", "999.1.1.1"] } }, "api");
    expect(result.issues.map((i) => i.path.join("."))).to.deep.equal(["params.allow.1"]);
    expect(validatePolicy({ name: "ipControl", params: {} }, "api").issues[0]!.message).to.match(/at least one/);
    expect(validatePolicy({ name: "trafficControl", params: { unit: "MINUTE", apiLimit: 100 } }, "api").issues).to.deep.equal([]);
    expect(validatePolicy({ name: "trafficControl", params: { unit: "WEEK", apiLimit: 0 } }, "api").issues.map((i) => i.path.join("."))).to.have.members(["params.unit", "params.apiLimit"]);
    expect(validatePolicy({ name: "appAuth", params: { signature: false, appCode: "DISABLE" } }, "api").issues).to.have.length(1);
    expect(validatePolicy({ name: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime: "30s" } }, "api").issues).to.deep.equal([]);
    expect(validatePolicy({ name: "circuitBreaker", params: { consecutiveErrors: 5, ejectionTime: "0s" } }, "api").issues.map((i) => i.path.join("."))).to.deep.equal(["params.ejectionTime"]);
  });

  it("rejects unknown params, unknown versions and whole-API policies on an operation", () => {
    expect(validatePolicy({ name: "cors", params: { allowOrigins: ["*"], allowOrigin: "x" } }, "api").issues[0]!.message).to.match(/Unrecognized|unknown/i);
    expect(validatePolicy({ name: "cors", version: "v2", params: { allowOrigins: ["*"] } }, "api").issues.map((i) => i.path.join("."))).to.deep.equal(["version"]);
    expect(validatePolicy({ name: "apiKeyAuth", params: {} }, "operation").issues.map((i) => i.path.join("."))).to.deep.equal(["name"]);
  });

  it("refuses header mutations of Host and header values with CR/LF", () => {
    const issues = validatePolicy(
      { name: "setHeaders", params: { request: { headers: [{ name: "Host", value: "x" }, { name: "x-ok", value: "a\r\nb" }] } } },
      "api",
    ).issues.map((i) => i.path.join("."));
    expect(issues).to.have.members(["params.request.headers.0.name", "params.request.headers.1.value"]);
  });
});

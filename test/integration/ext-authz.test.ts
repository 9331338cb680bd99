import { expect } from "chai";
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import {
  buildStringToSign,
  connectRedis,
  contentMd5,
  redisReady,
  RedisCredentialStore,
  sign,
  toSignableRequest,
  SecretBox,
  type ProjectedApiKey,
  type ProjectedApplication,
  type ProjectedSubscription,
  type ScopeConfig,
} from "@apigw/shared";
import { createExtAuthzServer, loadExtAuthzConfig, type ExtAuthzServer } from "../../packages/ext-authz/src/index";
import { SecretCache } from "../../packages/ext-authz/src/secretCache";
import { TEST_MASTER_KEY } from "../support/environment";
import {
  AliyunApiGatewayClient,
  CaptureServer,
  checkRequestOf,
  ExtAuthzClient,
  scopeConfig,
  writeScope,
  type CapturedRequest,
  type ScopeEntries,
  type SimpleCheckRequest,
  markProjectionComplete,
} from "../support/extAuthzClient";

/*
 * ext_authz over real gRPC (loopback) against the real Redis (database index 3), with scopes
 * written exactly as the control plane's projection writes them. Credentials: apip_ API keys,
 * subscription keys with plan quotas, signed requests from the official `aliyun-api-gateway`
 * client, AppCodes.
 */

const REDIS_URL = process.env.EXT_AUTHZ_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3";
const API = "reading-list";
const CTX = { api_id: API, stage: "RELEASE", operation: "GET /books" };
const APP_KEY = "203753911";
const APP_SECRET = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
const APP_CODE = "c0ffee00c0ffee00c0ffee00c0ffee00";
const API_KEY = "apip_" + "ab".repeat(32);

const app = (over: Partial<ProjectedApplication> = {}): ProjectedApplication => ({
  appId: "app-1",
  name: "reader",
  status: "ENABLED",
  extInfo: null,
  authorizationExpiresAt: null,
  ...over,
});

const subscription = (over: Partial<ProjectedSubscription> = {}): ProjectedSubscription => ({
  id: "sub-1",
  status: "ACTIVE",
  applicationId: "app-1",
  plan: {
    id: "plan-1",
    name: "Gold",
    status: "ACTIVE",
    throttleLimitCount: null,
    throttleLimitUnit: null,
    stopOnQuotaReach: true,
    expiryTime: null,
  },
  ...over,
});

const APP_AUTH: NonNullable<ScopeConfig["accepts"]["appAuth"]> = {
  signature: true,
  signatureMethods: ["HmacSHA256", "HmacSHA1"],
  appCode: "HEADER",
  forceNonceCheck: false,
};

describe("ext_authz: credentials over gRPC and Redis", function () {
  let redis: Redis;
  let store: RedisCredentialStore;
  let server: ExtAuthzServer;
  let client: ExtAuthzClient;
  const capture = new CaptureServer();
  const signer = new AliyunApiGatewayClient(APP_KEY, APP_SECRET);

  before(async () => {
    redis = connectRedis({ url: REDIS_URL }) as Redis;
    await redisReady(redis);
    store = new RedisCredentialStore(redis);
    server = await createExtAuthzServer({ store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
    client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
    await capture.start();
  });

  after(async () => {
    client?.close();
    await server?.close(1000);
    await capture.stop();
    await redis?.flushdb();
    await store?.close();
  });

  beforeEach(async () => {
    await redis.flushdb();
  });

  async function scope(partial: Partial<ScopeConfig>, entries: ScopeEntries = {}, stage: "RELEASE" | "TEST" = "RELEASE") {
    await writeScope(store, TEST_MASTER_KEY, scopeConfig(API, stage, partial), entries);
  }

  function expectDenied(result: Awaited<ReturnType<ExtAuthzClient["check"]>>, status: number, code: string, message?: string) {
    expect(result.allowed, JSON.stringify(result.json)).to.equal(false);
    expect(result.status).to.equal(status);
    expect(result.json?.code).to.equal(code);
    expect(result.headers["x-ca-error-code"]).to.equal(code);
    expect(result.headers["x-ca-error-message"]).to.be.a("string").and.not.equal("");
    expect(result.headers["x-ca-request-id"]).to.be.a("string").and.not.equal("");
    expect(result.headers["content-type"]).to.match(/^application\/json/);
    expect(result.json?.message).to.equal(result.headers["x-ca-error-message"]);
    if (message !== undefined) expect(result.json?.message).to.equal(message);
    if (status === 401) expect(result.headers["www-authenticate"]).to.be.a("string").and.not.equal("");
    else expect(result.headers).to.not.have.property("www-authenticate");
  }

  describe("scopes and the request's route context", () => {
    it("an API with no scope in the store is 404 API Not Found, and the request id is echoed", async () => {
      await markProjectionComplete(store); // a complete projection without this API
      const result = await client.check({ path: "/books", headers: { "x-request-id": "req-42" }, contextExtensions: CTX });
      expectDenied(result, 404, "I404NF", "API Not Found");
      expect(result.headers["x-ca-request-id"]).to.equal("req-42");
      expect(result.body).to.equal('{"code":"I404NF","message":"API Not Found"}');
    });

    it("without a complete projection in the store (Redis came back empty, being rebuilt), a missing scope is 503, not 404", async () => {
      const result = await client.check({ path: "/books", headers: { "x-request-id": "req-43" }, contextExtensions: CTX });
      expectDenied(result, 503, "S503PI", "Authorization Service Unavailable: credentials are being restored");
      expect(result.headers["retry-after"]).to.equal("1");
      expect(result.grpcCode).to.equal(14); // UNAVAILABLE
      await markProjectionComplete(store);
      expectDenied(await client.check({ path: "/books", contextExtensions: CTX }), 404, "I404NF");
    });

    it("a route without api_id/stage context extensions, or with an unknown stage, is 404 (I404NC)", async () => {
      await scope({});
      expectDenied(await client.check({ path: "/books", contextExtensions: {} }), 404, "I404NC");
      expectDenied(await client.check({ path: "/books", contextExtensions: { api_id: API } }), 404, "I404NC");
      expectDenied(await client.check({ path: "/books", contextExtensions: { api_id: API, stage: "PRE" } }), 404, "I404NC");
      expect((await client.check({ path: "/books", contextExtensions: { api_id: API, stage: "RELEASE" } })).allowed).to.equal(true);
    });

    it("an undeployed API is 404 API Not Deployed; stages are separate scopes", async () => {
      await scope({ deployed: false });
      expectDenied(await client.check({ path: "/books", contextExtensions: CTX }), 404, "I404ND", "API Not Deployed");
      await scope({}, {}, "TEST");
      expect((await client.check({ path: "/books", contextExtensions: { ...CTX, stage: "TEST" } })).allowed).to.equal(true);
    });

    it("a scope that accepts no credential allows anonymous calls and strips spoofed identity headers", async () => {
      await scope({});
      const result = await client.check({
        path: "/books",
        headers: { "x-ca-app-id": "admin-app", "x-apigw-consumer": "root", "x-request-id": "r-1" },
        contextExtensions: CTX,
      });
      expect(result.allowed).to.equal(true);
      expect(result.grpcCode).to.equal(0);
      expect(result.headers).to.deep.equal({ "x-apigw-credential": "NONE" });
      expect(result.headersToRemove).to.include.members(["x-ca-app-id", "x-apigw-consumer", "x-apigw-plan", "x-ca-app-ext-info"]);
      expect(result.responseHeadersToAdd).to.deep.equal({ "x-ca-request-id": "r-1" });
    });
  });

  describe("apip_ API keys", () => {
    const keyScope = (accepts: ScopeConfig["accepts"] = { apiKey: { in: "header", name: "API-Key" } }, keys: { raw: string; key: ProjectedApiKey }[] = [{ raw: API_KEY, key: { name: "ci-key", status: "active", expiresAt: null } }]) =>
      scope({ accepts }, { apiKeys: keys });

    it("a valid key in the default header is allowed; the key header is removed, the identity set (overwriting)", async () => {
      await keyScope();
      const result = await client.check({ path: "/books?x=1", headers: { "api-key": API_KEY, "x-ca-app-id": "spoofed" }, contextExtensions: CTX });
      expect(result.allowed).to.equal(true);
      expect(result.headers).to.deep.equal({ "x-apigw-credential": "API_KEY", "x-apigw-consumer": "ci-key" });
      expect(result.appendActions["x-apigw-consumer"]).to.equal(2); // OVERWRITE_IF_EXISTS_OR_ADD
      expect(result.headersToRemove).to.include("api-key");
      expect(result.headersToRemove).to.include("x-ca-app-id");
      expect(result.queryParametersToRemove).to.deep.equal([]);
      expect(result.dynamicMetadata).to.include({ credential: "API_KEY", consumer: "ci-key" });
    });

    it("a configured header name is used (and the default one is not a credential then)", async () => {
      await keyScope({ apiKey: { in: "header", name: "X-Books-Key" } });
      const ok = await client.check({ path: "/books", headers: { "x-books-key": API_KEY }, contextExtensions: CTX });
      expect(ok.allowed).to.equal(true);
      expect(ok.headersToRemove).to.include("x-books-key");
      expectDenied(await client.check({ path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX }), 401, "A401MC", "Missing Credential");
    });

    it("a key in a query parameter is allowed and the parameter removed", async () => {
      await keyScope({ apiKey: { in: "query", name: "apikey" } });
      const result = await client.check({ path: `/books?q=dune&apikey=${API_KEY}`, contextExtensions: CTX });
      expect(result.allowed).to.equal(true);
      expect(result.queryParametersToRemove).to.deep.equal(["apikey"]);
      expect(result.headersToRemove).to.not.include("api-key");
      expectDenied(await client.check({ path: "/books?apikey=apip_wrong", contextExtensions: CTX }), 401, "A401KY");
    });

    it("an unknown key is 401 Invalid API Key with WWW-Authenticate naming the header; no key is 401 Missing Credential", async () => {
      await keyScope();
      const wrong = await client.check({ path: "/books", headers: { "api-key": "apip_" + "cd".repeat(32) }, contextExtensions: CTX });
      expectDenied(wrong, 401, "A401KY", "Invalid API Key");
      expect(wrong.headers["www-authenticate"]).to.equal('ApiKey realm="apigw", header="API-Key"');
      expect(wrong.grpcCode).to.equal(16);
      expectDenied(await client.check({ path: "/books", contextExtensions: CTX }), 401, "A401MC", "Missing Credential");
      expectDenied(await client.check({ path: "/books", headers: { "api-key": "" }, contextExtensions: CTX }), 401, "A401MC");
    });

    it("expired keys (by status or by expiresAt) are 401 API Key Expired; a future expiry is fine", async () => {
      const past = new Date(Date.now() - 60_000).toISOString();
      const future = new Date(Date.now() + 3_600_000).toISOString();
      await keyScope(undefined, [
        { raw: API_KEY, key: { name: "old", status: "expired", expiresAt: past } },
        { raw: "apip_lapsed", key: { name: "lapsed", status: "active", expiresAt: past } },
        { raw: "apip_fresh", key: { name: "fresh", status: "active", expiresAt: future } },
      ]);
      expectDenied(await client.check({ path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX }), 401, "A401KE", "API Key Expired");
      expectDenied(await client.check({ path: "/books", headers: { "api-key": "apip_lapsed" }, contextExtensions: CTX }), 401, "A401KE");
      expect((await client.check({ path: "/books", headers: { "api-key": "apip_fresh" }, contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("a regenerated key's previous value works during its grace period only", async () => {
      await keyScope(undefined, [
        { raw: "apip_new", key: { name: "rotated", status: "active", expiresAt: null } },
        { raw: "apip_previous", key: { name: "rotated", status: "grace", expiresAt: new Date(Date.now() + 60_000).toISOString() } },
        { raw: "apip_ancient", key: { name: "rotated", status: "grace", expiresAt: new Date(Date.now() - 1000).toISOString() } },
      ]);
      const previous = await client.check({ path: "/books", headers: { "api-key": "apip_previous" }, contextExtensions: CTX });
      expect(previous.allowed).to.equal(true);
      expect(previous.headers["x-apigw-consumer"]).to.equal("rotated");
      expect((await client.check({ path: "/books", headers: { "api-key": "apip_new" }, contextExtensions: CTX })).allowed).to.equal(true);
      expectDenied(await client.check({ path: "/books", headers: { "api-key": "apip_ancient" }, contextExtensions: CTX }), 401, "A401KE");
    });

    it("a revoked key (gone from the scope) is refused on the next request", async () => {
      await keyScope();
      expect((await client.check({ path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX })).allowed).to.equal(true);
      await keyScope(undefined, []);
      expectDenied(await client.check({ path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX }), 401, "A401KY");
    });

    it("a key of another API (another scope) is not valid here", async () => {
      await writeScope(store, TEST_MASTER_KEY, scopeConfig("other-api", "RELEASE", { accepts: { apiKey: { in: "header", name: "API-Key" } } }), {
        apiKeys: [{ raw: API_KEY, key: { name: "other", status: "active", expiresAt: null } }],
      });
      await keyScope(undefined, []);
      expectDenied(await client.check({ path: "/books", headers: { "api-key": API_KEY }, contextExtensions: CTX }), 401, "A401KY");
      expect((await client.check({ path: "/x", headers: { "api-key": API_KEY }, contextExtensions: { api_id: "other-api", stage: "RELEASE" } })).allowed).to.equal(true);
    });
  });

  describe("subscription keys and plans", () => {
    const TOKEN = "sub-token-0123456789";
    const subScope = (sub: ProjectedSubscription = subscription(), header = "Subscription-Key") =>
      scope({ accepts: { subscriptionKey: { header } } }, { subscriptions: [{ token: TOKEN, subscription: sub }] });

    it("an active subscription is allowed: header removed, subscription, plan and application passed upstream", async () => {
      await subScope();
      const result = await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX });
      expect(result.allowed).to.equal(true);
      expect(result.headers).to.deep.equal({
        "x-apigw-credential": "SUBSCRIPTION",
        "x-apigw-consumer": "sub-1",
        "x-apigw-subscription-id": "sub-1",
        "x-apigw-plan": "Gold",
        "x-ca-app-id": "app-1",
      });
      expect(result.headersToRemove).to.include("subscription-key");
    });

    it("a configured header name is honoured", async () => {
      await subScope(subscription(), "Ocp-Apim-Subscription-Key");
      expect((await client.check({ path: "/books", headers: { "ocp-apim-subscription-key": TOKEN }, contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("unknown tokens are 401; inactive and revoked subscriptions 403", async () => {
      await subScope();
      expectDenied(await client.check({ path: "/books", headers: { "subscription-key": "nope" }, contextExtensions: CTX }), 401, "A401SK", "Invalid Subscription Key");
      await subScope(subscription({ status: "INACTIVE" }));
      expectDenied(await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX }), 403, "A403SI", "Subscription Inactive");
      await subScope(subscription({ status: "REVOKED" }));
      expectDenied(await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX }), 403, "A403SR", "Subscription Revoked");
    });

    it("an inactive or expired plan is refused with 403", async () => {
      const base = subscription().plan!;
      await subScope(subscription({ plan: { ...base, status: "INACTIVE" } }));
      expectDenied(await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX }), 403, "A403PI");
      await subScope(subscription({ plan: { ...base, expiryTime: new Date(Date.now() - 1000).toISOString() } }));
      expectDenied(await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX }), 403, "A403PE", "Subscription Plan Expired");
      await subScope(subscription({ plan: { ...base, expiryTime: new Date(Date.now() + 60_000).toISOString() } }));
      expect((await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("the plan's limit is enforced with 429 (and Retry-After) once the window's count is exceeded", async () => {
      await subScope(subscription({ plan: { ...subscription().plan!, throttleLimitCount: 3, throttleLimitUnit: "Day" } }));
      for (let i = 0; i < 3; i++) {
        expect((await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX })).allowed, `request ${i + 1}`).to.equal(true);
      }
      const over = await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX });
      expectDenied(over, 429, "A429SQ", "Throttled by Subscription Quota");
      expect(Number(over.headers["retry-after"])).to.be.greaterThan(0);
      expect(over.grpcCode).to.equal(8);
      // The counter lives in Redis under the subscription, shared by every replica.
      const keys = await redis.keys("apigw:count:plan:sub-1:Day:*");
      expect(keys).to.have.length(1);
      expect(await redis.get(keys[0]!)).to.equal("4");
    });

    it("a plan that does not stop on quota lets requests through, flagged for the upstream", async () => {
      await subScope(subscription({ plan: { ...subscription().plan!, throttleLimitCount: 1, throttleLimitUnit: "Month", stopOnQuotaReach: false } }));
      const first = await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX });
      expect(first.allowed).to.equal(true);
      expect(first.headers).to.not.have.property("x-apigw-quota-exceeded");
      const second = await client.check({ path: "/books", headers: { "subscription-key": TOKEN }, contextExtensions: CTX });
      expect(second.allowed).to.equal(true);
      expect(second.headers["x-apigw-quota-exceeded"]).to.equal("true");
    });
  });

  describe("signed requests from the official aliyun-api-gateway client", () => {
    const signedScope = (appAuth = APP_AUTH, appOver: Partial<ProjectedApplication> = {}) =>
      scope({ accepts: { appAuth } }, { apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, appCode: APP_CODE, app: app({ extInfo: '{"tier":"gold"}', ...appOver }) }] });

    async function signedGet(path = "/reading-list/v1.0/books", opts = {}): Promise<CapturedRequest> {
      return capture.capture((base) => signer.get(`${base}${path}`, opts));
    }

    it("a GET with query parameters and a signed custom header is allowed, with the application passed upstream", async () => {
      await signedScope();
      const captured = await signedGet("/reading-list/v1.0/books", { query: { b: "2", a: "1", empty: "", title: "Dune Messiah" }, signHeaders: { "X-Tenant": "acme" } });
      const result = await client.check(checkRequestOf(captured, CTX));
      expect(result.allowed, JSON.stringify(result.json)).to.equal(true);
      expect(result.headers).to.deep.equal({
        "x-apigw-credential": "SIGNATURE",
        "x-apigw-consumer": "app-1",
        "x-ca-app-id": "app-1",
        "x-ca-app-ext-info": '{"tier":"gold"}',
      });
      expect(result.headersToRemove).to.not.include("authorization");
    });

    it("a form POST (the body is signed) is allowed, as raw bytes or as text; a tampered form body is refused", async () => {
      await signedScope();
      const postForm = () =>
        capture.capture((base) =>
          signer.post(`${base}/reading-list/v1.0/books?draft=true`, {
            headers: { "content-type": "application/x-www-form-urlencoded; charset=UTF-8" },
            data: { title: "Dune", author: "Frank Herbert", tag: ["sf", "classic"] },
          }),
        );
      const captured = await postForm();
      expect(captured.headers["content-md5"]).to.equal(undefined);
      expect((await client.check(checkRequestOf(captured, CTX))).allowed).to.equal(true);
      // Envoy without pack_as_bytes sends the body as text.
      const second = await postForm();
      expect((await client.check(checkRequestOf(second, CTX, { rawBody: undefined, body: second.body.toString("utf8") }))).allowed).to.equal(true);
      const forged = new Uint8Array(Buffer.from("title=Dune&author=Frank%20Herbert&tag=sf&tag=classic&admin=true"));
      const tampered = await client.check(checkRequestOf(await postForm(), CTX, { rawBody: forged }));
      expectDenied(tampered, 400, "A400SG");
      expect(tampered.json!.message.startsWith("Invalid Signature, Server StringToSign:POST#application/json##application/x-www-form-urlencoded; charset=UTF-8#")).to.equal(true);
      expect(tampered.json!.message).to.match(/#\/reading-list\/v1\.0\/books\?admin=true&author=Frank Herbert&draft=true&tag=sf,classic&title=Dune$/);
      // A form body Envoy did not forward cannot be verified either.
      expectDenied(await client.check(checkRequestOf(await postForm(), CTX, { rawBody: undefined })), 400, "A400SG");
    });

    it("a JSON POST with Content-MD5 is allowed; a changed body is 400 Invalid Content-MD5", async () => {
      await signedScope();
      const captured = await capture.capture((base) =>
        signer.post(`${base}/reading-list/v1.0/books`, { data: { title: "Dune", author: "Herbert" }, signHeaders: { "x-tenant": "acme" } }),
      );
      expect(captured.headers["content-md5"]).to.equal(contentMd5(captured.body));
      expect((await client.check(checkRequestOf(captured, CTX))).allowed).to.equal(true);
      const forged = new Uint8Array(Buffer.from('{"title":"Dune","author":"Someone else"}'));
      expectDenied(await client.check(checkRequestOf(captured, CTX, { rawBody: forged })), 400, "A400MD", "Invalid Content-MD5");
      // Recomputing Content-MD5 does not help: it is signed.
      const recomputed = checkRequestOf(captured, CTX, { rawBody: forged, headerChanges: { "content-md5": contentMd5(forged) } });
      expectDenied(await client.check(recomputed), 400, "A400SG");
      // A body Envoy did not forward cannot match Content-MD5: fail closed.
      expectDenied(await client.check(checkRequestOf(captured, CTX, { rawBody: undefined })), 400, "A400MD");
    });

    it("tampering with the query, a signed header, the method or the signature is 400 Invalid Signature with the server's string to sign", async () => {
      await signedScope();
      const captured = await signedGet("/reading-list/v1.0/books", { query: { a: "1", b: "2" }, signHeaders: { "x-tenant": "acme" } });
      const variants: SimpleCheckRequest[] = [
        checkRequestOf(captured, CTX, { path: captured.url.replace("b=2", "b=3") }),
        checkRequestOf(captured, CTX, { path: captured.url + "&extra=1" }),
        checkRequestOf(captured, CTX, { method: "DELETE" }),
        checkRequestOf(captured, CTX, { headerChanges: { "x-tenant": "evil" } }),
        checkRequestOf(captured, CTX, { headerChanges: { "x-ca-signature": sign("forged", APP_SECRET) } }),
        checkRequestOf(captured, CTX, { headerChanges: { "x-ca-signature": "!!!not base64!!!" } }),
        checkRequestOf(captured, CTX, { headerChanges: { "x-ca-signature": undefined } }),
      ];
      for (const variant of variants) {
        const result = await client.check(variant);
        expectDenied(result, 400, "A400SG");
        expect(result.json!.message.startsWith("Invalid Signature, Server StringToSign:")).to.equal(true);
        expect(result.json!.message).to.not.include("\n");
      }
      // The untouched request still passes (none of the failures above used up its nonce).
      expect((await client.check(checkRequestOf(captured, CTX))).allowed).to.equal(true);
    });

    it("the client reports our error message as it would Alibaba's", async () => {
      await signedScope();
      const captured = await signedGet("/reading-list/v1.0/books", { query: { q: "café" } });
      const result = await client.check(checkRequestOf(captured, CTX, { path: captured.url.replace("caf", "kaf") }));
      expect(result.headers["x-ca-error-message"]).to.match(/^Invalid Signature, Server StringToSign:GET#application\/json####x-ca-key:203753911#.*#\/reading-list\/v1\.0\/books\?q=kaf%C3%A9$/);
    });

    it("a replayed nonce is 400 Nonce Used, and the nonce is stored in Redis for 15 minutes", async () => {
      await signedScope();
      const captured = await signedGet();
      expect((await client.check(checkRequestOf(captured, CTX))).allowed).to.equal(true);
      expectDenied(await client.check(checkRequestOf(captured, CTX)), 400, "A400NU", "Nonce Used");
      const ttl = await redis.ttl(`apigw:nonce:${APP_KEY}:${captured.headers["x-ca-nonce"]}`);
      expect(ttl).to.be.within(890, 900);
    });

    it("with forceNonceCheck a request without X-Ca-Nonce is refused; without it, it is allowed", async () => {
      // The official client always sends a nonce: build a nonce-less signed request by hand.
      const timestamp = String(Date.now());
      const headers: Record<string, string> = {
        accept: "application/json",
        "x-ca-key": APP_KEY,
        "x-ca-timestamp": timestamp,
        "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
      };
      const parsed = toSignableRequest({ method: "GET", target: "/books?a=1", headers });
      if (!parsed.ok) throw new Error(parsed.error);
      headers["x-ca-signature"] = sign(buildStringToSign(parsed.value), APP_SECRET);
      await signedScope({ ...APP_AUTH, forceNonceCheck: true });
      expectDenied(await client.check({ path: "/books?a=1", headers, contextExtensions: CTX }), 400, "A400NM", "Nonce Used");
      await signedScope({ ...APP_AUTH, forceNonceCheck: false });
      expect((await client.check({ path: "/books?a=1", headers, contextExtensions: CTX })).allowed).to.equal(true);
    });

    it("HmacSHA1 is accepted when the API allows it; a method the API does not allow, or an unknown one, is 400 Invalid Signature Method", async () => {
      const headers: Record<string, string> = {
        accept: "application/json",
        "x-ca-key": APP_KEY,
        "x-ca-timestamp": String(Date.now()),
        "x-ca-nonce": randomUUID(),
        "x-ca-signature-method": "HmacSHA1",
        "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-signature-method,x-ca-timestamp",
      };
      const parsed = toSignableRequest({ method: "GET", target: "/books", headers });
      if (!parsed.ok) throw new Error(parsed.error);
      headers["x-ca-signature"] = sign(buildStringToSign(parsed.value), APP_SECRET, "HmacSHA1");
      await signedScope({ ...APP_AUTH, signatureMethods: ["HmacSHA256"] });
      expectDenied(await client.check({ path: "/books", headers, contextExtensions: CTX }), 400, "A400SM", "Invalid Signature Method");
      expectDenied(await client.check({ path: "/books", headers: { ...headers, "x-ca-signature-method": "HmacMD5" }, contextExtensions: CTX }), 400, "A400SM");
      await signedScope({ ...APP_AUTH, signatureMethods: ["HmacSHA1"] });
      expect((await client.check({ path: "/books", headers, contextExtensions: CTX })).allowed).to.equal(true);
      // SHA-256 (the official client's default) is now the refused one.
      const captured = await signedGet();
      expectDenied(await client.check(checkRequestOf(captured, CTX)), 400, "A400SM");
    });

    it("a missing or non-numeric timestamp is 400 Invalid Timestamp, one more than 15 minutes away 400 Timestamp Expired", async () => {
      await signedScope();
      const captured = await signedGet();
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-ca-timestamp": undefined } })), 400, "A400IT", "Invalid Timestamp");
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-ca-timestamp": "yesterday" } })), 400, "A400IT");
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-ca-timestamp": "1.7e12" } })), 400, "A400IT");
      const old = String(Date.now() - 16 * 60_000);
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-ca-timestamp": old } })), 400, "A400TE", "Timestamp Expired");
      const ahead = String(Date.now() + 16 * 60_000);
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-ca-timestamp": ahead } })), 400, "A400TE");
    });

    it("the checks run in the documented order: AppKey, timestamp, method, Content-MD5, signature, nonce, application", async () => {
      await signedScope(APP_AUTH, { status: "DISABLED" });
      const captured = await capture.capture((base) => signer.post(`${base}/books`, { data: { a: 1 } }));
      const bad = {
        key: { "x-ca-key": "unknown-key" },
        timestamp: { "x-ca-timestamp": "soon" },
        method: { "x-ca-signature-method": "HmacMD5" },
        md5: { "content-md5": "AAAAAAAAAAAAAAAAAAAAAA==" },
        signature: { "x-ca-signature": "AAAA" },
      };
      const run = (changes: Record<string, string>) => client.check(checkRequestOf(captured, CTX, { headerChanges: changes }));
      expectDenied(await run({ ...bad.key, ...bad.timestamp, ...bad.method, ...bad.md5, ...bad.signature }), 401, "A401AK", "Invalid AppKey");
      expectDenied(await run({ ...bad.timestamp, ...bad.method, ...bad.md5, ...bad.signature }), 400, "A400IT");
      expectDenied(await run({ ...bad.method, ...bad.md5, ...bad.signature }), 400, "A400SM");
      expectDenied(await run({ ...bad.md5, ...bad.signature }), 400, "A400MD");
      expectDenied(await run({ ...bad.signature }), 400, "A400SG");
      // Valid signature: the nonce is claimed, then the disabled application is refused...
      expectDenied(await run({}), 403, "A403AD", "App Disabled");
      // ...so a replay is refused as a replay before the application is looked at.
      expectDenied(await run({}), 400, "A400NU");
    });

    it("an unknown AppKey is 401 Invalid AppKey; a request with no credential at all too", async () => {
      await signedScope();
      const result = await client.check({ path: "/books", headers: { "x-ca-key": "999", "x-ca-signature": "abc" }, contextExtensions: CTX });
      expectDenied(result, 401, "A401AK", "Invalid AppKey");
      expect(result.headers["www-authenticate"]).to.include("CaSignature");
      expectDenied(await client.check({ path: "/books", contextExtensions: CTX }), 401, "A401MC", "Invalid AppKey");
    });

    it("a disabled application is 403 App Disabled; an expired authorization 403 Unauthorized", async () => {
      await signedScope(APP_AUTH, { status: "DISABLED" });
      expectDenied(await client.check(checkRequestOf(await signedGet(), CTX)), 403, "A403AD", "App Disabled");
      await signedScope(APP_AUTH, { authorizationExpiresAt: new Date(Date.now() - 1000).toISOString() });
      expectDenied(await client.check(checkRequestOf(await signedGet(), CTX)), 403, "A403UA", "Unauthorized");
      await signedScope(APP_AUTH, { authorizationExpiresAt: new Date(Date.now() + 60_000).toISOString() });
      expect((await client.check(checkRequestOf(await signedGet(), CTX))).allowed).to.equal(true);
    });

    it("a reset AppSecret takes effect at once (the secret cache is keyed by the sealed value)", async () => {
      await signedScope();
      expect((await client.check(checkRequestOf(await signedGet(), CTX))).allowed).to.equal(true);
      await scope({ accepts: { appAuth: APP_AUTH } }, { apps: [{ appKey: APP_KEY, appSecret: "a-brand-new-secret-value-0123456", app: app() }] });
      expectDenied(await client.check(checkRequestOf(await signedGet(), CTX)), 400, "A400SG");
    });

    it("an AppSecret sealed with another master key is a 500, not an exception", async () => {
      await scope({ accepts: { appAuth: APP_AUTH } }, { apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, app: app(), sealedWith: "another-master-key-0123456789" }] });
      expectDenied(await client.check(checkRequestOf(await signedGet(), CTX)), 500, "S500SK");
    });

    it("a partially forwarded body cannot be verified: 413", async () => {
      await signedScope();
      const captured = await capture.capture((base) =>
        signer.post(`${base}/books`, { headers: { "content-type": "application/x-www-form-urlencoded" }, data: { title: "Dune" } }),
      );
      expectDenied(await client.check(checkRequestOf(captured, CTX, { headerChanges: { "x-envoy-auth-partial-body": "true" } })), 413, "I413RL");
    });

    it("signing is not accepted when the API's appAuth has signature off", async () => {
      await signedScope({ ...APP_AUTH, signature: false });
      expectDenied(await client.check(checkRequestOf(await signedGet(), CTX)), 401, "A401MC");
    });
  });

  describe("AppCode", () => {
    const codeScope = (mode: "DISABLE" | "HEADER" | "HEADER_QUERY", appOver: Partial<ProjectedApplication> = {}) =>
      scope({ accepts: { appAuth: { ...APP_AUTH, appCode: mode } } }, { apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, appCode: APP_CODE, app: app(appOver) }] });

    it("Authorization: APPCODE is allowed and the Authorization header removed", async () => {
      await codeScope("HEADER");
      const result = await client.check({ path: "/books", headers: { authorization: `APPCODE ${APP_CODE}` }, contextExtensions: CTX });
      expect(result.allowed).to.equal(true);
      expect(result.headers).to.include({ "x-apigw-credential": "APPCODE", "x-ca-app-id": "app-1" });
      expect(result.headersToRemove).to.include("authorization");
    });

    it("the AppCode query parameter works only with HEADER_QUERY, and is removed", async () => {
      await codeScope("HEADER_QUERY");
      const result = await client.check({ path: `/books?AppCode=${APP_CODE}&q=1`, contextExtensions: CTX });
      expect(result.allowed).to.equal(true);
      expect(result.queryParametersToRemove).to.deep.equal(["AppCode"]);
      await codeScope("HEADER");
      expectDenied(await client.check({ path: `/books?AppCode=${APP_CODE}`, contextExtensions: CTX }), 401, "A401MC");
    });

    it("DISABLE refuses AppCodes (only signatures count)", async () => {
      await codeScope("DISABLE");
      expectDenied(await client.check({ path: "/books", headers: { authorization: `APPCODE ${APP_CODE}` }, contextExtensions: CTX }), 401, "A401MC");
    });

    it("an unknown AppCode is 401; a disabled app 403; an expired authorization 403", async () => {
      await codeScope("HEADER");
      expectDenied(await client.check({ path: "/books", headers: { authorization: "APPCODE nope" }, contextExtensions: CTX }), 401, "A401AC", "Invalid AppCode");
      await codeScope("HEADER", { status: "DISABLED" });
      expectDenied(await client.check({ path: "/books", headers: { authorization: `APPCODE ${APP_CODE}` }, contextExtensions: CTX }), 403, "A403AD");
      await codeScope("HEADER", { authorizationExpiresAt: new Date(Date.now() - 1).toISOString() });
      expectDenied(await client.check({ path: "/books", headers: { authorization: `appcode ${APP_CODE}` }, contextExtensions: CTX }), 403, "A403UA");
    });
  });

  describe("several credential types on one API", () => {
    it("each accepted type works; the first one presented decides (API key, subscription, signature, AppCode)", async () => {
      await scope(
        { accepts: { apiKey: { in: "header", name: "API-Key" }, subscriptionKey: { header: "Subscription-Key" }, appAuth: APP_AUTH } },
        {
          apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
          subscriptions: [{ token: "tok", subscription: subscription() }],
          apps: [{ appKey: APP_KEY, appSecret: APP_SECRET, appCode: APP_CODE, app: app() }],
        },
      );
      expect((await client.check({ path: "/b", headers: { "api-key": API_KEY }, contextExtensions: CTX })).headers["x-apigw-credential"]).to.equal("API_KEY");
      expect((await client.check({ path: "/b", headers: { "subscription-key": "tok" }, contextExtensions: CTX })).headers["x-apigw-credential"]).to.equal("SUBSCRIPTION");
      expect((await client.check({ path: "/b", headers: { authorization: `APPCODE ${APP_CODE}` }, contextExtensions: CTX })).headers["x-apigw-credential"]).to.equal("APPCODE");
      expect((await client.check(checkRequestOf(await capture.capture((b) => signer.get(`${b}/b`)), CTX))).headers["x-apigw-credential"]).to.equal("SIGNATURE");
      // A wrong API key is not rescued by a valid AppCode.
      expectDenied(await client.check({ path: "/b", headers: { "api-key": "apip_bad", authorization: `APPCODE ${APP_CODE}` }, contextExtensions: CTX }), 401, "A401KY");
      const missing = await client.check({ path: "/b", contextExtensions: CTX });
      expectDenied(missing, 401, "A401MC", "Invalid AppKey");
      expect(missing.headers["www-authenticate"]).to.equal(
        'ApiKey realm="apigw", header="API-Key", SubscriptionKey realm="apigw", header="Subscription-Key", CaSignature realm="apigw", methods="HmacSHA256,HmacSHA1", APPCODE realm="apigw"',
      );
    });
  });
});

describe("ext_authz: configuration from the environment", () => {
  const MASTER_KEY = "0123456789abcdef0123";

  it("has the documented defaults", () => {
    expect(loadExtAuthzConfig({ MASTER_KEY })).to.deep.include({
      EXT_AUTHZ_PORT: 9191,
      EXT_AUTHZ_ADMIN_PORT: 9193,
      EXT_AUTHZ_HOST: "0.0.0.0",
      FAIL_OPEN: false,
      TRUST_FORWARDED_FOR: false,
      SECRET_CACHE_MS: 5000,
      LOG_LEVEL: "info",
      REDIS_COMMAND_TIMEOUT_MS: 500,
    });
  });

  it("reads flags strictly and Redis in one of three modes", () => {
    const config = loadExtAuthzConfig({ MASTER_KEY, FAIL_OPEN: "true", TRUST_FORWARDED_FOR: "1", REDIS_SENTINELS: "s1:26379,s2:26379", REDIS_SENTINEL_MASTER: "main" });
    expect(config.FAIL_OPEN).to.equal(true);
    expect(config.TRUST_FORWARDED_FOR).to.equal(true);
    expect(config.REDIS_SENTINEL_MASTER).to.equal("main");
    expect(loadExtAuthzConfig({ MASTER_KEY, FAIL_OPEN: "off" }).FAIL_OPEN).to.equal(false);
  });

  it("refuses invalid settings with the variable's name", () => {
    expect(() => loadExtAuthzConfig({})).to.throw(/MASTER_KEY/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY: "short" })).to.throw(/MASTER_KEY/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY, FAIL_OPEN: "maybe" })).to.throw(/FAIL_OPEN: must be true or false/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY, EXT_AUTHZ_PORT: "70000" })).to.throw(/EXT_AUTHZ_PORT/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY, SECRET_CACHE_MS: "-1" })).to.throw(/SECRET_CACHE_MS/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY, REDIS_SENTINELS: "s1:26379" })).to.throw(/REDIS_SENTINEL_MASTER/);
    expect(() => loadExtAuthzConfig({ MASTER_KEY, REDIS_URL: "redis://a", REDIS_CLUSTER_NODES: "b:6379" })).to.throw(/only one of/);
  });
});

describe("ext_authz: the AppSecret cache", () => {
  const box = new SecretBox(TEST_MASTER_KEY);

  it("keeps a decrypted secret for SECRET_CACHE_MS, bounded in size, and refuses what the master key did not seal", () => {
    let t = 1_000_000;
    const cache = new SecretCache(TEST_MASTER_KEY, 5000, 2, () => t);
    const sealed = box.encrypt("secret-1", "key-1");
    expect(cache.get("key-1", sealed)).to.equal("secret-1");
    expect(cache.size).to.equal(1);
    t += 4999;
    expect(cache.get("key-1", sealed)).to.equal("secret-1");
    // The AppKey is the associated data: the same sealed value under another AppKey does not open.
    expect(cache.get("key-2", sealed)).to.equal(undefined);
    expect(cache.get("key-1", new SecretBox("another-master-key-000").encrypt("x", "key-1"))).to.equal(undefined);
    expect(cache.get("key-1", "garbage")).to.equal(undefined);
    cache.get("key-2", box.encrypt("secret-2", "key-2"));
    cache.get("key-3", box.encrypt("secret-3", "key-3"));
    expect(cache.size).to.equal(2);
    t += 10_000;
    expect(cache.get("key-1", sealed)).to.equal("secret-1"); // decrypted again after expiry
    expect(new SecretCache(TEST_MASTER_KEY, 0).get("key-1", sealed)).to.equal("secret-1");
  });
});

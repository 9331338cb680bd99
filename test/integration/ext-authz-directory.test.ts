import { expect } from "chai";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import {
  DIRECTORY_KEY,
  DIRECTORY_SCOPE,
  MemoryCredentialStore,
  RedisCredentialStore,
  connectRedis,
  directoryField,
  redisReady,
  scopeKey,
  sha256Hex,
  type CredentialStore,
  type DirectoryEntry,
  type ProjectedApplication,
  type ScopeConfig,
  type ScopeRef,
} from "@apigw/shared";
import { createExtAuthzServer, type ExtAuthzServer } from "../../packages/ext-authz/src/index";
import { directoryFields, ownedFields, projectDirectory } from "../../packages/control-plane/src/projection/project";
import { CredentialProjector } from "../../packages/control-plane/src/projection/projector";
import { loadApplicationDirectory } from "../../packages/control-plane/src/store/reads/applicationDirectory";
import { currentRevision } from "../../packages/control-plane/src/store/changes";
import { del, post, put } from "../support/client";
import { TEST_MASTER_KEY } from "../support/environment";
import {
  AliyunApiGatewayClient,
  CaptureServer,
  checkRequestOf,
  ExtAuthzClient,
  scopeConfig,
  writeScope,
  type SimpleCheckRequest,
  type SimpleCheckResult,
} from "../support/extAuthzClient";
import { restApi } from "../support/fixtures";
import { harness } from "../support/hooks";
import { waitFor } from "../support/wait";

/*
 * The application directory: a signed request or AppCode of an application that exists but has
 * no authorization for the API and stage is 403 `Unauthorized` (403 `App Disabled` when the
 * application is disabled), not 401 `Invalid AppKey`/`Invalid AppCode` (which stays for AppKeys
 * and AppCodes of no application). ext_authz over real gRPC against the real Redis (database
 * index 8), first with hand-written scopes, then fed by the projection from the REST API.
 */

const REDIS_URL = process.env.EXT_AUTHZ_DIRECTORY_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/8";
const API = "reading-list-api-v1.0";
const CTX = { api_id: API, stage: "RELEASE", operation: "GET /books" };
const TEST_CTX = { ...CTX, stage: "TEST" };

const APP_AUTH: NonNullable<ScopeConfig["accepts"]["appAuth"]> = {
  signature: true,
  signatureMethods: ["HmacSHA256", "HmacSHA1"],
  appCode: "HEADER_QUERY",
  forceNonceCheck: false,
};


function expectDenied(result: SimpleCheckResult, status: number, code: string, message?: string) {
  expect(result.allowed, JSON.stringify(result.json)).to.equal(false);
  expect(result.status, JSON.stringify(result.json)).to.equal(status);
  expect(result.json?.code).to.equal(code);
  expect(result.headers["x-ca-error-code"]).to.equal(code);
  expect(result.headers["x-ca-request-id"]).to.be.a("string").and.not.equal("");
  expect(result.json?.message).to.equal(result.headers["x-ca-error-message"]);
  if (message !== undefined) expect(result.json?.message).to.equal(message);
  if (status === 401) expect(result.headers["www-authenticate"]).to.be.a("string").and.not.equal("");
  else expect(result.headers).to.not.have.property("www-authenticate");
}

const entry = (appId: string, enabled: boolean) => JSON.stringify({ appId, enabled } satisfies DirectoryEntry);

/**
 * A store that counts the reads of the application directory (and can make them fail), to
 * prove that only the deny path pays for it.
 */
function spyStore(inner: CredentialStore) {
  const spy = { directoryReads: 0, failDirectory: false };
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "readFields") {
        return async (scope: ScopeRef, fields: readonly string[]) => {
          if (scopeKey(scope) === DIRECTORY_KEY) {
            spy.directoryReads++;
            if (spy.failDirectory) throw new Error("directory read failed (test)");
          }
          return target.readFields(scope, fields);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store, spy };
}

describe("ext_authz: the application directory (known applications without an authorization)", function () {
  let redis: Redis;
  let redisStore: RedisCredentialStore;

  before(async () => {
    redis = connectRedis({ url: REDIS_URL }) as Redis;
    await redisReady(redis);
    redisStore = new RedisCredentialStore(redis);
  });

  after(async () => {
    await redis?.flushdb();
    await redisStore?.close();
  });

  beforeEach(async () => {
    await redis.flushdb();
  });

  describe("the store contract: updateFields and the directory's own key", () => {
    for (const kind of ["redis", "memory"] as const) {
      it(`${kind}: sets and removes some fields atomically, a field in both is set, an emptied directory is gone, listScopes never lists it`, async () => {
        const store: CredentialStore = kind === "redis" ? redisStore : new MemoryCredentialStore();
        await store.replaceScope(DIRECTORY_SCOPE, { "app:k1": entry("a1", true), "app:k2": entry("a1", true), "owner:a1": '["app:k1","app:k2"]' });
        await store.replaceScope({ apiId: API, stage: "RELEASE" }, { config: "{}" });
        await store.updateFields(DIRECTORY_SCOPE, { "app:k3": entry("a1", false), "app:k2": entry("a1", false) }, ["app:k1", "app:k2", "app:nope"]);
        expect(await store.readFields(DIRECTORY_SCOPE, ["app:k1", "app:k2", "app:k3", "owner:a1"])).to.deep.equal([
          null,
          entry("a1", false),
          entry("a1", false),
          '["app:k1","app:k2"]',
        ]);
        expect(await store.listScopes()).to.deep.equal([{ apiId: API, stage: "RELEASE" }]);
        await store.updateFields(DIRECTORY_SCOPE, {}, []); // nothing to do
        await store.updateFields(DIRECTORY_SCOPE, {}, ["app:k2", "app:k3", "owner:a1"]);
        expect(await store.readFields(DIRECTORY_SCOPE, ["app:k2", "app:k3", "owner:a1"])).to.deep.equal([null, null, null]);
        if (kind === "redis") {
          expect(await redis.exists(DIRECTORY_KEY)).to.equal(0);
          expect(DIRECTORY_KEY).to.equal("apigw:directory:{applications}");
          // The directory has a key of its own, outside the scopes' key space.
          await store.updateFields(DIRECTORY_SCOPE, { "app:k9": entry("a9", true) }, []);
          expect(await redis.keys("apigw:*")).to.have.members([DIRECTORY_KEY, scopeKey({ apiId: API, stage: "RELEASE" })]);
        }
        await store.deleteScope({ apiId: API, stage: "RELEASE" });
        if (kind === "memory") await store.close();
      });
    }
  });

  describe("ext_authz decisions (scopes and directory written by hand)", () => {
    let server: ExtAuthzServer;
    let client: ExtAuthzClient;
    let spy: ReturnType<typeof spyStore>["spy"];
    const capture = new CaptureServer();

    const AUTHORIZED = { appKey: "authorized-key-01", appSecret: "authorized-secret-0123456789abcdef", appCode: "authorizedcode0123456789abcdef00" };
    const KNOWN = { appKey: "known-key-000001", appSecret: "known-secret-0123456789abcdef0123", appCode: "knowncode0123456789abcdef0000000" };
    const DISABLED = { appKey: "disabled-key-0001", appSecret: "disabled-secret-0123456789abcdef01", appCode: "disabledcode0123456789abcdef00000" };
    const UNKNOWN = { appKey: "unknown-key-00001", appSecret: "unknown-secret-0123456789abcdef012", appCode: "unknowncode0123456789abcdef000000" };

    before(async () => {
      const spied = spyStore(redisStore);
      spy = spied.spy;
      server = await createExtAuthzServer({ store: spied.store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
      client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
      await capture.start();
    });

    after(async () => {
      client?.close();
      await server?.close(1000);
      await capture.stop();
    });

    beforeEach(async () => {
      spy.directoryReads = 0;
      spy.failDirectory = false;
      const authorizedApp: ProjectedApplication = { appId: "app-authorized", name: "authorized", status: "ENABLED", extInfo: null, authorizationExpiresAt: null };
      await writeScope(redisStore, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", { accepts: { appAuth: APP_AUTH } }), {
        apps: [{ ...AUTHORIZED, app: authorizedApp }],
      });
      // The projection's own mapping: every application, authorized or not.
      await redisStore.replaceScope(
        DIRECTORY_SCOPE,
        projectDirectory([
          { id: "app-authorized", enabled: true, appCodeHash: sha256Hex(AUTHORIZED.appCode), appKeys: [AUTHORIZED.appKey] },
          { id: "app-known", enabled: true, appCodeHash: sha256Hex(KNOWN.appCode), appKeys: [KNOWN.appKey] },
          { id: "app-disabled", enabled: false, appCodeHash: sha256Hex(DISABLED.appCode), appKeys: [DISABLED.appKey] },
        ]),
      );
    });

    const signed = async (credentials: { appKey: string; appSecret: string }, ctx: Record<string, string> = CTX, change: Parameters<typeof checkRequestOf>[2] = {}) => {
      const signer = new AliyunApiGatewayClient(credentials.appKey, credentials.appSecret);
      const captured = await capture.capture((base) => signer.get(`${base}/reading-list/v1.0/books`, { query: { q: "dune" } }));
      return client.check(checkRequestOf(captured, ctx, change));
    };
    const withCode = (code: string, where: "header" | "query" = "header"): SimpleCheckRequest =>
      where === "header"
        ? { path: "/reading-list/v1.0/books", headers: { authorization: `APPCODE ${code}` }, contextExtensions: CTX }
        : { path: `/reading-list/v1.0/books?AppCode=${code}`, contextExtensions: CTX };

    it("an authorized application is allowed without reading the directory (the success path costs what it did)", async () => {
      const bySignature = await signed(AUTHORIZED);
      expect(bySignature.allowed, JSON.stringify(bySignature.json)).to.equal(true);
      expect(bySignature.headers["x-ca-app-id"]).to.equal("app-authorized");
      expect((await client.check(withCode(AUTHORIZED.appCode))).allowed).to.equal(true);
      expect((await client.check(withCode(AUTHORIZED.appCode, "query"))).allowed).to.equal(true);
      expect(spy.directoryReads).to.equal(0);
    });

    it("an enabled application with no authorization here is 403 Unauthorized (A403UN), signed or by AppCode, with one directory read each", async () => {
      const bySignature = await signed(KNOWN);
      expectDenied(bySignature, 403, "A403UN", "Unauthorized");
      expect(bySignature.grpcCode).to.equal(7); // PERMISSION_DENIED
      expect(bySignature.body).to.equal('{"code":"A403UN","message":"Unauthorized"}');
      expect(spy.directoryReads).to.equal(1);
      expectDenied(await client.check(withCode(KNOWN.appCode)), 403, "A403UN", "Unauthorized");
      expectDenied(await client.check(withCode(KNOWN.appCode, "query")), 403, "A403UN", "Unauthorized");
      expect(spy.directoryReads).to.equal(3);
    });

    it("a disabled application with no authorization here is 403 App Disabled", async () => {
      expectDenied(await signed(DISABLED), 403, "A403AD", "App Disabled");
      expectDenied(await client.check(withCode(DISABLED.appCode)), 403, "A403AD", "App Disabled");
      expectDenied(await client.check(withCode(DISABLED.appCode, "query")), 403, "A403AD", "App Disabled");
    });

    it("an AppKey or AppCode of no application is still 401 Invalid AppKey / Invalid AppCode with WWW-Authenticate", async () => {
      const bySignature = await signed(UNKNOWN);
      expectDenied(bySignature, 401, "A401AK", "Invalid AppKey");
      expect(bySignature.headers["www-authenticate"]).to.include("CaSignature");
      expectDenied(await client.check(withCode(UNKNOWN.appCode)), 401, "A401AC", "Invalid AppCode");
      expectDenied(await client.check(withCode(UNKNOWN.appCode, "query")), 401, "A401AC", "Invalid AppCode");
      expect(spy.directoryReads).to.equal(3);
    });

    it("the directory answer does not depend on the signature (AppKeys are identifiers): tampered or unsigned, still 403", async () => {
      expectDenied(await signed(KNOWN, CTX, { headerChanges: { "x-ca-signature": "AAAA" } }), 403, "A403UN");
      expectDenied(await signed(KNOWN, CTX, { headerChanges: { "x-ca-timestamp": "soon" } }), 403, "A403UN");
      expectDenied(await client.check({ path: "/books", headers: { "x-ca-key": KNOWN.appKey }, contextExtensions: CTX }), 403, "A403UN");
      expectDenied(await client.check({ path: "/books", headers: { "x-ca-key": DISABLED.appKey, "x-ca-signature": "x" }, contextExtensions: CTX }), 403, "A403AD");
      // ...and it allows nothing: the same requests for the authorized application are refused by the signature check.
      expectDenied(await signed(AUTHORIZED, CTX, { headerChanges: { "x-ca-signature": "AAAA" } }), 400, "A400SG");
    });

    it("an application authorized for another stage only is 403 Unauthorized in this one", async () => {
      const testApp: ProjectedApplication = { appId: "app-known", name: "known", status: "ENABLED", extInfo: null, authorizationExpiresAt: null };
      await writeScope(redisStore, TEST_MASTER_KEY, scopeConfig(API, "TEST", { accepts: { appAuth: APP_AUTH } }), { apps: [{ ...KNOWN, app: testApp }] });
      const inTest = await signed(KNOWN, TEST_CTX);
      expect(inTest.allowed, JSON.stringify(inTest.json)).to.equal(true);
      expectDenied(await signed(KNOWN, CTX), 403, "A403UN", "Unauthorized");
      expectDenied(await client.check(withCode(KNOWN.appCode)), 403, "A403UN");
    });

    it("when the directory cannot be read the answer stays 401 (refused, never allowed, no 503)", async () => {
      spy.failDirectory = true;
      expectDenied(await signed(KNOWN), 401, "A401AK", "Invalid AppKey");
      expectDenied(await client.check(withCode(KNOWN.appCode)), 401, "A401AC");
      expect(spy.directoryReads).to.equal(2);
    });

    it("without a directory (e.g. not projected yet) every unknown credential is 401, as before", async () => {
      await redisStore.deleteScope(DIRECTORY_SCOPE);
      expectDenied(await signed(KNOWN), 401, "A401AK");
      expectDenied(await client.check(withCode(DISABLED.appCode)), 401, "A401AC");
    });

    it("a corrupt directory entry is a 500 for that request, not a crash", async () => {
      await redisStore.updateFields(DIRECTORY_SCOPE, { [directoryField.appKey(KNOWN.appKey)]: "not json", [directoryField.appCode(sha256Hex(KNOWN.appCode))]: "42" }, []);
      expectDenied(await signed(KNOWN), 500, "S500IE");
      expectDenied(await client.check(withCode(KNOWN.appCode)), 500, "S500IE");
      expectDenied(await signed(DISABLED), 403, "A403AD");
    });
  });

  describe("projected from the REST API", () => {
    let projector: CredentialProjector;
    let registry: Registry;
    let server: ExtAuthzServer;
    let client: ExtAuthzClient;
    const capture = new CaptureServer();

    before(async () => {
      server = await createExtAuthzServer({ store: redisStore, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
      client = new ExtAuthzClient(`127.0.0.1:${server.port}`);
      await capture.start();
    });

    after(async () => {
      client?.close();
      await server?.close(1000);
      await capture.stop();
    });

    beforeEach(async () => {
      registry = new Registry();
      projector = new CredentialProjector({ knex: harness().database.knex, database: harness().database, store: redisStore, logger: harness().logger, metrics: registry });
      await projector.start();
    });

    afterEach(async () => {
      await projector?.stop();
    });

    async function created(reply: Promise<{ status: number; text: string; body: any }>, status = 201): Promise<any> {
      const r = await reply;
      expect(r.status, r.text).to.equal(status);
      return r.body;
    }

    /** Waits until every committed change is in Redis. */
    async function caughtUp(): Promise<void> {
      const revision = await currentRevision(harness().database.knex);
      await waitFor(`the projection at revision ${revision}`, () => {
        const status = projector.status();
        return status.revision >= revision && status.pendingApis === 0 && status.pendingApps === 0 ? true : undefined;
      });
    }

    const directory = () => redis.hgetall(DIRECTORY_KEY);

    async function credentialApi() {
      await created(
        post(
          "/rest-apis",
          restApi(API, {
            upstream: { main: { url: "http://books:8080" }, sandbox: { url: "http://books-sandbox:8080" } },
            policies: [{ name: "app-auth", version: "v1", params: { signature: true, appCode: "HEADER_QUERY" } }],
          }),
        ),
      );
    }

    async function application(name: string, authorize: ("RELEASE" | "TEST")[] = []) {
      const app = (await created(post("/applications", { name }))).application;
      for (const stage of authorize) await created(post("/authorizations", { applicationId: app.id, apiId: API, stage }));
      return { id: app.id as string, appCode: app.appCode as string, appKey: app.keyPairs[0].appKey as string, appSecret: app.keyPairs[0].appSecret as string };
    }

    const signed = async (credentials: { appKey: string; appSecret: string }, ctx: Record<string, string> = CTX) => {
      const signer = new AliyunApiGatewayClient(credentials.appKey, credentials.appSecret);
      const captured = await capture.capture((base) => signer.get(`${base}/reading-list/v1.0/books`));
      return client.check(checkRequestOf(captured, ctx));
    };
    const byCode = (code: string, ctx: Record<string, string> = CTX) =>
      client.check({ path: "/reading-list/v1.0/books", headers: { authorization: `APPCODE ${code}` }, contextExtensions: ctx });

    it("projects every application's AppKeys and AppCode hash → {appId, enabled}, with owner records and no secret", async () => {
      await credentialApi();
      const authorized = await application("authorized-app", ["RELEASE"]);
      const lonely = await application("lonely-app");
      const second = (await created(post(`/applications/${lonely.id}/key-pairs`, {}))).keyPair;
      await created(post(`/applications/${lonely.id}/disable`), 200);
      await caughtUp();

      const stored = await directory();
      const lonelyFields = [`app:${lonely.appKey}`, `app:${second.appKey}`, `code:${sha256Hex(lonely.appCode)}`].sort();
      const authorizedFields = [`app:${authorized.appKey}`, `code:${sha256Hex(authorized.appCode)}`].sort();
      expect(stored).to.deep.equal({
        ...Object.fromEntries(authorizedFields.map((f) => [f, entry(authorized.id, true)])),
        [`owner:${authorized.id}`]: JSON.stringify(authorizedFields),
        ...Object.fromEntries(lonelyFields.map((f) => [f, entry(lonely.id, false)])),
        [`owner:${lonely.id}`]: JSON.stringify(lonelyFields),
      });
      // Exactly what a full rebuild writes from a fresh snapshot.
      expect(stored).to.deep.equal(projectDirectory(await loadApplicationDirectory(harness().database.knex)));
      // No secret, no raw AppCode, no name: identifiers and hashes only.
      const text = JSON.stringify(stored);
      for (const secret of [authorized.appSecret, lonely.appSecret, second.appSecret, authorized.appCode, lonely.appCode, "lonely-app", "v1."]) {
        expect(text).to.not.include(secret);
      }
      // Not a scope: listScopes (and with it the projection's stale-scope removal) never sees it.
      expect((await redisStore.listScopes()).map(scopeKey).sort()).to.deep.equal([scopeKey({ apiId: API, stage: "RELEASE" }), scopeKey({ apiId: API, stage: "TEST" })].sort());
      expect(projector.status().scopes).to.equal(2);
    });

    it("answers 403 Unauthorized for an application that exists but has no authorization, also one authorized for the other stage only", async () => {
      await credentialApi();
      const authorized = await application("authorized-app", ["RELEASE"]);
      const unauthorized = await application("unauthorized-app");
      const testOnly = await application("test-only-app", ["TEST"]);
      await caughtUp();

      expect((await signed(authorized)).allowed).to.equal(true);
      expect((await byCode(authorized.appCode)).allowed).to.equal(true);
      expectDenied(await signed(unauthorized), 403, "A403UN", "Unauthorized");
      expectDenied(await byCode(unauthorized.appCode), 403, "A403UN", "Unauthorized");
      expectDenied(await signed(testOnly), 403, "A403UN", "Unauthorized");
      expectDenied(await byCode(testOnly.appCode), 403, "A403UN", "Unauthorized");
      const inTest = await signed(testOnly, TEST_CTX);
      expect(inTest.allowed, JSON.stringify(inTest.json)).to.equal(true);
      expect(inTest.headers["x-ca-app-id"]).to.equal(testOnly.id);
      expectDenied(await signed(authorized, TEST_CTX), 403, "A403UN");
      expectDenied(await signed({ appKey: "NoSuchAppKey000000000000", appSecret: "x".repeat(32) }), 401, "A401AK", "Invalid AppKey");
      expectDenied(await byCode("nosuchappcode0000000000000000000"), 401, "A401AC", "Invalid AppCode");
    });

    it("a disabled application without an authorization is 403 App Disabled soon after; enabled again, 403 Unauthorized", async () => {
      await credentialApi();
      const app = await application("unauthorized-app");
      await caughtUp();
      expectDenied(await byCode(app.appCode), 403, "A403UN");

      expect((await post(`/applications/${app.id}/disable`)).status).to.equal(200);
      await waitFor("App Disabled", async () => ((await byCode(app.appCode)).json?.code === "A403AD" ? true : undefined), 5000, 1);
      expectDenied(await signed(app), 403, "A403AD", "App Disabled");

      expect((await post(`/applications/${app.id}/enable`)).status).to.equal(200);
      await waitFor("Unauthorized again", async () => ((await signed(app)).json?.code === "A403UN" ? true : undefined), 5000, 2);
    });

    it("an application deleted through the REST API is 401 Invalid AppKey / Invalid AppCode soon after, and its fields are gone", async () => {
      await credentialApi();
      const doomed = await application("doomed-app");
      const keep = await application("kept-app");
      await caughtUp();
      expectDenied(await byCode(doomed.appCode), 403, "A403UN");
      expectDenied(await signed(doomed), 403, "A403UN");

      const reply = await del(`/applications/${doomed.id}`);
      expect(reply.status, reply.text).to.equal(200);
      await waitFor("Invalid AppCode", async () => ((await byCode(doomed.appCode)).json?.code === "A401AC" ? true : undefined), 5000, 1);
      expectDenied(await signed(doomed), 401, "A401AK", "Invalid AppKey");
      expectDenied(await byCode(doomed.appCode), 401, "A401AC", "Invalid AppCode");
      await caughtUp();
      const stored = await directory();
      expect(Object.keys(stored).filter((f) => f.includes(doomed.id) || f.includes(doomed.appKey) || f.includes(sha256Hex(doomed.appCode)))).to.deep.equal([]);
      expect(Object.values(stored).filter((v) => v.includes(doomed.id))).to.deep.equal([]);
      expectDenied(await byCode(keep.appCode), 403, "A403UN");
    });

    it("follows key pairs added and deleted and AppCode resets (the old values become 401)", async () => {
      await credentialApi();
      const app = await application("rotating-app");
      await caughtUp();
      const extra = (await created(post(`/applications/${app.id}/key-pairs`, {}))).keyPair;
      await caughtUp();
      expectDenied(await signed({ appKey: extra.appKey, appSecret: extra.appSecret }), 403, "A403UN");

      await created(del(`/applications/${app.id}/key-pairs/${extra.appKey}`), 200);
      const reset = await created(post(`/applications/${app.id}/app-code/reset`, {}), 200);
      await caughtUp();
      expectDenied(await signed({ appKey: extra.appKey, appSecret: extra.appSecret }), 401, "A401AK");
      expectDenied(await signed(app), 403, "A403UN");
      expectDenied(await byCode(app.appCode), 401, "A401AC");
      expectDenied(await byCode(reset.appCode), 403, "A403UN");
      const fields = [`app:${app.appKey}`, `code:${sha256Hex(reset.appCode)}`].sort();
      expect(await redis.hget(DIRECTORY_KEY, `owner:${app.id}`)).to.equal(JSON.stringify(fields));
      expect(Object.keys(await directory()).sort()).to.deep.equal([...fields, `owner:${app.id}`].sort());

      // Renamed and authorized: the scope decides from now on (allowed), the directory entry stays.
      await created(put(`/applications/${app.id}`, { name: "renamed-app" }), 200);
      await created(post("/authorizations", { applicationId: app.id, apiId: API, stage: "RELEASE" }));
      await caughtUp();
      expect((await byCode(reset.appCode)).allowed).to.equal(true);
      expect(await redis.hget(DIRECTORY_KEY, `code:${sha256Hex(reset.appCode)}`)).to.equal(entry(app.id, true));
    });

    it("a full rebuild keeps the directory readable throughout, and drops what Postgres does not know", async () => {
      await credentialApi();
      const apps = [];
      for (let i = 0; i < 12; i++) apps.push(await application(`app-${i}`));
      await caughtUp();
      await redisStore.updateFields(DIRECTORY_SCOPE, { "app:ghost-key": entry("ghost", true), "owner:ghost": '["app:ghost-key"]' }, []);
      const probe = directoryField.appCode(sha256Hex(apps[5]!.appCode));
      let reading = true;
      let reads = 0;
      let misses = 0;
      const readers = Array.from({ length: 4 }, async () => {
        while (reading) {
          const value = await redis.hget(DIRECTORY_KEY, probe);
          reads++;
          if (value === null) misses++;
        }
      });
      let replaced = 0;
      for (let i = 0; i < 10; i++) {
        await projector.rebuildAll();
        replaced++;
      }
      reading = false;
      await Promise.all(readers);
      expect(reads).to.be.greaterThan(20);
      expect(misses).to.equal(0);
      expect(replaced).to.equal(10);
      const stored = await directory();
      expect(stored).to.not.have.any.keys("app:ghost-key", "owner:ghost");
      expect(stored).to.deep.equal(projectDirectory(await loadApplicationDirectory(harness().database.knex)));
      expect(Object.keys(stored)).to.have.length(12 * 3);
      const metric = await registry.getSingleMetric("apigw_projection_directory_writes_total")!.get();
      expect(metric.values.find((v) => v.labels.op === "replace")?.value).to.be.at.least(11); // the start's rebuild and ten more
      // A signed request during all this was decided from the directory as before.
      expectDenied(await signed(apps[3]!), 403, "A403UN");
    });

    it("the store losing the directory (flushed) gets it back with the full rebuild", async () => {
      await projector.stop();
      projector = new CredentialProjector({ knex: harness().database.knex, database: harness().database, store: redisStore, logger: harness().logger, healthCheckMs: 20 });
      await credentialApi();
      const app = await application("returning-app");
      await projector.start();
      expect(await redis.hget(DIRECTORY_KEY, `app:${app.appKey}`)).to.equal(entry(app.id, true));
      await redis.flushdb();
      await waitFor("the directory to be back", async () => ((await redis.hget(DIRECTORY_KEY, `app:${app.appKey}`)) !== null ? true : undefined));
      expectDenied(await signed(app), 403, "A403UN");
    });
  });

  describe("the directory's pure mapping", () => {
    it("directoryFields: the app:/code: entries and an owner record listing them, sorted; nothing else", () => {
      const fields = directoryFields({ id: "a-1", enabled: false, appCodeHash: "c0de", appKeys: ["zk", "ak"] });
      expect(fields).to.deep.equal({
        "app:ak": '{"appId":"a-1","enabled":false}',
        "app:zk": '{"appId":"a-1","enabled":false}',
        "code:c0de": '{"appId":"a-1","enabled":false}',
        "owner:a-1": '["app:ak","app:zk","code:c0de"]',
      });
      expect(ownedFields(fields["owner:a-1"])).to.deep.equal(["app:ak", "app:zk", "code:c0de"]);
      expect(ownedFields("garbage")).to.deep.equal([]);
      expect(ownedFields('{"not":"a list"}')).to.deep.equal([]);
      expect(ownedFields(null)).to.deep.equal([]);
    });

    it("projectDirectory: deterministic and sorted whatever the input order; empty for no application", () => {
      const apps = [
        { id: "b", enabled: true, appCodeHash: "h2", appKeys: ["k3"] },
        { id: "a", enabled: true, appCodeHash: "h1", appKeys: ["k2", "k1"] },
      ];
      const one = projectDirectory(apps);
      const two = projectDirectory([...apps].reverse().map((a) => ({ ...a, appKeys: [...a.appKeys].reverse() })));
      expect(JSON.stringify(one)).to.equal(JSON.stringify(two));
      expect(Object.keys(one)).to.deep.equal(["app:k1", "app:k2", "app:k3", "code:h1", "code:h2", "owner:a", "owner:b"]);
      expect(projectDirectory([])).to.deep.equal({});
    });
  });
});

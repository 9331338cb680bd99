import { expect } from "chai";
import { createHash } from "node:crypto";
import { call, countRows, del, fields, get, post, put, type Reply } from "../support/client";
import { otherApi, restApi } from "../support/fixtures";
import { harness } from "../support/hooks";

const API = "reading-list-api-v1.0";
const KEYS = `/rest-apis/${API}/api-keys`;
const KEY_FORMAT = /^apip_[0-9a-f]{64}$/;
const QUOTA = 10;

const sha256 = (value: string) => createHash("sha256").update(value, "utf8").digest("hex");
const db = () => harness().database.knex;

async function createApi(): Promise<void> {
  const reply = await post("/rest-apis", restApi());
  expect(reply.status, reply.text).to.equal(201);
}

async function createKey(body?: unknown, as: "admin" | "consumer" | "consumer2" = "consumer"): Promise<Reply> {
  const reply = await post(KEYS, body, { as });
  expect(reply.status, reply.text).to.equal(201);
  return reply;
}

async function keyRow(name: string, api = API): Promise<Record<string, any>> {
  const row = await db()("api_keys as k").join("rest_apis as a", "a.id", "k.api_id").where({ "a.handle": api, "k.name": name }).orderBy("k.created_at", "desc").first("k.*");
  expect(row, `api_keys row ${name}`).to.exist;
  return row;
}

async function lastChange(): Promise<{ revision: number; changes: unknown[] }> {
  const row = await db()("change_log").orderBy("revision", "desc").first();
  return { revision: Number(row.revision), changes: typeof row.changes === "string" ? JSON.parse(row.changes) : row.changes };
}

/** Snapshot of everything a failed request must leave untouched. */
async function snapshot() {
  return {
    keys: await db()("api_keys").orderBy("id").select("*"),
    changes: await countRows("change_log"),
  };
}

describe("api-keys", () => {
  beforeEach(createApi);

  describe("POST /rest-apis/{id}/api-keys", () => {
    it("generates a key for an empty body, names it after the API and answers 201 with the full key once", async () => {
      const reply = await post(KEYS, {}, { as: "consumer" });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body).to.include({ status: "success", message: "API key generated successfully", remainingApiKeyQuota: QUOTA - 1 });
      const key = reply.body.apiKey;
      expect(key.apiKey).to.match(KEY_FORMAT);
      expect(key.name).to.match(/^reading-list-api-v1-0-key-[a-z0-9]{8}$/);
      expect(key).to.include({ displayName: key.name, apiId: API, status: "active", createdBy: "carol", expiresAt: null, source: "local" });
      expect(Number.isNaN(Date.parse(key.createdAt))).to.equal(false);
      expect(Object.keys(key)).to.deep.equal(["name", "displayName", "apiKey", "apiId", "status", "createdAt", "createdBy", "expiresAt", "source"]);
    });

    it("accepts a request without any body", async () => {
      const reply = await call("POST", KEYS, { as: "admin" });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.apiKey.apiKey).to.match(KEY_FORMAT);
      expect(reply.body.apiKey.createdBy).to.equal("admin");
    });

    it("generates a different key each time", async () => {
      const a = await createKey();
      const b = await createKey();
      expect(a.body.apiKey.apiKey).to.not.equal(b.body.apiKey.apiKey);
      expect(a.body.apiKey.name).to.not.equal(b.body.apiKey.name);
    });

    it("keeps a chosen name and displayName", async () => {
      const reply = await createKey({ name: "my-production_key1", displayName: "My Production Key" });
      expect(reply.body.apiKey).to.include({ name: "my-production_key1", displayName: "My Production Key", source: "local" });
      expect(reply.body.apiKey.apiKey).to.match(KEY_FORMAT);
    });

    it("keeps generated names within the name rules for long handles", async () => {
      const handle = "A.Very.Long.Handle_" + "x".repeat(80);
      expect((await post("/rest-apis", otherApi(handle))).status).to.equal(201);
      const reply = await post(`/rest-apis/${handle}/api-keys`, {}, { as: "consumer" });
      expect(reply.status, reply.text).to.equal(201);
      expect(reply.body.apiKey.name).to.match(/^[a-z0-9]+([_-][a-z0-9]+)*$/);
      expect(reply.body.apiKey.name.length).to.be.at.most(63);
      expect(reply.body.apiKey.apiId).to.equal(handle);
    });

    it("stores only the SHA-256 hash and the last 5 characters of a generated key", async () => {
      const reply = await createKey({ name: "hashed" });
      const raw: string = reply.body.apiKey.apiKey;
      const row = await keyRow("hashed");
      expect(row.key_hash).to.equal(sha256(raw));
      expect(row.key_suffix).to.equal(raw.slice(-5));
      for (const [column, value] of Object.entries(row)) {
        expect(String(value), `column ${column}`).to.not.include(raw);
        expect(String(value), `column ${column}`).to.not.include(raw.slice(5, 40));
      }
    });

    it("registers an external key without echoing it", async () => {
      const external = "ext-Key_0123456789!#$%&";
      const reply = await createKey({ name: "partner", apiKey: external });
      expect(reply.body.apiKey).to.include({ name: "partner", source: "external", status: "active" });
      expect(reply.body.apiKey).to.not.have.property("apiKey");
      expect(reply.text).to.not.include(external);
      const row = await keyRow("partner");
      expect(row.key_hash).to.equal(sha256(external));
      expect(row.source).to.equal("external");
      for (const value of Object.values(row)) expect(String(value)).to.not.include(external);
    });

    it("sets the expiry from expiresAt or expiresIn", async () => {
      const at = new Date(Date.now() + 3 * 86_400_000);
      at.setUTCMilliseconds(0);
      const absolute = await createKey({ name: "absolute", expiresAt: at.toISOString().replace(".000Z", "+00:00") });
      expect(absolute.body.apiKey.expiresAt).to.equal(at.toISOString());

      const before = Date.now();
      const relative = await createKey({ name: "relative", expiresIn: { unit: "days", duration: 2 } });
      const after = Date.now();
      const expires = Date.parse(relative.body.apiKey.expiresAt);
      expect(expires).to.be.within(before + 2 * 86_400_000, after + 2 * 86_400_000);
      expect((await keyRow("relative")).expires_at.getTime()).to.equal(expires);
    });

    it("records a change for the key's API", async () => {
      const reply = await createKey({ name: "tracked" });
      expect(reply.status).to.equal(201);
      expect((await lastChange()).changes).to.deep.equal([{ entity: "api_key", id: `${API}/tracked`, op: "create", apiIds: [API] }]);
    });

    it("answers 400 naming every invalid field and stores nothing", async () => {
      const before = await snapshot();
      const reply = await post(
        KEYS,
        {
          name: "Bad Name",
          displayName: "x".repeat(101),
          apiKey: "has space in it 12345",
          expiresIn: { unit: "years", duration: 1 },
        },
        { as: "consumer" },
      );
      expect(reply.status).to.equal(400);
      expect(reply.body.status).to.equal("error");
      expect(reply.body.message).to.equal("Configuration validation failed");
      expect(fields(reply)).to.include.members(["name", "displayName", "apiKey", "expiresIn.unit"]);
      expect(await snapshot()).to.deep.equal(before);
    });

    for (const [label, name] of [
      ["too short", "ab"],
      ["too long", "a".repeat(64)],
      ["upper case", "MyKey"],
      ["a space", "my key"],
      ["a double separator", "my--key"],
      ["a leading separator", "-key"],
      ["a trailing separator", "key_"],
    ] as const) {
      it(`rejects the name '${name.slice(0, 8)}' (${label})`, async () => {
        const reply = await post(KEYS, { name }, { as: "consumer" });
        expect(reply.status).to.equal(400);
        expect(new Set(fields(reply))).to.deep.equal(new Set(["name"]));
        expect(await countRows("api_keys")).to.equal(0);
      });
    }

    it("rejects wrong types", async () => {
      const reply = await post(KEYS, { name: 123, displayName: true, expiresIn: { unit: "days", duration: "2" } }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["name", "displayName", "expiresIn.duration"]);
      expect(await countRows("api_keys")).to.equal(0);
    });

    it("rejects a body that is not an object", async () => {
      const reply = await post(KEYS, ["name"], { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(await countRows("api_keys")).to.equal(0);
    });

    it("rejects unknown fields", async () => {
      const before = await snapshot();
      const reply = await post(KEYS, { name: "good-name", expires: "tomorrow" }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(reply.body.errors).to.deep.include({ field: "expires", message: "unknown field" });
      expect(await snapshot()).to.deep.equal(before);
    });

    it("rejects an expiry in the past", async () => {
      const before = await snapshot();
      const reply = await post(KEYS, { name: "late", expiresAt: "2020-01-01T00:00:00Z" }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(reply.body.errors).to.deep.equal([{ field: "expiresAt", message: "must be in the future" }]);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("rejects an expiresAt that is not an RFC 3339 date-time", async () => {
      const reply = await post(KEYS, { expiresAt: "next tuesday" }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["expiresAt"]);
    });

    it("rejects expiresAt together with expiresIn", async () => {
      const before = await snapshot();
      const future = new Date(Date.now() + 86_400_000).toISOString();
      const reply = await post(KEYS, { expiresAt: future, expiresIn: { unit: "hours", duration: 1 } }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["expiresIn"]);
      expect(reply.body.errors[0].message).to.match(/not both/);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("rejects external keys that are too short, too long or contain whitespace", async () => {
      for (const apiKey of ["short-key", "x".repeat(513), "contains\ttab-0123456789", "ünicode-0123456789"]) {
        const reply = await post(KEYS, { apiKey }, { as: "consumer" });
        expect(reply.status, apiKey).to.equal(400);
        expect(fields(reply)).to.include("apiKey");
      }
      expect(await countRows("api_keys")).to.equal(0);
    });

    it("answers 409 for a name an active key of the API already has, and replaces nothing", async () => {
      const first = await createKey({ name: "dup-key" });
      const before = await snapshot();
      const reply = await post(KEYS, { name: "dup-key" }, { as: "consumer2" });
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.include("dup-key");
      expect(await snapshot()).to.deep.equal(before);
      expect((await keyRow("dup-key")).key_hash).to.equal(sha256(first.body.apiKey.apiKey));
    });

    it("allows the same name on another API and again after a revoke", async () => {
      expect((await post("/rest-apis", otherApi())).status).to.equal(201);
      await createKey({ name: "shared-name" });
      expect((await post("/rest-apis/petstore-v1/api-keys", { name: "shared-name" }, { as: "consumer" })).status).to.equal(201);
      expect((await del(`${KEYS}/shared-name`, { as: "consumer" })).status).to.equal(200);
      expect((await post(KEYS, { name: "shared-name" }, { as: "consumer" })).status).to.equal(201);
    });

    it("answers 409 for a value already registered, on any API, without saying where", async () => {
      expect((await post("/rest-apis", otherApi())).status).to.equal(201);
      const external = "shared-secret-value-0001";
      await createKey({ name: "first", apiKey: external });
      const before = await snapshot();
      for (const path of [KEYS, "/rest-apis/petstore-v1/api-keys"]) {
        const reply = await post(path, { name: "second", apiKey: external }, { as: "consumer2" });
        expect(reply.status).to.equal(409);
        expect(reply.body.message).to.equal("API key already registered");
        expect(reply.text).to.not.include("first");
      }
      // A generated key cannot be registered again as an external one either.
      const generated = await createKey({ name: "gen" });
      const reply = await post(KEYS, { apiKey: generated.body.apiKey.apiKey }, { as: "consumer" });
      expect(reply.status).to.equal(409);
      expect(await countRows("api_keys")).to.equal(before.keys.length + 1);
    });

    it("answers 404 for an unknown API", async () => {
      const reply = await post("/rest-apis/no-such-api/api-keys", {}, { as: "consumer" });
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.equal("RestAPI with handle 'no-such-api' not found");
      expect(await countRows("api_keys")).to.equal(0);
    });

    it("answers 403 for a developer and 401 without credentials", async () => {
      const before = await snapshot();
      expect((await post(KEYS, {}, { as: "developer" })).status).to.equal(403);
      expect((await post(KEYS, {}, { as: null })).status).to.equal(401);
      expect(await snapshot()).to.deep.equal(before);
    });
  });

  describe("quota", () => {
    it("counts down remainingApiKeyQuota and answers 400 beyond the quota, changing nothing", async () => {
      const remaining: number[] = [];
      for (let i = 0; i < QUOTA; i++) remaining.push((await createKey({ name: `carol-${i}` })).body.remainingApiKeyQuota);
      expect(remaining).to.deep.equal([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      const before = await snapshot();
      const reply = await post(KEYS, { name: "one-too-many" }, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(reply.body.message).to.equal(`API key quota exceeded: at most ${QUOTA} active keys per API and user`);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("is per user and per API", async () => {
      for (let i = 0; i < QUOTA; i++) await createKey({ name: `carol-${i}` });
      const dave = await createKey({ name: "dave-0" }, "consumer2");
      expect(dave.body.remainingApiKeyQuota).to.equal(QUOTA - 1);
      expect((await createKey({ name: "admin-0" }, "admin")).body.remainingApiKeyQuota).to.equal(QUOTA - 1);
      expect((await post("/rest-apis", otherApi())).status).to.equal(201);
      const elsewhere = await post("/rest-apis/petstore-v1/api-keys", {}, { as: "consumer" });
      expect(elsewhere.status).to.equal(201);
      expect(elsewhere.body.remainingApiKeyQuota).to.equal(QUOTA - 1);
      expect((await post(KEYS, {}, { as: "consumer" })).status).to.equal(400);
    });

    it("does not count revoked or expired keys", async () => {
      for (let i = 0; i < QUOTA; i++) await createKey({ name: `carol-${i}` });
      expect((await del(`${KEYS}/carol-0`, { as: "consumer" })).status).to.equal(200);
      expect((await createKey({ name: "after-revoke" })).body.remainingApiKeyQuota).to.equal(0);
      await db()("api_keys").where({ name: "carol-1" }).update({ expires_at: new Date(Date.now() - 60_000) });
      expect((await createKey({ name: "after-expiry" })).body.remainingApiKeyQuota).to.equal(0);
      expect((await post(KEYS, {}, { as: "consumer" })).status).to.equal(400);
    });
  });

  describe("GET /rest-apis/{id}/api-keys", () => {
    it("answers an empty array, not null, when there are no keys", async () => {
      const reply = await get(KEYS, { as: "consumer" });
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ apiKeys: [], totalCount: 0, status: "success" });
    });

    it("lists keys masked, newest first, without revoked ones", async () => {
      const first = await createKey({ name: "first" });
      await createKey({ name: "second", apiKey: "external-value-abcde12345" });
      await createKey({ name: "third" });
      expect((await del(`${KEYS}/third`, { as: "consumer" })).status).to.equal(200);
      // Spread the creation times so that the order does not depend on how fast the requests ran.
      await db()("api_keys").where({ name: "first" }).update({ created_at: new Date(Date.now() - 120_000) });
      await db()("api_keys").where({ name: "second" }).update({ created_at: new Date(Date.now() - 60_000) });
      const reply = await get(KEYS, { as: "consumer" });
      expect(reply.status).to.equal(200);
      expect(reply.body.status).to.equal("success");
      expect(reply.body.totalCount).to.equal(2);
      expect(reply.body.apiKeys.map((k: { name: string }) => k.name)).to.deep.equal(["second", "first"]);
      expect(reply.body.apiKeys[0]).to.include({ apiKey: "***12345", source: "external", apiId: API, status: "active", createdBy: "carol" });
      expect(reply.body.apiKeys[1].apiKey).to.equal("***" + first.body.apiKey.apiKey.slice(-5));
      expect(reply.text).to.not.include(first.body.apiKey.apiKey);
    });

    it("shows a key past its expiry as expired", async () => {
      await createKey({ name: "old-key", expiresIn: { unit: "minutes", duration: 5 } });
      await db()("api_keys").where({ name: "old-key" }).update({ expires_at: new Date(Date.now() - 1000) });
      const reply = await get(KEYS, { as: "consumer" });
      expect(reply.body.apiKeys[0]).to.include({ name: "old-key", status: "expired" });
    });

    it("shows a consumer only their own keys and an admin every key", async () => {
      await createKey({ name: "carols" });
      await createKey({ name: "daves" }, "consumer2");
      const names = (reply: Reply) => reply.body.apiKeys.map((k: { name: string }) => k.name).sort();
      expect(names(await get(KEYS, { as: "consumer" }))).to.deep.equal(["carols"]);
      expect(names(await get(KEYS, { as: "consumer2" }))).to.deep.equal(["daves"]);
      expect(names(await get(KEYS, { as: "admin" }))).to.deep.equal(["carols", "daves"]);
    });

    it("answers 404 for an unknown API and 403 for a developer", async () => {
      const missing = await get("/rest-apis/nope/api-keys", { as: "consumer" });
      expect(missing.status).to.equal(404);
      expect(missing.body.message).to.equal("RestAPI with handle 'nope' not found");
      expect((await get(KEYS, { as: "developer" })).status).to.equal(403);
    });
  });

  describe("POST /rest-apis/{id}/api-keys/{apiKeyName}/regenerate", () => {
    it("replaces the value at once without a grace period", async () => {
      const created = await createKey({ name: "rotating", displayName: "Rotating" });
      const oldKey: string = created.body.apiKey.apiKey;
      const reply = await call("POST", `${KEYS}/rotating/regenerate`, { as: "consumer" });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({ status: "success", message: "API key regenerated successfully", remainingApiKeyQuota: QUOTA - 1 });
      expect(reply.body).to.not.have.property("previousKeyValidUntil");
      const key = reply.body.apiKey;
      expect(key.apiKey).to.match(KEY_FORMAT).and.not.equal(oldKey);
      expect(key).to.include({ name: "rotating", displayName: "Rotating", source: "local", status: "active", createdAt: created.body.apiKey.createdAt });
      const row = await keyRow("rotating");
      expect(row.key_hash).to.equal(sha256(key.apiKey));
      expect(row.previous_key_hash).to.equal(null);
      expect(row.previous_valid_until).to.equal(null);
      expect((await lastChange()).changes).to.deep.equal([{ entity: "api_key", id: `${API}/rotating`, op: "update", apiIds: [API] }]);
    });

    it("keeps the old value valid for the grace period, then clears it on the next plain regenerate", async () => {
      const created = await createKey({ name: "graceful" });
      const oldKey: string = created.body.apiKey.apiKey;
      const before = Date.now();
      const reply = await post(`${KEYS}/graceful/regenerate`, { gracePeriod: { unit: "hours", duration: 1 } }, { as: "consumer" });
      const after = Date.now();
      expect(reply.status, reply.text).to.equal(200);
      const until = Date.parse(reply.body.previousKeyValidUntil);
      expect(until).to.be.within(before + 3_600_000, after + 3_600_000);
      let row = await keyRow("graceful");
      expect(row.key_hash).to.equal(sha256(reply.body.apiKey.apiKey));
      expect(row.previous_key_hash).to.equal(sha256(oldKey));
      expect(row.previous_valid_until.getTime()).to.equal(until);

      // The old value is still registered while in grace: it cannot be reused.
      expect((await post(KEYS, { apiKey: oldKey }, { as: "consumer2" })).status).to.equal(409);

      expect((await post(`${KEYS}/graceful/regenerate`, {}, { as: "consumer" })).status).to.equal(200);
      row = await keyRow("graceful");
      expect(row.previous_key_hash).to.equal(null);
      expect(row.previous_valid_until).to.equal(null);
    });

    it("never extends the old value beyond its own expiry", async () => {
      const created = await createKey({ name: "short-lived", expiresIn: { unit: "minutes", duration: 10 } });
      const reply = await post(`${KEYS}/short-lived/regenerate`, { gracePeriod: { unit: "days", duration: 1 } }, { as: "consumer" });
      expect(reply.status).to.equal(200);
      expect(reply.body.previousKeyValidUntil).to.equal(created.body.apiKey.expiresAt);
      expect(reply.body.apiKey.expiresAt).to.equal(created.body.apiKey.expiresAt);
    });

    it("sets a new expiry and turns an external key into a generated one", async () => {
      await createKey({ name: "was-external", apiKey: "partner-issued-000000001" });
      const before = Date.now();
      const reply = await post(`${KEYS}/was-external/regenerate`, { expiresIn: { unit: "weeks", duration: 1 } }, { as: "consumer" });
      const after = Date.now();
      expect(reply.status).to.equal(200);
      expect(reply.body.apiKey.source).to.equal("local");
      expect(reply.body.apiKey.apiKey).to.match(KEY_FORMAT);
      expect(Date.parse(reply.body.apiKey.expiresAt)).to.be.within(before + 7 * 86_400_000, after + 7 * 86_400_000);
    });

    it("revives an expired key only with a new expiry", async () => {
      await createKey({ name: "lapsed", expiresIn: { unit: "minutes", duration: 5 } });
      await db()("api_keys").where({ name: "lapsed" }).update({ expires_at: new Date(Date.now() - 1000) });
      const before = await snapshot();
      const refused = await post(`${KEYS}/lapsed/regenerate`, {}, { as: "consumer" });
      expect(refused.status).to.equal(400);
      expect(fields(refused)).to.deep.equal(["expiresAt"]);
      expect(await snapshot()).to.deep.equal(before);
      const reply = await post(`${KEYS}/lapsed/regenerate`, { expiresIn: { unit: "days", duration: 1 } }, { as: "consumer" });
      expect(reply.status).to.equal(200);
      expect(reply.body.apiKey.status).to.equal("active");
    });

    it("lets an admin regenerate another user's key, but not another consumer (403, nothing changed)", async () => {
      await createKey({ name: "carols-key" });
      const before = await snapshot();
      const denied = await post(`${KEYS}/carols-key/regenerate`, {}, { as: "consumer2" });
      expect(denied.status).to.equal(403);
      expect(await snapshot()).to.deep.equal(before);
      const reply = await post(`${KEYS}/carols-key/regenerate`, {}, { as: "admin" });
      expect(reply.status).to.equal(200);
      expect(reply.body.apiKey.createdBy).to.equal("carol");
      expect(reply.body.remainingApiKeyQuota).to.equal(QUOTA); // the admin holds no keys on this API
    });

    it("answers 404 for an unknown or revoked key and for an unknown API", async () => {
      await createKey({ name: "gone" });
      expect((await del(`${KEYS}/gone`, { as: "consumer" })).status).to.equal(200);
      const before = await snapshot();
      const revoked = await post(`${KEYS}/gone/regenerate`, {}, { as: "consumer" });
      expect(revoked.status).to.equal(404);
      expect(revoked.body.message).to.include("gone");
      expect((await post(`${KEYS}/never-was/regenerate`, {}, { as: "consumer" })).status).to.equal(404);
      const api = await post(`/rest-apis/nope/api-keys/gone/regenerate`, {}, { as: "consumer" });
      expect(api.status).to.equal(404);
      expect(api.body.message).to.equal("RestAPI with handle 'nope' not found");
      expect(await snapshot()).to.deep.equal(before);
    });

    it("validates the body: unknown fields, grace period shape and length, expiry", async () => {
      await createKey({ name: "checked" });
      const before = await snapshot();
      const reply = await post(
        `${KEYS}/checked/regenerate`,
        { gracePeriod: { unit: "days", duration: 31 }, expiresAt: "2001-01-01T00:00:00Z", keep: true },
        { as: "consumer" },
      );
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.include.members(["gracePeriod.duration", "expiresAt", "keep"]);
      const shape = await post(`${KEYS}/checked/regenerate`, { gracePeriod: { unit: "fortnights", duration: 0 } }, { as: "consumer" });
      expect(shape.status).to.equal(400);
      expect(fields(shape)).to.include.members(["gracePeriod.unit", "gracePeriod.duration"]);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("answers 403 for a developer", async () => {
      await createKey({ name: "dev-cannot" });
      expect((await post(`${KEYS}/dev-cannot/regenerate`, {}, { as: "developer" })).status).to.equal(403);
    });
  });

  describe("PUT /rest-apis/{id}/api-keys/{apiKeyName}", () => {
    it("sets a custom value without echoing it, and the old value stops at once", async () => {
      const created = await createKey({ name: "custom" });
      await post(`${KEYS}/custom/regenerate`, { gracePeriod: { unit: "hours", duration: 2 } }, { as: "consumer" });
      const value = "my-own-value-0123456789";
      const reply = await put(`${KEYS}/custom`, { apiKey: value, displayName: "Custom Key" }, { as: "consumer" });
      expect(reply.status, reply.text).to.equal(200);
      expect(reply.body).to.include({ status: "success", remainingApiKeyQuota: QUOTA - 1 });
      expect(reply.body.apiKey).to.include({ name: "custom", displayName: "Custom Key", source: "external", status: "active", createdAt: created.body.apiKey.createdAt });
      expect(reply.body.apiKey).to.not.have.property("apiKey");
      expect(reply.text).to.not.include(value);
      const row = await keyRow("custom");
      expect(row.key_hash).to.equal(sha256(value));
      expect(row.key_suffix).to.equal("56789");
      expect(row.previous_key_hash).to.equal(null);
      expect(row.previous_valid_until).to.equal(null);
      expect((await lastChange()).changes).to.deep.equal([{ entity: "api_key", id: `${API}/custom`, op: "update", apiIds: [API] }]);
      // The replaced value is no longer registered anywhere, so it may be registered again.
      expect((await post(KEYS, { apiKey: created.body.apiKey.apiKey }, { as: "consumer" })).status).to.equal(201);
    });

    it("sets a new expiry when given, keeps the current one otherwise", async () => {
      const created = await createKey({ name: "expiring", expiresIn: { unit: "days", duration: 3 } });
      const kept = await put(`${KEYS}/expiring`, { apiKey: "value-number-one-000001" }, { as: "consumer" });
      expect(kept.body.apiKey.expiresAt).to.equal(created.body.apiKey.expiresAt);
      const future = new Date(Date.now() + 10 * 86_400_000);
      const changed = await put(`${KEYS}/expiring`, { apiKey: "value-number-two-000002", expiresAt: future.toISOString() }, { as: "consumer" });
      expect(changed.body.apiKey.expiresAt).to.equal(future.toISOString());
    });

    it("accepts the value the key already has", async () => {
      await createKey({ name: "same-value", apiKey: "unchanged-value-00000001" });
      expect((await put(`${KEYS}/same-value`, { apiKey: "unchanged-value-00000001" }, { as: "consumer" })).status).to.equal(200);
    });

    it("answers 409 for a value another key has, changing nothing", async () => {
      await createKey({ name: "holder", apiKey: "taken-value-00000000001" });
      await createKey({ name: "target" });
      const before = await snapshot();
      const reply = await put(`${KEYS}/target`, { apiKey: "taken-value-00000000001" }, { as: "consumer" });
      expect(reply.status).to.equal(409);
      expect(reply.body.message).to.equal("API key already registered");
      expect(await snapshot()).to.deep.equal(before);
    });

    it("requires apiKey and validates the body", async () => {
      await createKey({ name: "needs-value" });
      const before = await snapshot();
      const missing = await put(`${KEYS}/needs-value`, { displayName: "x" }, { as: "consumer" });
      expect(missing.status).to.equal(400);
      expect(missing.body.errors).to.deep.include({ field: "apiKey", message: "is required" });
      const none = await call("PUT", `${KEYS}/needs-value`, { as: "consumer" });
      expect(none.status).to.equal(400);
      const bad = await put(`${KEYS}/needs-value`, { apiKey: "tiny", name: "rename", expiresAt: "2000-01-01T00:00:00Z" }, { as: "consumer" });
      expect(bad.status).to.equal(400);
      expect(fields(bad)).to.include.members(["apiKey", "name", "expiresAt"]);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("answers 403 to another consumer, 404 for an unknown key or API", async () => {
      await createKey({ name: "owned" });
      const before = await snapshot();
      expect((await put(`${KEYS}/owned`, { apiKey: "someone-elses-value-01" }, { as: "consumer2" })).status).to.equal(403);
      expect((await put(`${KEYS}/nobody`, { apiKey: "someone-elses-value-01" }, { as: "consumer" })).status).to.equal(404);
      expect((await put(`/rest-apis/nope/api-keys/owned`, { apiKey: "someone-elses-value-01" }, { as: "consumer" })).status).to.equal(404);
      expect((await put(`${KEYS}/owned`, { apiKey: "someone-elses-value-01" }, { as: "developer" })).status).to.equal(403);
      expect(await snapshot()).to.deep.equal(before);
      expect((await put(`${KEYS}/owned`, { apiKey: "admin-chosen-value-0001" }, { as: "admin" })).status).to.equal(200);
    });
  });

  describe("DELETE /rest-apis/{id}/api-keys/{apiKeyName}", () => {
    it("revokes a key, clears a grace value and is idempotent", async () => {
      await createKey({ name: "doomed" });
      await post(`${KEYS}/doomed/regenerate`, { gracePeriod: { unit: "minutes", duration: 30 } }, { as: "consumer" });
      const reply = await del(`${KEYS}/doomed`, { as: "consumer" });
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ status: "success", message: "API key revoked successfully" });
      const row = await keyRow("doomed");
      expect(row.status).to.equal("revoked");
      expect(row.revoked_at).to.be.instanceOf(Date);
      expect(row.previous_key_hash).to.equal(null);
      expect(row.previous_valid_until).to.equal(null);
      expect((await lastChange()).changes).to.deep.equal([{ entity: "api_key", id: `${API}/doomed`, op: "delete", apiIds: [API] }]);
      expect((await get(KEYS, { as: "consumer" })).body.totalCount).to.equal(0);

      const before = await snapshot();
      const again = await del(`${KEYS}/doomed`, { as: "consumer" });
      expect(again.status).to.equal(200);
      expect(again.body.message).to.equal("API key revoked successfully");
      expect((await del(`${KEYS}/never-existed`, { as: "consumer" })).status).to.equal(200);
      expect(await snapshot()).to.deep.equal(before);
    });

    it("answers 404 for an unknown API", async () => {
      const reply = await del("/rest-apis/nope/api-keys/whatever", { as: "consumer" });
      expect(reply.status).to.equal(404);
      expect(reply.body.message).to.equal("RestAPI with handle 'nope' not found");
    });

    it("lets only the creator or an admin revoke", async () => {
      await createKey({ name: "carols" });
      await createKey({ name: "carols-too" });
      const before = await snapshot();
      expect((await del(`${KEYS}/carols`, { as: "consumer2" })).status).to.equal(403);
      expect((await del(`${KEYS}/carols`, { as: "developer" })).status).to.equal(403);
      expect(await snapshot()).to.deep.equal(before);
      expect((await del(`${KEYS}/carols`, { as: "admin" })).status).to.equal(200);
      expect((await keyRow("carols")).status).to.equal("revoked");
      expect((await keyRow("carols-too")).status).to.equal("active");
    });

    it("rejects a key name longer than 63 characters", async () => {
      const reply = await del(`${KEYS}/${"k".repeat(64)}`, { as: "consumer" });
      expect(reply.status).to.equal(400);
      expect(fields(reply)).to.deep.equal(["apiKeyName"]);
    });
  });

  it("deleting the API deletes its keys", async () => {
    await createKey({ name: "cascade" });
    expect((await del(`/rest-apis/${API}`)).status).to.equal(200);
    expect(await countRows("api_keys")).to.equal(0);
  });
});

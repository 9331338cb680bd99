import { expect } from "chai";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import {
  buildPathAndParameters,
  buildStringToSign,
  CA_HEADERS,
  checkTimestamp,
  contentMd5,
  contentMd5Matches,
  INVALID_SIGNATURE_PREFIX,
  invalidSignatureMessage,
  MAX_ERROR_MESSAGE_LENGTH,
  parseFormBody,
  parseRequestTarget,
  parseSignatureMethod,
  sign,
  signedHeaderNames,
  toSignableRequest,
  verifySignature,
  type RawRequest,
  type SignableRequest,
} from "../../packages/shared/src/signature";

/** The official Node.js client, an independent signer (CommonJS, untyped). */
interface AliyunOptions {
  query?: Record<string, unknown>;
  data?: unknown;
  headers?: Record<string, string>;
  signHeaders?: Record<string, string>;
}
interface AliyunClient {
  get(url: string, opts?: AliyunOptions): Promise<unknown>;
  post(url: string, opts?: AliyunOptions): Promise<unknown>;
}
const requireCjs = createRequire(import.meta.url);
const { Client } = requireCjs("aliyun-api-gateway") as {
  Client: new (appKey: string, appSecret: string, stage?: string) => AliyunClient;
};

const APP_KEY = "203753911";
const APP_SECRET = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
const CA = {
  "x-ca-key": APP_KEY,
  "x-ca-nonce": "c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44",
  "x-ca-stage": "RELEASE",
  "x-ca-timestamp": "1764000000000",
  accept: "application/json",
};
const CA_SIGNED = "x-ca-key,x-ca-nonce,x-ca-stage,x-ca-timestamp";
const CA_BLOCK =
  "x-ca-key:203753911\nx-ca-nonce:c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44\nx-ca-stage:RELEASE\nx-ca-timestamp:1764000000000\n";

function rebuild(raw: RawRequest): SignableRequest {
  const parsed = toSignableRequest(raw);
  if (!parsed.ok) throw new Error(`unexpected parse error: ${parsed.error}`);
  return parsed.value;
}

/** Server-side verification of a captured request, as the ext_authz service will do it. */
function verifies(raw: RawRequest, secret = APP_SECRET): boolean {
  const request = rebuild(raw);
  const method = parseSignatureMethod(request.headers[CA_HEADERS.signatureMethod]);
  if (!method) return false;
  return verifySignature(buildStringToSign(request), secret, method, request.headers[CA_HEADERS.signature]);
}

describe("app signature (Alibaba Cloud API Gateway)", () => {
  describe("test vectors from the spec", () => {
    it("1. GET with query parameters, one of them empty", () => {
      const request = rebuild({
        method: "GET",
        target: "/reading-list/v1.0/books?b=2&a=1&empty=",
        headers: { ...CA, "x-ca-signature-headers": CA_SIGNED },
      });
      const stringToSign = buildStringToSign(request);
      expect(stringToSign).to.equal(`GET\napplication/json\n\n\n\n${CA_BLOCK}/reading-list/v1.0/books?a=1&b=2&empty`);
      expect(sign(stringToSign, APP_SECRET, "HmacSHA256")).to.equal("b0PY4JwFQH3myEIPR0TodpR8aNvGFZy8onzu6M9lKyo=");
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", "b0PY4JwFQH3myEIPR0TodpR8aNvGFZy8onzu6M9lKyo=")).to.equal(true);
    });

    it("2. form POST: the form fields are signed as parameters", () => {
      const request = rebuild({
        method: "POST",
        target: "/reading-list/v1.0/books",
        headers: {
          ...CA,
          "content-type": "application/x-www-form-urlencoded; charset=UTF-8",
          "x-ca-signature-headers": CA_SIGNED,
        },
        body: Buffer.from("title=Dune&author=Herbert"),
      });
      const stringToSign = buildStringToSign(request);
      expect(stringToSign).to.equal(
        `POST\napplication/json\n\napplication/x-www-form-urlencoded; charset=UTF-8\n\n${CA_BLOCK}/reading-list/v1.0/books?author=Herbert&title=Dune`,
      );
      expect(sign(stringToSign, APP_SECRET)).to.equal("43VvwlmrLMsb8YSoTWJ59DwtJGQEuku2Hia4G7zAr0I=");
    });

    it("3. JSON POST with Content-MD5 and an extra signed header", () => {
      const body = '{"title":"Dune"}';
      expect(contentMd5(body)).to.equal("SCZD+gadBZoiqjgqE1GoeQ==");
      expect(contentMd5(Buffer.from(body))).to.equal("SCZD+gadBZoiqjgqE1GoeQ==");
      const request: SignableRequest = {
        method: "POST",
        path: "/reading-list/v1.0/books",
        query: [["draft", "true"]],
        headers: {
          ...CA,
          "content-md5": "SCZD+gadBZoiqjgqE1GoeQ==",
          "x-tenant": "acme",
          "x-ca-signature-headers": `${CA_SIGNED},x-tenant`,
        },
        contentType: "application/json; charset=UTF-8",
      };
      const stringToSign = buildStringToSign(request);
      expect(stringToSign).to.equal(
        `POST\napplication/json\nSCZD+gadBZoiqjgqE1GoeQ==\napplication/json; charset=UTF-8\n\n${CA_BLOCK}x-tenant:acme\n/reading-list/v1.0/books?draft=true`,
      );
      expect(sign(stringToSign, APP_SECRET, "HmacSHA256")).to.equal("2nRfK+sT8YbsogvySuywZTioracCgN+pvVhEHuYE0M4=");
    });

    it("signs header names as listed (X-Ca-Key style), sorted, values found case-insensitively", () => {
      const request: SignableRequest = {
        method: "GET",
        path: "/p",
        query: [],
        headers: { ...CA, "x-tenant": "acme", "x-ca-signature-headers": "x-tenant, X-Ca-Nonce,X-Ca-Key,,Accept,Content-MD5,X-Ca-Signature" },
      };
      expect(buildStringToSign(request)).to.equal(
        "GET\napplication/json\n\n\n\nX-Ca-Key:203753911\nX-Ca-Nonce:c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44\nx-tenant:acme\n/p",
      );
      expect(buildStringToSign({ ...request, headers: { ...CA } })).to.equal("GET\napplication/json\n\n\n\n/p");
    });

    it("merges query and form parameters; repeated names are joined with commas and the form wins", () => {
      expect(buildPathAndParameters("/p", [])).to.equal("/p");
      expect(buildPathAndParameters("/p", [["tag", "b"], ["tag", "a"], ["x", ""], ["x", ""], ["y", ""]])).to.equal("/p?tag=b,a&x=,&y");
      expect(buildPathAndParameters("/p", [["a", "q"], ["b", "q"]], [["a", "f1"], ["a", "f2"]])).to.equal("/p?a=f1,f2&b=q");
      // Ordinal order: upper case before lower case, "a" before "a_b" before "ab".
      expect(buildPathAndParameters("/p", [["ab", "1"], ["a_b", "2"], ["B", "3"], ["a", "4"]])).to.equal("/p?B=3&a=4&a_b=2&ab=1");
      // The form body counts only for application/x-www-form-urlencoded.
      const base = { method: "POST", path: "/p", query: [["q", "1"]] as const, headers: {}, formBody: [["f", "2"]] as const };
      expect(buildStringToSign({ ...base, contentType: "application/json" })).to.match(/\n\/p\?q=1$/);
      expect(buildStringToSign({ ...base, contentType: "Application/X-WWW-Form-Urlencoded;charset=UTF-8" })).to.match(/\n\/p\?f=2&q=1$/);
    });
  });

  describe("HmacSHA1", () => {
    const stringToSign = `GET\napplication/json\n\n\n\n${CA_BLOCK}/reading-list/v1.0/books?a=1&b=2&empty`;

    it("signs with SHA-1 (value computed with openssl) and differs from SHA-256", () => {
      const sha1 = sign(stringToSign, APP_SECRET, "HmacSHA1");
      expect(sha1).to.equal("Od2on2j0wCI0txC1WbwVyjH63aI=");
      expect(sha1).to.not.equal(sign(stringToSign, APP_SECRET, "HmacSHA256"));
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA1", sha1)).to.equal(true);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", sha1)).to.equal(false);
      expect(verifySignature(stringToSign, APP_SECRET + "x", "HmacSHA1", sha1)).to.equal(false);
    });

    it("reads X-Ca-Signature-Method: HmacSHA256 by default, unknown methods are refused", () => {
      expect(parseSignatureMethod(undefined)).to.equal("HmacSHA256");
      expect(parseSignatureMethod("")).to.equal("HmacSHA256");
      expect(parseSignatureMethod("HmacSHA1")).to.equal("HmacSHA1");
      expect(parseSignatureMethod("HmacSHA256")).to.equal("HmacSHA256");
      expect(parseSignatureMethod("HmacMD5")).to.equal(undefined);
      expect(parseSignatureMethod("hmacsha1 ")).to.equal(undefined);
    });
  });

  describe("against the official Node.js client (aliyun-api-gateway)", () => {
    interface Captured {
      method: string;
      url: string;
      headers: IncomingHttpHeaders;
      body: Buffer;
    }
    let server: Server;
    let baseUrl: string;
    let captured: Captured[] = [];
    /** The secret the server verifies with; a wrong one makes it answer like Alibaba does. */
    let serverSecret = APP_SECRET;
    const client = new Client(APP_KEY, APP_SECRET);

    before(async () => {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => {
          const entry = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) };
          captured.push(entry);
          const raw = { method: entry.method, target: entry.url, headers: entry.headers, body: entry.body };
          const request = rebuild(raw);
          const stringToSign = buildStringToSign(request);
          if (verifies(raw, serverSecret)) {
            res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
          } else {
            res.writeHead(400, { "x-ca-error-message": invalidSignatureMessage(stringToSign), "x-ca-request-id": "r-1" }).end();
          }
        });
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    beforeEach(() => {
      captured = [];
      serverSecret = APP_SECRET;
    });

    function only(): Captured {
      expect(captured).to.have.length(1);
      return captured[0]!;
    }
    function rawOf(c: Captured, change: Partial<RawRequest> = {}): RawRequest {
      return { method: c.method, target: c.url, headers: { ...c.headers }, body: c.body, ...change };
    }

    it("verifies a GET with query parameters (one empty) and a signed custom header", async () => {
      expect(await client.get(`${baseUrl}/reading-list/v1.0/books`, {
        query: { b: "2", a: "1", empty: "", title: "Dune Messiah", note: "50% off & more" },
        signHeaders: { "X-Tenant": "acme" },
      })).to.deep.equal({ ok: true });
      const c = only();
      expect(c.headers["x-ca-signature-headers"]).to.equal(`${CA_SIGNED},x-tenant`);
      expect(checkTimestamp(c.headers["x-ca-timestamp"] as string, Date.now())).to.equal("ok");
      const stringToSign = buildStringToSign(rebuild(rawOf(c)));
      expect(stringToSign).to.match(/\nx-tenant:acme\n\/reading-list\/v1\.0\/books\?a=1&b=2&empty&note=50% off & more&title=Dune Messiah$/);
      expect(verifies(rawOf(c))).to.equal(true);
    });

    it("verifies repeated query names, '+' as a space and an encoded path, as the client signs them", async () => {
      await client.get(`${baseUrl}/reading-list/v1.0/caf%C3%A9%20books?tag=b&tag=a&q=x+y&flag`);
      const c = only();
      expect(c.url).to.equal("/reading-list/v1.0/caf%C3%A9%20books?tag=b&tag=a&q=x+y&flag");
      expect(buildStringToSign(rebuild(rawOf(c)))).to.match(/\n\/reading-list\/v1\.0\/caf%C3%A9%20books\?flag&q=x y&tag=b,a$/);
      expect(verifies(rawOf(c))).to.equal(true);
    });

    it("verifies a form POST, query and form merged, repeated form fields and the form winning a shared name", async () => {
      await client.post(`${baseUrl}/reading-list/v1.0/books?draft=true&tag=query`, {
        headers: { "content-type": "application/x-www-form-urlencoded; charset=UTF-8" },
        data: { title: "Dune", author: "Frank Herbert", tag: ["sf", "classic"], empty: "" },
      });
      const c = only();
      expect(c.headers["content-md5"]).to.equal(undefined);
      expect(c.body.toString()).to.equal("title=Dune&author=Frank%20Herbert&tag=sf&tag=classic&empty=");
      expect(buildStringToSign(rebuild(rawOf(c)))).to.match(
        /\n\/reading-list\/v1\.0\/books\?author=Frank Herbert&draft=true&empty&tag=sf,classic&title=Dune$/,
      );
      expect(verifies(rawOf(c))).to.equal(true);
    });

    it("verifies a JSON POST with Content-MD5", async () => {
      await client.post(`${baseUrl}/reading-list/v1.0/books?draft=true`, {
        headers: { "content-type": "application/json; charset=UTF-8" },
        data: { title: "Dune", author: "Herbert", ünïcode: "✓" },
        signHeaders: { "x-tenant": "acme" },
      });
      const c = only();
      expect(c.headers["content-md5"]).to.equal(contentMd5(c.body));
      expect(contentMd5Matches(c.headers["content-md5"] as string, c.body)).to.equal(true);
      expect(buildStringToSign(rebuild(rawOf(c)))).to.match(/^POST\napplication\/json\n[A-Za-z0-9+/]{22}==\napplication\/json; charset=UTF-8\n\n/);
      expect(verifies(rawOf(c))).to.equal(true);
    });

    it("fails verification when a query value, a signed header, the list of signed headers or the method is tampered with", async () => {
      await client.get(`${baseUrl}/reading-list/v1.0/books`, { query: { a: "1", b: "2", empty: "" }, signHeaders: { "x-tenant": "acme" } });
      const c = only();
      expect(verifies(rawOf(c))).to.equal(true);
      expect(verifies(rawOf(c, { target: c.url.replace("b=2", "b=3") }))).to.equal(false);
      expect(verifies(rawOf(c, { target: c.url + "&extra=1" }))).to.equal(false);
      expect(verifies(rawOf(c, { target: c.url.replace("/books", "/Books") }))).to.equal(false);
      expect(verifies(rawOf(c, { method: "DELETE" }))).to.equal(false);
      expect(verifies(rawOf(c, { headers: { ...c.headers, "x-tenant": "evil" } }))).to.equal(false);
      expect(verifies(rawOf(c, { headers: { ...c.headers, "x-ca-timestamp": String(Date.now() + 1) } }))).to.equal(false);
      expect(verifies(rawOf(c, { headers: { ...c.headers, "x-ca-signature-headers": "x-ca-key" } }))).to.equal(false);
      expect(verifies(rawOf(c, { headers: { ...c.headers, accept: "text/html" } }))).to.equal(false);
      expect(verifies(rawOf(c, { headers: { ...c.headers, "x-ca-signature-method": "HmacSHA1" } }))).to.equal(false);
      // A header that was not signed may change.
      expect(verifies(rawOf(c, { headers: { ...c.headers, "user-agent": "other" } }))).to.equal(true);
    });

    it("fails verification when a form body or a JSON body is tampered with", async () => {
      await client.post(`${baseUrl}/books`, {
        headers: { "content-type": "application/x-www-form-urlencoded" },
        data: { title: "Dune" },
      });
      await client.post(`${baseUrl}/books`, { data: { title: "Dune" } });
      expect(captured).to.have.length(2);
      const [form, json] = captured as [Captured, Captured];
      expect(verifies(rawOf(form))).to.equal(true);
      expect(verifies(rawOf(form, { body: Buffer.from("title=Dun3") }))).to.equal(false);
      expect(verifies(rawOf(form, { body: Buffer.from("title=Dune&admin=true") }))).to.equal(false);

      expect(verifies(rawOf(json))).to.equal(true);
      const forged = Buffer.from('{"title":"Dun3"}');
      expect(contentMd5Matches(json.headers["content-md5"] as string, forged)).to.equal(false);
      // Recomputing Content-MD5 for the forged body does not help: Content-MD5 is signed.
      expect(verifies(rawOf(json, { body: forged, headers: { ...json.headers, "content-md5": contentMd5(forged) } }))).to.equal(false);
    });

    it("answers a mismatch with the server string to sign, which the client reports", async () => {
      serverSecret = "not-the-secret";
      let failure: (Error & { code?: number }) | undefined;
      try {
        await client.get(`${baseUrl}/books?q=caf%C3%A9`, {});
      } catch (error) {
        failure = error as Error & { code?: number };
      }
      expect(failure, "the client should reject").to.not.equal(undefined);
      expect(failure!.code).to.equal(400);
      const c = only();
      const expected = invalidSignatureMessage(buildStringToSign(rebuild(rawOf(c))));
      expect(expected.startsWith(INVALID_SIGNATURE_PREFIX + "GET#application/json####x-ca-key:203753911#")).to.equal(true);
      expect(expected.endsWith("#/books?q=caf%C3%A9")).to.equal(true);
      expect(failure!.message).to.include(`error message: ${expected}`);
    });
  });

  describe("malformed input gives a clear result, never an exception", () => {
    it("bad percent-encoding in the query or the form body is an error result", () => {
      for (const target of ["/p?a=%zz", "/p?a=%", "/p?a=%E0%A4", "/p?%zz=1", "/p?a=%C0%80"]) {
        const parsed = parseRequestTarget(target);
        expect(parsed.ok, target).to.equal(false);
        if (!parsed.ok) expect(parsed.error).to.match(/^invalid query string: malformed percent-encoding/);
      }
      const form = parseFormBody("title=%ZZ");
      expect(form).to.deep.equal({ ok: false, error: 'invalid form body: malformed percent-encoding in the value of parameter "title"' });
      expect(parseFormBody(Buffer.from([0x61, 0x3d, 0xff]))).to.deep.equal({ ok: false, error: "invalid form body: not valid UTF-8" });
      const rejected = toSignableRequest({
        method: "POST",
        target: "/p",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "a=%",
      });
      expect(rejected.ok).to.equal(false);
      // A non-form body is not parsed at all.
      expect(toSignableRequest({ method: "POST", target: "/p", headers: { "content-type": "text/plain" }, body: "a=%" }).ok).to.equal(true);
    });

    it("a request target that is not a path is an error result; well-formed oddities parse", () => {
      expect(parseRequestTarget("").ok).to.equal(false);
      expect(parseRequestTarget("http://example.com/p").ok).to.equal(false);
      expect(parseRequestTarget("/p?&&a&=x&b==c&c=1%2B1+2")).to.deep.equal({
        ok: true,
        value: { path: "/p", query: [["a", ""], ["", "x"], ["b", "=c"], ["c", "1+1 2"]] },
      });
      expect(parseRequestTarget("/p?")).to.deep.equal({ ok: true, value: { path: "/p", query: [] } });
    });

    it("checks X-Ca-Timestamp: digits only, within 15 minutes either way", () => {
      const now = 1_764_000_000_000;
      expect(checkTimestamp(String(now), now)).to.equal("ok");
      expect(checkTimestamp(String(now - 15 * 60_000), now)).to.equal("ok");
      expect(checkTimestamp(String(now + 15 * 60_000), now)).to.equal("ok");
      expect(checkTimestamp(String(now - 16 * 60_000), now)).to.equal("Timestamp Expired");
      expect(checkTimestamp(String(now + 16 * 60_000), now)).to.equal("Timestamp Expired");
      expect(checkTimestamp("0", now)).to.equal("Timestamp Expired");
      for (const bad of [undefined, "", "abc", "-1", " 1764000000000", "1764000000000 ", "1.764e12", "1764000000000x", "0x1A", "١٧٦٤", "9".repeat(17), "9".repeat(1_000_000)]) {
        expect(checkTimestamp(bad, now), String(bad).slice(0, 20)).to.equal("Invalid Timestamp");
      }
    });

    it("huge header values are signed once and compared safely", () => {
      const huge = "v".repeat(1024 * 1024);
      const listed = Array.from({ length: 10_000 }, (_, i) => (i % 2 ? "X-Big" : "x-big")).join(",");
      const request: SignableRequest = {
        method: "GET",
        path: "/p",
        query: [],
        headers: { "x-big": huge, "x-ca-signature-headers": listed },
      };
      const stringToSign = buildStringToSign(request);
      expect(stringToSign).to.equal(`GET\n\n\n\n\nx-big:${huge}\n/p`);
      const signature = sign(stringToSign, APP_SECRET);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", signature)).to.equal(true);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", huge)).to.equal(false);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", undefined)).to.equal(false);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", "")).to.equal(false);
      expect(verifySignature(stringToSign, APP_SECRET, "HmacSHA256", signature.replace(/=$/, ""))).to.equal(false);
      const message = invalidSignatureMessage(stringToSign + "\r\n\u0000\ud800");
      expect(message.length).to.equal(MAX_ERROR_MESSAGE_LENGTH);
      expect(message).to.match(/^[\x20-\x7e]+$/);
      expect(invalidSignatureMessage("a\r\n\u0000\ud800é")).to.equal(`${INVALID_SIGNATURE_PREFIX}a%0D#%00%EF%BF%BD%C3%A9`);
    });

    it("listed headers that are absent, or named like Object properties, sign as empty values", () => {
      expect(signedHeaderNames("constructor,__proto__,toString,,  , Date")).to.deep.equal(["__proto__", "constructor", "toString"]);
      const stringToSign = buildStringToSign({
        method: "GET",
        path: "/p",
        query: [["__proto__", "x"], ["constructor", ""]],
        headers: { "x-ca-signature-headers": "constructor,__proto__,x-missing" },
      });
      expect(stringToSign).to.equal("GET\n\n\n\n\n__proto__:\nconstructor:\nx-missing:\n/p?__proto__=x&constructor");
    });
  });
});

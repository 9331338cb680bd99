import { expect } from "chai";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Message } from "@bufbuild/protobuf";
import { MemoryCredentialStore, type CredentialStore, type ScopeRef } from "@apigw/shared";
import { createExtAuthzServer, type ExtAuthzServer } from "../../packages/ext-authz/src/index";
import { authorizationService, CHECK_METHOD_PATH, decodeCheckResponse, encodeCheckRequest } from "../../packages/ext-authz/src/protocol";
import { TEST_MASTER_KEY } from "../support/environment";
import { buildCheckRequest, scopeConfig, writeScope, type SimpleCheckRequest } from "../support/extAuthzClient";

/*
 * The ext_authz gRPC server (grpcServer.ts on node:http2, with wire.ts) as a client sees it:
 * @grpc/grpc-js through the Envoy service definition, raw node:http2 streams for what grpc-js
 * will not send (wrong content types, compressed or broken framing, several messages), and raw
 * HTTP/2 frames over a TCP socket for the GOAWAY handshake of a graceful close. The store is a
 * MemoryCredentialStore behind a wrapper that can hold a check in flight and records which APIs
 * were looked up (what the server really processed).
 */

const API = "books";
const CTX = { api_id: API, stage: "RELEASE" };
const API_KEY = "apip_" + "cd".repeat(32);
const MAX_SMALL = 4096;

/** The store, with checks for an API held until released, and the APIs looked up. */
class ObservedStore {
  readonly memory = new MemoryCredentialStore();
  readonly lookedUp: string[] = [];
  private readonly held = new Map<string, { release: () => void; reached: Promise<void>; arrived: () => void; gate: Promise<void> }>();
  readonly store: CredentialStore;

  constructor() {
    const memory = this.memory;
    this.store = new Proxy(memory, {
      get: (target, prop, receiver) => {
        if (prop === "readFields") {
          return async (scope: ScopeRef, fields: readonly string[]) => {
            this.lookedUp.push(scope.apiId);
            const hold = this.held.get(scope.apiId);
            if (hold) {
              hold.arrived();
              await hold.gate;
            }
            return memory.readFields(scope, fields);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** Checks of `apiId` wait until `release()`; `reached` resolves when one is waiting. */
  hold(apiId: string): { release: () => void; reached: Promise<void> } {
    let release!: () => void;
    let arrived!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    this.held.set(apiId, { release, reached, arrived, gate });
    return { release, reached };
  }
}

/* ------------------------------------------------------------------ helpers */

const requestBytes = (request: SimpleCheckRequest): Buffer => encodeCheckRequest(buildCheckRequest(request));

/** A gRPC length-prefixed message. */
function grpcFrame(message: Uint8Array, flag = 0): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flag;
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

const allowedRequest = (requestId: string, api = API): SimpleCheckRequest => ({
  path: `/books?apikey=${API_KEY}`,
  headers: { "x-request-id": requestId },
  contextExtensions: { ...CTX, api_id: api },
});
const deniedRequest = (requestId: string): SimpleCheckRequest => ({ path: "/books", headers: { "x-request-id": requestId }, contextExtensions: CTX });

interface Summary {
  allowed: boolean;
  grpcCode: number;
  status?: number;
  requestId?: string;
  credential?: string;
  headersToRemove: string[];
  queryParametersToRemove: string[];
  deniedHeaders: Record<string, string>;
  body?: string;
}

interface ResponseJs {
  status?: { code: number };
  httpResponse:
    | { case: "okResponse"; value: { headersToRemove: string[]; queryParametersToRemove: string[] } }
    | { case: "deniedResponse"; value: { status?: { code: number }; headers: { header?: { key: string; value: string } }[]; body: string } }
    | { case: undefined };
  /** google.protobuf.Struct, as its JSON object. */
  dynamicMetadata?: Record<string, string>;
}

function summarize(message: Message): Summary {
  const response = message as unknown as ResponseJs;
  const http = response.httpResponse;
  const deniedHeaders: Record<string, string> = {};
  if (http.case === "deniedResponse") for (const o of http.value.headers) if (o.header) deniedHeaders[o.header.key] = o.header.value;
  const metadata = response.dynamicMetadata ?? {};
  return {
    allowed: http.case === "okResponse",
    grpcCode: response.status?.code ?? 0,
    status: http.case === "deniedResponse" ? http.value.status?.code : undefined,
    requestId: http.case === "deniedResponse" ? deniedHeaders["x-ca-request-id"] : metadata.request_id,
    credential: metadata.credential,
    headersToRemove: http.case === "okResponse" ? http.value.headersToRemove : [],
    queryParametersToRemove: http.case === "okResponse" ? http.value.queryParametersToRemove : [],
    deniedHeaders,
    body: http.case === "deniedResponse" ? http.value.body : undefined,
  };
}

function expectAllowed(summary: Summary, requestId: string): void {
  expect(summary.allowed, JSON.stringify(summary)).to.equal(true);
  expect(summary.grpcCode).to.equal(0);
  expect(summary.credential).to.equal("API_KEY");
  expect(summary.requestId).to.equal(requestId);
  expect(summary.queryParametersToRemove).to.deep.equal(["apikey"]);
}

function expectDenied(summary: Summary, requestId: string): void {
  expect(summary.allowed, JSON.stringify(summary)).to.equal(false);
  expect(summary.grpcCode).to.equal(16); // UNAUTHENTICATED for a 401
  expect(summary.status).to.equal(401);
  expect(summary.requestId).to.equal(requestId);
  expect(JSON.parse(summary.body!)).to.have.property("code").that.is.a("string");
}

/* ---- grpc-js */

const AuthorizationClient = grpc.makeGenericClientConstructor(authorizationService(), "Authorization");
type UnaryCallback = (error: grpc.ServiceError | null, response?: Message) => void;
type CheckMethod = (request: Message, options: grpc.CallOptions, callback: UnaryCallback) => grpc.ClientUnaryCall;

function grpcClient(port: number, options: grpc.ChannelOptions = {}): grpc.Client {
  return new AuthorizationClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": -1, ...options });
}

/** Check through the Envoy service definition; resolves the response or the gRPC error. */
function grpcCheck(client: grpc.Client, request: Message | SimpleCheckRequest): Promise<{ response?: Message; error?: grpc.ServiceError }> {
  const message = "$typeName" in request ? request : buildCheckRequest(request);
  return new Promise((resolve) => {
    (client as unknown as { Check: CheckMethod }).Check(message, { deadline: Date.now() + 15_000 }, (error, response) => resolve(error ? { error } : { response }));
  });
}

/** A unary call with any path and raw request bytes. */
function grpcRaw(client: grpc.Client, path: string, bytes: Buffer): Promise<{ response?: Message; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => decodeCheckResponse(b),
      bytes,
      { deadline: Date.now() + 15_000 },
      (error, response) => resolve(error ? { error } : { response: response as Message }),
    );
  });
}

/* ---- raw node:http2 */

interface RawResult {
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  trailers?: http2.IncomingHttpHeaders;
  data: Buffer;
  rstCode: number;
}

interface RawCall {
  path?: string;
  /** Header changes; undefined removes one (e.g. content-type). */
  headers?: Record<string, string | undefined>;
  /** Written one after the other (each its own DATA frame). */
  chunks?: Buffer[];
  end?: boolean;
}

function openStream(session: http2.ClientHttp2Session, call: RawCall): { stream: http2.ClientHttp2Stream; result: Promise<RawResult> } {
  const headers: Record<string, string> = { ":method": "POST", ":path": call.path ?? CHECK_METHOD_PATH, "content-type": "application/grpc", te: "trailers" };
  for (const [name, value] of Object.entries(call.headers ?? {})) {
    if (value === undefined) delete headers[name];
    else headers[name] = value;
  }
  const stream = session.request(headers, { endStream: false });
  const result = new Promise<RawResult>((resolve) => {
    let responseHeaders = {} as RawResult["headers"];
    let trailers: http2.IncomingHttpHeaders | undefined;
    const data: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => data.push(chunk));
    stream.on("error", () => {});
    stream.on("close", () => resolve({ headers: responseHeaders, trailers, data: Buffer.concat(data), rstCode: stream.rstCode ?? 0 }));
  });
  for (const chunk of call.chunks ?? []) stream.write(chunk);
  if (call.end !== false) stream.end();
  return { stream, result };
}

const rawCall = (session: http2.ClientHttp2Session, call: RawCall): Promise<RawResult> => openStream(session, call).result;

/** A trailers-only gRPC error: HTTP 200, application/grpc, grpc-status and grpc-message in the one header block, no body. */
function expectGrpcError(result: RawResult, code: number, message?: string): string {
  expect(result.headers[":status"], JSON.stringify(result.headers)).to.equal(200);
  expect(result.headers["content-type"]).to.equal("application/grpc");
  expect(result.headers["grpc-status"], JSON.stringify(result.headers)).to.equal(String(code));
  expect(result.trailers, "trailers-only: no separate trailers").to.equal(undefined);
  expect(result.data.length, "no message").to.equal(0);
  const raw = result.headers["grpc-message"];
  expect(raw).to.be.a("string");
  expect(raw as string).to.match(/^[\x20-\x7e]*$/, "grpc-message is printable ASCII (percent-encoded)");
  const decoded = decodeURIComponent(raw as string);
  if (message !== undefined) expect(decoded).to.equal(message);
  return decoded;
}

/** A successful unary answer: HTTP 200, one uncompressed message, trailers with grpc-status 0. */
function expectAnswer(result: RawResult): Summary {
  expect(result.headers[":status"], JSON.stringify(result.headers)).to.equal(200);
  expect(result.headers["content-type"]).to.equal("application/grpc");
  expect(result.headers["grpc-status"], "status comes in the trailers").to.equal(undefined);
  expect(result.trailers?.["grpc-status"], JSON.stringify(result.trailers)).to.equal("0");
  expect(result.data.length).to.be.greaterThan(5);
  expect(result.data[0], "compressed flag").to.equal(0);
  expect(result.data.readUInt32BE(1), "length prefix").to.equal(result.data.length - 5);
  return summarize(decodeCheckResponse(result.data.subarray(5)));
}

async function connect(port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}

function closeSession(session: http2.ClientHttp2Session | undefined): Promise<void> {
  if (!session || session.destroyed) return Promise.resolve();
  return new Promise((resolve) => session.close(() => resolve()));
}

/* ---- raw HTTP/2 frames (for the GOAWAY handshake, which node:http2's client hides) */

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;
const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** HPACK: every header as a literal without indexing, new name, no Huffman coding. */
function hpack(headers: [string, string][]): Buffer {
  const out: number[] = [];
  const integer = (value: number) => {
    if (value < 127) return void out.push(value);
    out.push(127);
    value -= 127;
    while (value >= 128) {
      out.push((value & 0x7f) | 0x80);
      value >>>= 7;
    }
    out.push(value);
  };
  const literal = (text: string) => {
    const bytes = Buffer.from(text, "latin1");
    integer(bytes.length);
    out.push(...bytes);
  };
  for (const [name, value] of headers) {
    out.push(0x00);
    literal(name);
    literal(value);
  }
  return Buffer.from(out);
}

class FrameClient {
  readonly frames: Frame[] = [];
  private pending = Buffer.alloc(0);
  private listeners: (() => void)[] = [];
  closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
      this.notify();
    });
  }

  static async connect(port: number): Promise<FrameClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    const client = new FrameClient(socket);
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    client.send(FRAME.SETTINGS, 0, 0, Buffer.alloc(0));
    return client;
  }

  send(type: number, flags: number, streamId: number, payload: Buffer): void {
    const header = Buffer.alloc(9);
    header.writeUIntBE(payload.length, 0, 3);
    header[3] = type;
    header[4] = flags;
    header.writeUInt32BE(streamId, 5);
    this.socket.write(Buffer.concat([header, payload]));
  }

  /** A Check request's HEADERS frame. */
  headers(streamId: number, endStream = false): void {
    const block = hpack([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", CHECK_METHOD_PATH],
      [":authority", "127.0.0.1"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]);
    this.send(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), streamId, block);
  }

  data(streamId: number, payload: Buffer, endStream: boolean): void {
    this.send(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, payload);
  }

  private receive(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const frame = { type: this.pending[3]!, flags: this.pending[4]!, streamId: this.pending.readUInt32BE(5) & 0x7fffffff, payload: this.pending.subarray(9, 9 + length) };
      this.pending = this.pending.subarray(9 + length);
      this.frames.push(frame);
      if (frame.type === FRAME.SETTINGS && !(frame.flags & FLAG.ACK)) this.send(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0));
      if (frame.type === FRAME.PING && !(frame.flags & FLAG.ACK)) this.send(FRAME.PING, FLAG.ACK, 0, frame.payload);
    }
    this.notify();
  }

  private notify(): void {
    for (const listener of this.listeners.splice(0)) listener();
  }

  /** The first frame (received so far or later) that matches. */
  async waitFor(match: (frame: Frame) => boolean, what: string): Promise<Frame> {
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (this.closed) throw new Error(`connection closed before ${what}`);
      await new Promise<void>((resolve) => this.listeners.push(resolve));
    }
  }

  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.listeners.push(resolve));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/* ------------------------------------------------------------------ tests */

describe("ext_authz gRPC server (node:http2): protocol", function () {
  this.timeout(60_000);
  const observed = new ObservedStore();
  let server: ExtAuthzServer;
  let small: ExtAuthzServer;
  let session: http2.ClientHttp2Session;
  let client: grpc.Client;

  before(async () => {
    await writeScope(observed.store, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", { accepts: { apiKey: { in: "query", name: "apikey" } } }), {
      apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
    });
    server = await createExtAuthzServer({ store: observed.store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
    small = await createExtAuthzServer({ store: observed.store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1", maxMessageBytes: MAX_SMALL } });
    client = grpcClient(server.port);
  });

  beforeEach(async () => {
    session = await connect(server.port);
  });

  afterEach(async () => {
    await closeSession(session);
  });

  after(async () => {
    client?.close();
    await server?.close(1000);
    await small?.close(1000);
  });

  describe("with @grpc/grpc-js through the Envoy service definition", () => {
    it("answers allowed and denied checks", async () => {
      const allowed = await grpcCheck(client, allowedRequest("grpcjs-allowed-1"));
      expect(allowed.error).to.equal(undefined);
      expectAllowed(summarize(allowed.response!), "grpcjs-allowed-1");
      const denied = await grpcCheck(client, deniedRequest("grpcjs-denied-1"));
      expect(denied.error).to.equal(undefined);
      expectDenied(summarize(denied.response!), "grpcjs-denied-1");
    });

    it("an unknown method is UNIMPLEMENTED, naming the method (percent-encoding round trip)", async () => {
      const path = "/envoy.service.auth.v3.Authorization/Chëck%20100%";
      const { error } = await grpcRaw(client, path, requestBytes(allowedRequest("x")));
      expect(error?.code).to.equal(grpc.status.UNIMPLEMENTED);
      expect(error?.details).to.equal(`The server does not implement the method ${path}`);
      expect((await grpcCheck(client, allowedRequest("after-unknown"))).response, "the channel still works").to.not.equal(undefined);
    });

    it("bytes that are not a CheckRequest are INTERNAL; the same channel keeps working", async () => {
      const { error } = await grpcRaw(client, CHECK_METHOD_PATH, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      expect(error?.code).to.equal(grpc.status.INTERNAL);
      expect(error?.details).to.match(/^Error deserializing request: malformed CheckRequest: /);
      const again = await grpcCheck(client, allowedRequest("after-garbage"));
      expectAllowed(summarize(again.response!), "after-garbage");
    });

    it("a header name or value, path or host that is not valid UTF-8 is a 400 decision, not a gRPC error", async () => {
      // HTTP lets a client send any octet in a header value, and Envoy forwards it as it came.
      const withBytes = (request: SimpleCheckRequest, bad: number[]): Buffer => {
        const bytes = requestBytes(request);
        expect(bytes.indexOf("zqzq")).to.be.greaterThan(-1);
        for (let at = bytes.indexOf("zqzq"); at !== -1; at = bytes.indexOf("zqzq", at)) Buffer.from(bad).copy(bytes, at); // also in :path, :authority
        return bytes;
      };
      const cases: [string, Buffer, string][] = [
        ["header value", withBytes({ ...allowedRequest("utf8-1"), headers: { "x-request-id": "utf8-1", "x-note": "azqzqb" } }, [0x61, 0xff, 0xfe, 0x62]), "I400HV"],
        ["header name", withBytes({ ...allowedRequest("utf8-2"), headers: { "x-request-id": "utf8-2", "x-zqzq": "v" } }, [0xc3, 0x28, 0xc0, 0x80]), "I400HV"],
        ["path", withBytes({ ...allowedRequest("utf8-3"), path: `/bookszqzq?apikey=${API_KEY}` }, [0xed, 0xa0, 0x80, 0x41]), "I400RU"],
        ["host", withBytes({ ...allowedRequest("utf8-4"), host: "azqzq.example" }, [0xf8, 0x88, 0x80, 0x80]), "I400HV"],
      ];
      for (const [what, bytes, code] of cases) {
        const { response, error } = await grpcRaw(client, CHECK_METHOD_PATH, bytes);
        expect(error, what).to.equal(undefined);
        const summary = summarize(response!);
        expect(summary.allowed, what).to.equal(false);
        expect(summary.status, what).to.equal(400);
        expect(summary.grpcCode, what).to.equal(7); // PERMISSION_DENIED for a 4xx decision
        expect(JSON.parse(summary.body!).code, what).to.equal(code);
        expect(summary.deniedHeaders["x-ca-error-code"], what).to.equal(code);
      }
      // A text body that is not valid UTF-8 is taken as bytes (as raw_body is): the key still decides.
      const body = withBytes({ ...allowedRequest("utf8-5"), method: "POST", body: "zqzq" }, [0xff, 0x00, 0xfe, 0x80]);
      expectAllowed(summarize((await grpcRaw(client, CHECK_METHOD_PATH, body)).response!), "utf8-5");
    });

    it("a gzip-compressed call is UNIMPLEMENTED", async () => {
      const gzip = grpcClient(server.port, { "grpc.default_compression_algorithm": 2 });
      try {
        const { error } = await grpcCheck(gzip, allowedRequest("gzip"));
        expect(error?.code).to.equal(grpc.status.UNIMPLEMENTED);
        expect(error?.details).to.equal('Received message compressed with unsupported encoding "gzip"');
      } finally {
        gzip.close();
      }
    });

    it("a message of exactly the limit is answered; one byte more is RESOURCE_EXHAUSTED", async () => {
      const sized = (size: number) => {
        for (let pad = size - 100; pad > 0; pad--) {
          const bytes = requestBytes({ ...allowedRequest("sized"), headers: { "x-request-id": "sized", "x-pad": "p".repeat(pad) } });
          if (bytes.length === size) return bytes;
        }
        throw new Error(`no request of ${size} bytes`);
      };
      const smallClient = grpcClient(small.port);
      try {
        const atLimit = await grpcRaw(smallClient, CHECK_METHOD_PATH, sized(MAX_SMALL));
        expect(atLimit.error).to.equal(undefined);
        expectAllowed(summarize(atLimit.response!), "sized");
        const over = await grpcRaw(smallClient, CHECK_METHOD_PATH, sized(MAX_SMALL + 1));
        expect(over.error?.code).to.equal(grpc.status.RESOURCE_EXHAUSTED);
        expect(over.error?.details).to.equal(`Received message larger than max (${MAX_SMALL + 1} vs. ${MAX_SMALL})`);
        const after = await grpcCheck(smallClient, allowedRequest("after-over"));
        expectAllowed(summarize(after.response!), "after-over");
      } finally {
        smallClient.close();
      }
    });

    it("300 concurrent calls on one channel are each answered with their own decision", async () => {
      const ids = Array.from({ length: 300 }, (_, i) => `grpcjs-${i}`);
      const results = await Promise.all(ids.map((id, i) => grpcCheck(client, i % 3 === 0 ? deniedRequest(id) : allowedRequest(id))));
      results.forEach((result, i) => {
        expect(result.error, ids[i]).to.equal(undefined);
        if (i % 3 === 0) expectDenied(summarize(result.response!), ids[i]!);
        else expectAllowed(summarize(result.response!), ids[i]!);
      });
    });
  });

  describe("with raw node:http2 streams", () => {
    it("answers with HTTP 200, one uncompressed message and grpc-status 0 in the trailers", async () => {
      const result = await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("raw-1")))] });
      expectAllowed(expectAnswer(result), "raw-1");
      const denied = await rawCall(session, { chunks: [grpcFrame(requestBytes(deniedRequest("raw-2")))], headers: { "content-type": "application/grpc+proto", "grpc-encoding": "identity" } });
      expectDenied(expectAnswer(denied), "raw-2");
    });

    it("a content type that is not application/grpc is HTTP 415 with no gRPC status", async () => {
      const before = observed.lookedUp.length;
      for (const contentType of ["text/plain", "application/json", "application/grp", undefined]) {
        const result = await rawCall(session, { headers: { "content-type": contentType }, chunks: [grpcFrame(requestBytes(allowedRequest("ct")))] });
        expect(result.headers[":status"], String(contentType)).to.equal(415);
        expect(result.headers["grpc-status"], String(contentType)).to.equal(undefined);
        expect(result.data.length).to.equal(0);
      }
      expect(observed.lookedUp.length, "no check ran").to.equal(before);
    });

    it("an unknown path is UNIMPLEMENTED with the path percent-encoded in grpc-message (cut at 1024 characters)", async () => {
      const path = "/envoy.service.auth.v3.Authorization/Nope/ü%";
      const result = await rawCall(session, { path, chunks: [grpcFrame(requestBytes(allowedRequest("np")))] });
      expectGrpcError(result, 12, `The server does not implement the method ${path}`);
      expect(result.headers["grpc-message"]).to.equal("The server does not implement the method /envoy.service.auth.v3.Authorization/Nope/%C3%BC%25");
      const long = "/" + "x".repeat(3000);
      const cut = expectGrpcError(await rawCall(session, { path: long, chunks: [] }), 12);
      expect(cut).to.equal(`The server does not implement the method ${long}`.slice(0, 1024));
      const percent = await rawCall(session, { path: "/a%b/100%" });
      expectGrpcError(percent, 12, "The server does not implement the method /a%b/100%");
      expect(percent.headers["grpc-message"], "a % alone is encoded too").to.equal("The server does not implement the method /a%25b/100%25");
      const plain = await rawCall(session, { path: "/envoy.service.auth.v3.Authorization/Other" });
      expect(plain.headers["grpc-message"], "printable ASCII is sent as is").to.equal("The server does not implement the method /envoy.service.auth.v3.Authorization/Other");
    });

    it("grpc-encoding other than identity is UNIMPLEMENTED with grpc-accept-encoding: identity", async () => {
      const message = grpcFrame(requestBytes(allowedRequest("enc")));
      const gzip = await rawCall(session, { headers: { "grpc-encoding": "gzip" }, chunks: [message] });
      expectGrpcError(gzip, 12, 'Received message compressed with unsupported encoding "gzip"');
      expect(gzip.headers["grpc-accept-encoding"]).to.equal("identity");
      const odd = await rawCall(session, { headers: { "grpc-encoding": "gz%ip-ü\tx" }, chunks: [message] });
      expectGrpcError(odd, 12, 'Received message compressed with unsupported encoding "gz%ip-ü\tx"');
      expect(odd.headers["grpc-message"]).to.equal("Received message compressed with unsupported encoding \"gz%25ip-%C3%BC%09x\"");
      expectAllowed(expectAnswer(await rawCall(session, { headers: { "grpc-encoding": "identity" }, chunks: [message] })), "enc");
    });

    it("a length prefix over the limit is RESOURCE_EXHAUSTED at once, without waiting for the message", async () => {
      // 1 GiB announced, nothing of it sent, the stream left open: only the prefix can have decided.
      const prefix = Buffer.from([0, 0x40, 0, 0, 0]);
      const result = await rawCall(session, { chunks: [prefix], end: false });
      expectGrpcError(result, 8, `Received message larger than max (1073741824 vs. ${8 * 1024 * 1024})`);
      expect(result.rstCode, "closed with NO_ERROR").to.equal(http2.constants.NGHTTP2_NO_ERROR);
      // The prefix in two pieces, on the small server, followed by more than it allows.
      const smallSession = await connect(small.port);
      try {
        const split = await rawCall(smallSession, { chunks: [Buffer.from([0, 0, 0]), Buffer.from([0x10, 0x01]), Buffer.alloc(MAX_SMALL)], end: false });
        expectGrpcError(split, 8, `Received message larger than max (${MAX_SMALL + 1} vs. ${MAX_SMALL})`);
        expectAllowed(expectAnswer(await rawCall(smallSession, { chunks: [grpcFrame(requestBytes(allowedRequest("small-after")))] })), "small-after");
      } finally {
        await closeSession(smallSession);
      }
      expectAllowed(expectAnswer(await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("after-8")))] })), "after-8");
    });

    it("no message, a cut-short message and a second message are UNIMPLEMENTED", async () => {
      const message = grpcFrame(requestBytes(allowedRequest("two")));
      const before = observed.lookedUp.length;
      expectGrpcError(await rawCall(session, {}), 12, "Received no request message for server unary call");
      expectGrpcError(await rawCall(session, { chunks: [message.subarray(0, 3)] }), 12, "Received no request message for server unary call");
      expectGrpcError(await rawCall(session, { chunks: [message.subarray(0, message.length - 1)] }), 12, "Received no request message for server unary call");
      expectGrpcError(await rawCall(session, { chunks: [Buffer.concat([message, message])] }), 12, "Received a second request message for server unary call");
      expectGrpcError(await rawCall(session, { chunks: [Buffer.concat([message, Buffer.from([0])])] }), 12, "Received a second request message for server unary call");
      // The second message in a later DATA frame, after the first one is complete.
      const { stream, result } = openStream(session, { chunks: [message], end: false });
      await new Promise((resolve) => setImmediate(resolve));
      stream.end(message);
      expectGrpcError(await result, 12, "Received a second request message for server unary call");
      expect(observed.lookedUp.length, "no check ran").to.equal(before);
    });

    it("garbage bytes are INTERNAL for that call only; calls beside it on the same connection are answered", async () => {
      const calls = [
        rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("beside-1")))] }),
        rawCall(session, { chunks: [grpcFrame(Buffer.from([0x0a, 0x05, 0x12, 0x03, 0x47, 0x45]))] }),
        rawCall(session, { chunks: [grpcFrame(requestBytes(deniedRequest("beside-2")))] }),
        rawCall(session, { chunks: [grpcFrame(Buffer.from([0x0a, 0x03, 0x22, 0x01, 0x12, 0x02, 0xc3]))] }), // invalid UTF-8 after a bad length
        rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("compressed")), 1)] }),
        rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("beside-3")))] }),
      ];
      const [ok1, garbage, denied, garbage2, compressed, ok3] = await Promise.all(calls);
      expectAllowed(expectAnswer(ok1!), "beside-1");
      expect(expectGrpcError(garbage!, 13)).to.match(/^Error deserializing request: malformed CheckRequest: length past the end of the message at byte \d+$/);
      expectDenied(expectAnswer(denied!), "beside-2");
      expect(expectGrpcError(garbage2!, 13)).to.match(/^Error deserializing request: malformed CheckRequest: /);
      expectGrpcError(compressed!, 13, "Received a compressed message without grpc-encoding");
      expectAllowed(expectAnswer(ok3!), "beside-3");
      expect(session.destroyed || session.closed, "the connection is still open").to.equal(false);
      expectAllowed(expectAnswer(await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("after-13")))] })), "after-13");
    });

    it("a call the client resets while its check runs is dropped; the connection keeps working", async () => {
      const hold = observed.hold("reset-while-held");
      const { stream, result } = openStream(session, { chunks: [grpcFrame(requestBytes(allowedRequest("reset", "reset-while-held")))] });
      await hold.reached;
      stream.close(http2.constants.NGHTTP2_CANCEL);
      const reset = await result;
      expect(reset.rstCode).to.equal(http2.constants.NGHTTP2_CANCEL);
      expect(reset.headers[":status"]).to.equal(undefined);
      hold.release(); // the answer has nowhere to go
      expectAllowed(expectAnswer(await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("after-reset")))] })), "after-reset");
      expect(session.destroyed || session.closed).to.equal(false);
    });

    it("reassembles a message sent one byte per DATA frame", async () => {
      const message = grpcFrame(requestBytes(allowedRequest("bytewise")));
      const chunks = Array.from(message, (byte) => Buffer.from([byte]));
      expectAllowed(expectAnswer(await rawCall(session, { chunks })), "bytewise");
    });

    it("500 concurrent calls on one connection are each answered with their own decision", async () => {
      const ids = Array.from({ length: 500 }, (_, i) => `h2-${i}`);
      const results = await Promise.all(
        ids.map((id, i) => rawCall(session, { chunks: [grpcFrame(requestBytes(i % 3 === 0 ? deniedRequest(id) : allowedRequest(id)))] })),
      );
      results.forEach((result, i) => {
        const summary = expectAnswer(result);
        if (i % 3 === 0) expectDenied(summary, ids[i]!);
        else expectAllowed(summary, ids[i]!);
      });
    });
  });
});

describe("ext_authz gRPC server (node:http2): connections bounded in time", function () {
  this.timeout(30_000);
  const observed = new ObservedStore();
  let server: ExtAuthzServer;

  before(async () => {
    await writeScope(observed.store, TEST_MASTER_KEY, scopeConfig(API, "RELEASE", { accepts: { apiKey: { in: "query", name: "apikey" } } }), {
      apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
    });
    server = await createExtAuthzServer({
      store: observed.store,
      masterKey: TEST_MASTER_KEY,
      options: { port: 0, host: "127.0.0.1", firstRequestTimeoutMs: 300, idleTimeoutMs: 1500 },
    });
  });

  after(async () => {
    await server?.close(100);
  });

  /** Resolves when the server closes the socket (read on, so that its end is seen). */
  const closedByServer = (socket: net.Socket) =>
    new Promise<void>((resolve) => {
      socket.once("close", () => resolve());
      socket.resume();
    });

  it("closes a TCP connection that never sends a byte", async () => {
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    await closedByServer(socket); // the test times out if the server never closes it
    expect(socket.destroyed).to.equal(true);
  });

  it("closes a connection that sends half of the HTTP/2 preface, and one that completes it but never starts a call", async () => {
    const half = net.connect(server.port, "127.0.0.1");
    half.on("error", () => {});
    await new Promise<void>((resolve) => half.once("connect", () => resolve()));
    half.write("PRI * HTTP/2.0\r\n");
    await closedByServer(half);

    const session = await connect(server.port);
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    expect(session.destroyed).to.equal(true);
  });

  it("keeps a connection that started a call past that bound, and sends GOAWAY once it has been idle", async () => {
    const session = await connect(server.port);
    let goaway = false;
    session.once("goaway", () => (goaway = true));
    try {
      expectAllowed(expectAnswer(await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("bounded-1")))] })), "bounded-1");
      await new Promise((resolve) => setTimeout(resolve, 600)); // twice the first-request bound, well within the idle one
      expect(session.closed || session.destroyed, "closed after its first call").to.equal(false);
      expectAllowed(expectAnswer(await rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("bounded-2")))] })), "bounded-2");
      await new Promise<void>((resolve) => (goaway ? resolve() : session.once("goaway", () => resolve())));
      expect(goaway).to.equal(true);
    } finally {
      session.destroy();
    }
  });
});

describe("ext_authz gRPC server (node:http2): graceful close", function () {
  this.timeout(60_000);
  let observed: ObservedStore;
  let server: ExtAuthzServer;

  beforeEach(async () => {
    observed = new ObservedStore();
    for (const api of [API, "held", "after-goaway", "stuck"]) {
      await writeScope(observed.store, TEST_MASTER_KEY, scopeConfig(api, "RELEASE", { accepts: { apiKey: { in: "query", name: "apikey" } } }), {
        apiKeys: [{ raw: API_KEY, key: { name: "k", status: "active", expiresAt: null } }],
      });
    }
    server = await createExtAuthzServer({ store: observed.store, masterKey: TEST_MASTER_KEY, options: { port: 0, host: "127.0.0.1" } });
  });

  afterEach(async () => {
    await server?.close(100);
  });

  it("sends GOAWAY, lets the call in flight finish, ignores streams opened after it, then closes (raw frames)", async () => {
    const frames = await FrameClient.connect(server.port);
    try {
      // Stream 1: the message sent, the stream not ended yet (the call is in flight).
      frames.headers(1);
      frames.data(1, grpcFrame(requestBytes(allowedRequest("in-flight"))), false);
      await frames.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0, "the SETTINGS ACK");
      let closed = false;
      const closing = server.close(10_000).then(() => (closed = true));
      const goaway = await frames.waitFor((f) => f.type === FRAME.GOAWAY, "GOAWAY");
      expect(goaway.payload.readUInt32BE(0) & 0x7fffffff, "last stream id").to.equal(1);
      expect(goaway.payload.readUInt32BE(4), "error code NO_ERROR").to.equal(0);
      // Stream 3, opened after the GOAWAY: must not be processed.
      frames.headers(3);
      frames.data(3, grpcFrame(requestBytes(allowedRequest("after", "after-goaway"))), true);
      // Now the in-flight call ends; its answer comes, then the connection closes.
      frames.data(1, Buffer.alloc(0), true);
      const trailers = await frames.waitFor((f) => f.streamId === 1 && f.type === FRAME.HEADERS && (f.flags & FLAG.END_STREAM) !== 0, "the answer's trailers");
      expect(trailers).to.not.equal(undefined);
      const answer = Buffer.concat(frames.frames.filter((f) => f.streamId === 1 && f.type === FRAME.DATA).map((f) => f.payload));
      expect(answer[0]).to.equal(0);
      expect(answer.readUInt32BE(1)).to.equal(answer.length - 5);
      expectAllowed(summarize(decodeCheckResponse(answer.subarray(5))), "in-flight");
      await frames.waitClosed();
      await closing;
      expect(closed).to.equal(true);
      expect(frames.frames.filter((f) => f.streamId === 3 && (f.type === FRAME.HEADERS || f.type === FRAME.DATA)), "no answer on stream 3").to.deep.equal([]);
      expect(observed.lookedUp, "stream 3 was never checked").to.not.include("after-goaway");
      expect(observed.lookedUp).to.include(API);
      expect(await refusesConnections(server.port), "new connections are refused").to.equal(true);
    } finally {
      frames.destroy();
    }
  });

  it("a check waiting on the store when close starts still gets its answer; a stream opened meanwhile is refused", async () => {
    const session = await connect(server.port);
    const goaways: [number, number][] = [];
    session.on("goaway", (code, lastStreamId) => goaways.push([code, lastStreamId]));
    const hold = observed.hold("held");
    const inFlight = rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("held-1", "held")))] });
    await hold.reached;
    let closed = false;
    const closing = server.close(10_000).then(() => (closed = true));
    // Opened in the same turn, before the client has read the GOAWAY: the server must not take it.
    const late = rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("late", "after-goaway")))] });
    const lateResult = await late;
    expect(lateResult.rstCode, "refused").to.equal(http2.constants.NGHTTP2_REFUSED_STREAM);
    expect(lateResult.headers[":status"]).to.equal(undefined);
    expect(goaways[0]).to.deep.equal([0, 1]);
    expect(closed, "close waits for the call in flight").to.equal(false);
    hold.release();
    expectAllowed(expectAnswer(await inFlight), "held-1");
    await closing;
    expect(observed.lookedUp).to.not.include("after-goaway");
    expect(await refusesConnections(server.port)).to.equal(true);
    await closeSession(session);
  });

  it("with @grpc/grpc-js: the call in flight is answered, a call after close fails UNAVAILABLE", async () => {
    const grpcjs = grpcClient(server.port);
    try {
      expectAllowed(summarize((await grpcCheck(grpcjs, allowedRequest("warm"))).response!), "warm");
      const hold = observed.hold("held");
      const inFlight = grpcCheck(grpcjs, allowedRequest("held-2", "held"));
      await hold.reached;
      const closing = server.close(10_000);
      hold.release();
      const answered = await inFlight;
      expect(answered.error).to.equal(undefined);
      expectAllowed(summarize(answered.response!), "held-2");
      await closing;
      const after = await grpcCheck(grpcjs, allowedRequest("after-close"));
      expect(after.error?.code).to.equal(grpc.status.UNAVAILABLE);
    } finally {
      grpcjs.close();
    }
  });

  it("when the grace period runs out, what is left is closed and close() resolves", async () => {
    const session = await connect(server.port);
    const hold = observed.hold("stuck");
    const stuck = rawCall(session, { chunks: [grpcFrame(requestBytes(allowedRequest("stuck-1", "stuck")))] });
    await hold.reached;
    await server.close(200);
    const result = await stuck;
    expect(result.headers[":status"], "no answer").to.equal(undefined);
    expect(result.data.length).to.equal(0);
    expect(session.destroyed, "the connection was closed by the server").to.equal(true);
    hold.release(); // the check finishes into a closed stream: nothing breaks
    await new Promise((resolve) => setImmediate(resolve));
    expect(await refusesConnections(server.port)).to.equal(true);
  });
});

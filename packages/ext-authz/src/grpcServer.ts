import * as http2 from "node:http2";
import type { Logger } from "pino";

/*
 * A unary gRPC server for exactly one method, directly on node:http2.
 *
 * Why not @grpc/grpc-js: for a call that does little work, grpc-js's per-call machinery (an
 * intercepting call object, metadata conversion, a stream decoder, promise-based message queue,
 * listener objects) costs more CPU than Node's HTTP/2 stream itself; ext_authz answers one small
 * unary method at high rates, so that overhead was a large part of a check's cost. This is the
 * gRPC-over-HTTP/2 protocol for that one case:
 *
 * - request: `POST <path>`, `content-type: application/grpc[+proto]` (else HTTP 415, as grpc-js),
 *   one length-prefixed message (flag byte 0: uncompressed; `grpc-encoding` other than identity is
 *   answered UNIMPLEMENTED with `grpc-accept-encoding: identity`, as the spec asks), at most
 *   `maxMessageBytes` (else RESOURCE_EXHAUSTED, checked on the length prefix before buffering);
 *   no message or a second message is UNIMPLEMENTED, as grpc-js answers a unary call;
 * - an unknown path is UNIMPLEMENTED; bytes that do not decode are INTERNAL for that call only;
 * - response: HTTP 200, `content-type: application/grpc`, one message, trailers with
 *   `grpc-status: 0`; errors are trailers-only responses with `grpc-status` and a percent-encoded
 *   `grpc-message`;
 * - `grpc-timeout` is not enforced here: a check ends within the store's command timeout, and the
 *   client (Envoy) enforces its own timeout by resetting the stream, after which the answer is
 *   dropped;
 * - HTTP/2 flow control, PING and SETTINGS are Node's; `close(graceMs)` stops accepting
 *   connections, sends GOAWAY on every open connection, lets calls in flight finish and destroys
 *   what is left after the grace period;
 * - connections are bounded in time: one that has not started a call within
 *   `firstRequestTimeoutMs` of connecting (a TCP connection that sends nothing, or no complete
 *   HTTP/2 preface) is destroyed; one with no traffic at all for `idleTimeoutMs` gets GOAWAY
 *   (calls in flight finish; a client such as Envoy simply opens a new connection) and is
 *   destroyed if it is still open `firstRequestTimeoutMs` later.
 */

/** gRPC status codes used here. */
export const GrpcStatus = { OK: 0, UNIMPLEMENTED: 12, INTERNAL: 13, RESOURCE_EXHAUSTED: 8 } as const;

export interface UnaryMethod<Request, Response> {
  /** `/package.Service/Method` */
  path: string;
  /** Bytes → request; throws for bytes that are not a request (INTERNAL for that call). */
  decode(bytes: Buffer): Request;
  /** The answer; a rejection is INTERNAL for that call (the handler is expected not to reject). */
  handle(request: Request): Promise<Response>;
  /**
   * Response → a gRPC frame: the message after 5 bytes left for the frame header (compressed
   * flag and length), which the server writes. Saves copying every response once more.
   */
  encodeFrame(response: Response): Buffer;
}

export interface UnaryServerOptions {
  /** Largest request message accepted (bytes). */
  maxMessageBytes: number;
  /** A connection that has not started a call this long after connecting is closed (ms; default 10 s, 0 = never). */
  firstRequestTimeoutMs?: number;
  /** A connection without any traffic this long is closed with GOAWAY (ms; default 5 min, 0 = never). */
  idleTimeoutMs?: number;
  logger?: Logger;
}

export interface UnaryServer {
  listen(port: number, host: string): Promise<number>;
  /** Stops accepting, lets calls in flight finish for up to `graceMs`, then closes what is left. */
  close(graceMs: number): Promise<void>;
}

const RESPONSE_HEADERS = {
  [http2.constants.HTTP2_HEADER_STATUS]: 200,
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
};
const OK_TRAILERS = { "grpc-status": "0" };

/** grpc-message: percent-encoded UTF-8 outside printable ASCII, and `%` itself (the gRPC spec). */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function respondError(stream: http2.ServerHttp2Stream, code: number, message: string, extra?: http2.OutgoingHttpHeaders): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(
      { ...RESPONSE_HEADERS, ...extra, "grpc-status": String(code), "grpc-message": encodeGrpcMessage(message.slice(0, 1024)) },
      { endStream: true },
    );
  } catch {
    // The stream went away meanwhile: nothing to answer.
  }
}

/** Sends `frame` (5 bytes reserved for the gRPC frame header, then the message) and status OK. */
function respond(stream: http2.ServerHttp2Stream, frame: Buffer): void {
  if (stream.destroyed || stream.headersSent) return;
  frame[0] = 0;
  frame.writeUInt32BE(frame.length - 5, 1);
  try {
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once("wantTrailers", () => {
      try {
        stream.sendTrailers(OK_TRAILERS);
      } catch {
        // reset by the client meanwhile
      }
    });
    stream.end(frame);
  } catch {
    // The stream went away meanwhile: nothing to answer.
  }
}

function ignore(): void {}

/** Set on a connection's socket once it has started a call. */
const CALL_STARTED = Symbol("callStarted");

export function createUnaryServer<Request, Response>(method: UnaryMethod<Request, Response>, options: UnaryServerOptions): UnaryServer {
  const { maxMessageBytes, logger } = options;
  const firstRequestTimeoutMs = options.firstRequestTimeoutMs ?? 10_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
  const server = http2.createServer({
    // As grpc-js: no per-session memory cap (a request may be up to maxMessageBytes) and no cap
    // on the size of response header blocks.
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
    maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
  });
  // No Nagle: an answer is a few small frames; held back until the client's delayed ACK (up to
  // 40 ms on Linux) they would dominate the latency. A connection that never starts a call (no
  // preface, no stream) is closed after firstRequestTimeoutMs: the timer is on the socket, since
  // Node creates the session only once the client's preface has arrived.
  server.on("connection", (socket: import("node:net").Socket) => {
    socket.setNoDelay(true);
    if (firstRequestTimeoutMs > 0) {
      const timer = setTimeout(() => {
        if (!(socket as unknown as Record<symbol, boolean>)[CALL_STARTED]) socket.destroy();
      }, firstRequestTimeoutMs);
      timer.unref();
      socket.once("close", () => clearTimeout(timer));
    }
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  let accepting = true;

  server.on("session", (session) => {
    if (!accepting) {
      session.destroy();
      return;
    }
    sessions.add(session);
    session.on("error", ignore);
    session.once("close", () => sessions.delete(session));
    if (idleTimeoutMs > 0) {
      // No traffic at all for idleTimeoutMs: GOAWAY (calls in flight finish), then destroyed.
      session.setTimeout(idleTimeoutMs, () => {
        if (session.closed || session.destroyed) return;
        session.close();
        const timer = setTimeout(() => session.destroy(), Math.max(firstRequestTimeoutMs, 1000));
        timer.unref();
        session.once("close", () => clearTimeout(timer));
      });
    }
  });
  server.on("sessionError", ignore);

  server.on("stream", (stream, headers) => {
    // Errors (a reset from the client, a broken connection) end the call; nothing to answer.
    stream.on("error", ignore);
    // Marks the connection's socket (session.socket is a proxy that sets properties on it).
    const socket = stream.session?.socket as unknown as Record<symbol, boolean> | undefined;
    if (socket && !socket[CALL_STARTED]) socket[CALL_STARTED] = true;
    const contentType = headers[http2.constants.HTTP2_HEADER_CONTENT_TYPE];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) {
      try {
        stream.respond({ [http2.constants.HTTP2_HEADER_STATUS]: http2.constants.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
      } catch {
        // gone
      }
      return;
    }
    const path = headers[http2.constants.HTTP2_HEADER_PATH];
    if (path !== method.path) {
      respondError(stream, GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${String(path)}`);
      return;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      respondError(stream, GrpcStatus.UNIMPLEMENTED, `Received message compressed with unsupported encoding "${String(encoding)}"`, {
        "grpc-accept-encoding": "identity",
      });
      return;
    }

    let first: Buffer | undefined;
    let chunks: Buffer[] | undefined;
    let received = 0;
    /** 5 + the message length, once the length prefix has arrived. */
    let expected = -1;
    let failed = false;
    stream.on("data", (chunk: Buffer) => {
      if (failed) return;
      if (first === undefined) first = chunk;
      else (chunks ??= [first]).push(chunk);
      received += chunk.length;
      if (expected === -1 && received >= 5) {
        const length = (first.length >= 5 ? first : Buffer.concat(chunks!, received)).readUInt32BE(1);
        if (length > maxMessageBytes) {
          failed = true;
          respondError(stream, GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs. ${maxMessageBytes})`);
          stream.close(http2.constants.NGHTTP2_NO_ERROR); // the answer is sent: stop receiving the rest
          return;
        }
        expected = 5 + length;
      }
      if (expected !== -1 && received > expected) {
        failed = true;
        respondError(stream, GrpcStatus.UNIMPLEMENTED, "Received a second request message for server unary call");
        stream.close(http2.constants.NGHTTP2_NO_ERROR);
      }
    });
    stream.on("end", () => {
      if (failed) return;
      if (expected === -1 || received < expected) {
        respondError(stream, GrpcStatus.UNIMPLEMENTED, "Received no request message for server unary call");
        return;
      }
      const body = chunks ? Buffer.concat(chunks, received) : first!;
      if (body[0] !== 0) {
        respondError(stream, GrpcStatus.INTERNAL, "Received a compressed message without grpc-encoding");
        return;
      }
      let request: Request;
      try {
        request = method.decode(body.subarray(5));
      } catch (error) {
        respondError(stream, GrpcStatus.INTERNAL, `Error deserializing request: ${(error as Error).message}`);
        return;
      }
      method.handle(request).then(
        (response) => {
          let frame: Buffer;
          try {
            frame = method.encodeFrame(response);
          } catch (error) {
            logger?.error({ err: { message: (error as Error).message } }, "response cannot be encoded");
            respondError(stream, GrpcStatus.INTERNAL, "Error serializing response");
            return;
          }
          respond(stream, frame);
        },
        (error: unknown) => {
          logger?.error({ err: { message: (error as Error)?.message } }, "call failed unexpectedly");
          respondError(stream, GrpcStatus.INTERNAL, "Internal error");
        },
      );
    });
  });

  let closing: Promise<void> | undefined;
  return {
    listen(port, host) {
      return new Promise<number>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const address = server.address();
          resolve(typeof address === "object" && address ? address.port : port);
        });
      });
    },
    close(graceMs) {
      closing ??= new Promise<void>((resolve) => {
        accepting = false;
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
          finish();
        }, graceMs);
        timer.unref();
        // No new connections; GOAWAY on the open ones (calls in flight finish, no new ones start).
        server.close(() => finish());
        for (const session of sessions) session.close();
      });
      return closing;
    },
  };
}

import { isUtf8 } from "node:buffer";
import type { AllowDecision, CheckInput, Decision } from "./check";

/*
 * The hot path's protobuf codec: CheckRequest bytes straight to a CheckInput, and a Decision
 * straight to CheckResponse bytes, without building generic @bufbuild/protobuf messages (which
 * cost more than the whole decision on a busy server). The generic path in protocol.ts
 * (`decodeCheckRequest` + `checkInputOf`, `checkResponseOf` + `encodeCheckResponse`) gives the
 * same CheckInput and a response of the same meaning. Both are held to Envoy's meaning
 * (test/unit/ext-authz-wire.test.ts): requests built with Envoy's descriptors, responses decoded
 * with them into proto3 JSON and compared with the documented shape.
 *
 * Reading is strict about everything it reads and structural about everything else:
 * - every tag, length and varint is checked (a tag is at most 5 bytes, field number > 0, wire type
 *   0-5; a length never runs past the enclosing message; groups are matched, 100 levels at most);
 * - a field that is read must have its declared wire type (length-delimited), and a string must be
 *   valid UTF-8 (proto3 `string`, as the generic decoder checks it): anything else throws, which
 *   the server turns into a gRPC error for that call only;
 * - except where the bytes are the client's, not Envoy's: header names and values (`headers`,
 *   `header_map`), `path` and `host` that are not valid UTF-8 (HTTP allows any octet there, and
 *   Envoy forwards them as they came) are decoded with U+FFFD and flagged (`invalidUtf8`), so
 *   that the check answers the client with a 400 instead of failing the call; a `body` that is not
 *   valid UTF-8 is taken as bytes, as `raw_body` is;
 * - fields the check does not use (destination, TLS session, metadata, request time, id, scheme,
 *   protocol, size, ...) are skipped after checking their framing only, without decoding them;
 * - protobuf merge semantics are kept: a repeated singular message merges into the earlier one, a
 *   later scalar or map entry replaces an earlier one, and of `Address`'s oneof the last one wins.
 *
 * Field numbers (envoy.service.auth.v3, envoy.config.core.v3, google.rpc, google.protobuf) are
 * checked against the Envoy descriptor set by `assertWireLayout()` at server start.
 */

/** Thrown for bytes that are not a well-formed CheckRequest. */
export class WireFormatError extends Error {}

const MAX_GROUP_DEPTH = 100;

/**
 * Buffer's own slice/write methods (what `toString(encoding, start, end)` and `write` call after
 * checking their arguments; the codec checks bounds itself). Fallbacks keep it working should a
 * Node version not have them.
 */
interface DirectBuffer {
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
  utf8Write(text: string, offset: number, length: number): number;
  latin1Write(text: string, offset: number, length: number): number;
}
const direct = Buffer.prototype as unknown as Partial<DirectBuffer>;
const latin1Slice: (buf: Buffer, start: number, end: number) => string =
  typeof direct.latin1Slice === "function" ? (buf, start, end) => (buf as unknown as DirectBuffer).latin1Slice(start, end) : (buf, start, end) => buf.toString("latin1", start, end);
const utf8Slice: (buf: Buffer, start: number, end: number) => string =
  typeof direct.utf8Slice === "function" ? (buf, start, end) => (buf as unknown as DirectBuffer).utf8Slice(start, end) : (buf, start, end) => buf.toString("utf8", start, end);
const latin1Write: (buf: Buffer, text: string, offset: number, length: number) => number =
  typeof direct.latin1Write === "function"
    ? (buf, text, offset, length) => (buf as unknown as DirectBuffer).latin1Write(text, offset, length)
    : (buf, text, offset, length) => buf.write(text, offset, length, "latin1");
const utf8Write: (buf: Buffer, text: string, offset: number, length: number) => number =
  typeof direct.utf8Write === "function"
    ? (buf, text, offset, length) => (buf as unknown as DirectBuffer).utf8Write(text, offset, length)
    : (buf, text, offset, length) => buf.write(text, offset, length, "utf8");
const lenientUtf8 = new TextDecoder("utf-8");

/*
 * The shapes of the messages read: every field of each message, with its kind. A field not in a
 * shape is unknown (skipped after checking its framing); a known field must come with its wire
 * type. Strings are checked for UTF-8 even where they are not used; OPAQUE fields (request
 * metadata, internal addresses, bytes) are length-delimited and not looked into. The shapes are
 * checked against the Envoy descriptor set at server start (protocol.ts `assertWireLayout`).
 */
export const VARINT = 0;
export const OPAQUE = 2;
export const STRING = 6;
export const STRING_MAP = 7;
export type FieldKind = typeof VARINT | typeof OPAQUE | typeof STRING | typeof STRING_MAP | MessageShape;
export interface MessageShape {
  typeName: string;
  fields: ReadonlyMap<number, FieldKind>;
}
const shape = (typeName: string, fields: [number, FieldKind][]): MessageShape => ({ typeName, fields: new Map(fields) });

const TIMESTAMP = shape("google.protobuf.Timestamp", [[1, VARINT], [2, VARINT]]);
const SOCKET_ADDRESS = shape("envoy.config.core.v3.SocketAddress", [[1, VARINT], [2, STRING], [3, VARINT], [4, STRING], [5, STRING], [6, VARINT]]);
const PIPE = shape("envoy.config.core.v3.Pipe", [[1, STRING], [2, VARINT]]);
const ADDRESS = shape("envoy.config.core.v3.Address", [[1, SOCKET_ADDRESS], [2, PIPE], [3, OPAQUE]]);
const PEER = shape("envoy.service.auth.v3.AttributeContext.Peer", [[1, ADDRESS], [2, STRING], [3, STRING_MAP], [4, STRING], [5, STRING]]);
const TLS_SESSION = shape("envoy.service.auth.v3.AttributeContext.TLSSession", [[1, STRING]]);
const HEADER_VALUE = shape("envoy.config.core.v3.HeaderValue", [[1, STRING], [2, STRING], [3, OPAQUE]]);
const HEADER_MAP = shape("envoy.config.core.v3.HeaderMap", [[1, HEADER_VALUE]]);
const HTTP_REQUEST = shape("envoy.service.auth.v3.AttributeContext.HttpRequest", [
  [1, STRING], [2, STRING], [3, STRING_MAP], [4, STRING], [5, STRING], [6, STRING], [7, STRING], [8, STRING],
  [9, VARINT], [10, STRING], [11, STRING], [12, OPAQUE], [13, HEADER_MAP],
]);
const REQUEST = shape("envoy.service.auth.v3.AttributeContext.Request", [[1, TIMESTAMP], [2, HTTP_REQUEST]]);
const ATTRIBUTES = shape("envoy.service.auth.v3.AttributeContext", [
  [1, PEER], [2, PEER], [4, REQUEST], [10, STRING_MAP], [11, OPAQUE], [12, TLS_SESSION], [13, OPAQUE],
]);
/** envoy.service.auth.v3.CheckRequest, as read by `readCheckInput`. */
export const CHECK_REQUEST_SHAPE = shape("envoy.service.auth.v3.CheckRequest", [[1, ATTRIBUTES]]);

/* ------------------------------------------------------------------ reading */

interface HeaderValueEntry {
  key: string;
  value: string;
  rawValue: Buffer | undefined;
}

/** What the CheckRequest says, accumulated while reading (merges as protobuf does). */
class Accumulated {
  method = "";
  path = "";
  host = "";
  /** `body`: text, or its bytes when they are not valid UTF-8. */
  body: string | Buffer = "";
  rawBody: Buffer | undefined = undefined;
  headers: Record<string, string> = Object.create(null);
  headersLowerCase = true;
  headerMap: HeaderValueEntry[] | undefined = undefined;
  /** Which case of the source Address oneof was seen last: 1 socket_address, other numbers the others. */
  addressCase = 0;
  sourceAddress = "";
  contextExtensions: Record<string, string> = Object.create(null);
  /** Client bytes that are not valid UTF-8 were seen in the path, in headers (or host). */
  invalidPath = false;
  invalidHeader = false;
  /** A `body` that was not valid UTF-8 was seen (even if a later one, or raw_body, is what is used). */
  bodyInvalid = false;
  flag(where: "header" | "path"): void {
    if (where === "path") this.invalidPath = true;
    else this.invalidHeader = true;
  }
}

/** Where a CheckRequest carried client bytes that are not valid UTF-8 (see CheckInput.invalidUtf8). */
export type InvalidUtf8 = "header" | "path" | "body";

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  fail(message: string): never {
    throw new WireFormatError(`malformed CheckRequest: ${message} at byte ${this.pos}`);
  }

  /** An unsigned varint of at most 5 bytes that fits 32 bits (tags and lengths). */
  uint32(end: number): number {
    const buf = this.buf;
    let pos = this.pos;
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= end) this.fail("truncated varint");
      const byte = buf[pos++]!;
      if (shift === 28 && byte > 0x0f) this.fail("varint overflows 32 bits");
      result += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        this.pos = pos;
        return result;
      }
    }
    return this.fail("varint overflows 32 bits");
  }

  /** Length of a length-delimited field, checked against the enclosing end. */
  length(end: number): number {
    const length = this.uint32(end);
    if (length > end - this.pos) this.fail("length past the end of the message");
    return length;
  }

  tag(end: number): number {
    const tag = this.uint32(end);
    if (tag >>> 3 === 0 || (tag & 7) > 5) this.fail(`illegal tag ${tag}`);
    return tag;
  }

  /** Skips the value of an unknown field after its tag, checking its framing. */
  skip(tag: number, end: number, depth = 0): void {
    switch (tag & 7) {
      case 0: {
        for (let i = 0; ; i++) {
          if (i === 10) this.fail("varint longer than 10 bytes");
          if (this.pos >= end) this.fail("truncated varint");
          if (this.buf[this.pos++]! < 0x80) break;
        }
        return;
      }
      case 1:
        if (end - this.pos < 8) this.fail("truncated fixed64");
        this.pos += 8;
        return;
      case 5:
        if (end - this.pos < 4) this.fail("truncated fixed32");
        this.pos += 4;
        return;
      case 2: {
        const length = this.length(end);
        this.pos += length;
        return;
      }
      case 3: {
        if (depth >= MAX_GROUP_DEPTH) this.fail("groups nested too deeply");
        for (;;) {
          const inner = this.tag(end);
          if ((inner & 7) === 4) {
            if (inner >>> 3 !== tag >>> 3) this.fail("unmatched end group");
            return;
          }
          this.skip(inner, end, depth + 1);
        }
      }
      default:
        this.fail(`unexpected wire type ${tag & 7}`);
    }
  }

  /** A field this reader does not use: known ones are checked by kind, unknown ones skipped. */
  other(tag: number, end: number, shape: MessageShape): void {
    const kind = shape.fields.get(tag >>> 3);
    if (kind === undefined) return this.skip(tag, end);
    if (kind === VARINT) {
      if ((tag & 7) !== 0) this.fail(`field ${tag >>> 3} of ${shape.typeName} is not a varint`);
      return this.skip(tag, end);
    }
    if (kind === STRING) return void this.string(tag, end);
    if (kind === STRING_MAP) return this.stringEntry(tag, end);
    const stop = this.enter(tag, end);
    if (kind === OPAQUE) this.pos = stop;
    else this.walk(stop, kind);
  }

  /** Checks a message that is not used, by its shape. */
  walk(end: number, shape: MessageShape): void {
    while (this.pos < end) this.other(this.tag(end), end, shape);
  }

  /** The end of a length-delimited field that is read (its wire type must be 2). */
  enter(tag: number, end: number): number {
    if ((tag & 7) !== 2) this.fail(`field ${tag >>> 3} is not length-delimited`);
    const length = this.length(end);
    return this.pos + length;
  }

  /** Set when a string read with `lenient` was not valid UTF-8 (then decoded with U+FFFD). */
  sawInvalid = false;

  /** A proto3 string: length-delimited, valid UTF-8 (or, `lenient`, decoded with U+FFFD and `sawInvalid` set). */
  string(tag: number, end: number, lenient = false): string {
    const stop = this.enter(tag, end);
    const buf = this.buf;
    const start = this.pos;
    this.pos = stop;
    let i = start;
    while (i < stop && buf[i]! < 0x80) i++;
    if (i === stop) return latin1Slice(buf, start, stop);
    if (!isUtf8(buf.subarray(start, stop))) {
      if (!lenient) this.fail(`field ${tag >>> 3} is not valid UTF-8`);
      this.sawInvalid = true;
      return lenientUtf8.decode(buf.subarray(start, stop));
    }
    return utf8Slice(buf, start, stop);
  }

  /** A proto3 string as text when it is valid UTF-8, else its bytes. */
  textOrBytes(tag: number, end: number): string | Buffer {
    const stop = this.enter(tag, end);
    const start = this.pos;
    this.pos = stop;
    const bytes = this.buf.subarray(start, stop);
    let i = start;
    while (i < stop && this.buf[i]! < 0x80) i++;
    if (i === stop) return latin1Slice(this.buf, start, stop);
    if (isUtf8(bytes)) return utf8Slice(this.buf, start, stop);
    return bytes;
  }

  bytes(tag: number, end: number): Buffer {
    const stop = this.enter(tag, end);
    const start = this.pos;
    this.pos = stop;
    return this.buf.subarray(start, stop);
  }

  /** Key and value of the last map<string, string> entry read. */
  entryKey = "";
  entryValue = "";

  /** A map<string, string> entry into entryKey and entryValue (a missing key or value is ""). */
  stringEntry(tag: number, end: number, lenient = false): void {
    const stop = this.enter(tag, end);
    let key = "";
    let value = "";
    while (this.pos < stop) {
      const inner = this.tag(stop);
      if (inner === ((1 << 3) | 2)) key = this.string(inner, stop, lenient);
      else if (inner === ((2 << 3) | 2)) value = this.string(inner, stop, lenient);
      else if (inner >>> 3 === 1 || inner >>> 3 === 2) this.string(inner, stop); // wrong wire type: fails
      else this.skip(inner, stop);
    }
    this.entryKey = key;
    this.entryValue = value;
  }
}

function readCheckRequestInto(r: Reader, acc: Accumulated): void {
  const end = r.buf.length;
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | 2)) readAttributes(r, acc, r.enter(tag, end));
    else r.other(tag, end, CHECK_REQUEST_SHAPE);
  }
}

function readAttributes(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case (1 << 3) | 2: // source
        readPeer(r, acc, r.enter(tag, end));
        break;
      case (4 << 3) | 2: // request
        readRequest(r, acc, r.enter(tag, end));
        break;
      case (10 << 3) | 2: // context_extensions
        r.stringEntry(tag, end);
        acc.contextExtensions[r.entryKey] = r.entryValue;
        break;
      default:
        r.other(tag, end, ATTRIBUTES);
    }
  }
}

function readPeer(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | 2)) readAddress(r, acc, r.enter(tag, end));
    else r.other(tag, end, PEER);
  }
}

function readAddress(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | 2)) {
      // socket_address. A oneof case that changes starts from an empty message; the same case merges.
      if (acc.addressCase !== 1) acc.sourceAddress = "";
      acc.addressCase = 1;
      readSocketAddress(r, acc, r.enter(tag, end));
    } else {
      const field = tag >>> 3;
      r.other(tag, end, ADDRESS);
      if (field === 2 || field === 3) acc.addressCase = field; // pipe / internal address: no client IP
    }
  }
}

function readSocketAddress(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((2 << 3) | 2)) acc.sourceAddress = r.string(tag, end);
    else r.other(tag, end, SOCKET_ADDRESS);
  }
}

function readRequest(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((2 << 3) | 2)) readHttp(r, acc, r.enter(tag, end));
    else r.other(tag, end, REQUEST);
  }
}

function readHttp(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case (2 << 3) | 2:
        acc.method = r.string(tag, end);
        break;
      case (3 << 3) | 2: {
        r.sawInvalid = false;
        r.stringEntry(tag, end, true);
        if (r.sawInvalid) acc.flag("header");
        const key = r.entryKey;
        if (acc.headersLowerCase && !isLowerCase(key)) acc.headersLowerCase = false;
        acc.headers[key] = r.entryValue;
        break;
      }
      case (4 << 3) | 2:
        r.sawInvalid = false;
        acc.path = r.string(tag, end, true);
        if (r.sawInvalid) acc.flag("path");
        break;
      case (5 << 3) | 2:
        r.sawInvalid = false;
        acc.host = r.string(tag, end, true);
        if (r.sawInvalid) acc.flag("header"); // the :authority header
        break;
      case (11 << 3) | 2:
        acc.body = r.textOrBytes(tag, end);
        if (typeof acc.body !== "string") acc.bodyInvalid = true;
        break;
      case (12 << 3) | 2:
        acc.rawBody = r.bytes(tag, end);
        break;
      case (13 << 3) | 2:
        readHeaderMap(r, acc, r.enter(tag, end));
        break;
      default:
        r.other(tag, end, HTTP_REQUEST);
    }
  }
}

function readHeaderMap(r: Reader, acc: Accumulated, end: number): void {
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === ((1 << 3) | 2)) {
      const stop = r.enter(tag, end);
      const entry: HeaderValueEntry = { key: "", value: "", rawValue: undefined };
      while (r.pos < stop) {
        const inner = r.tag(stop);
        r.sawInvalid = false;
        if (inner === ((1 << 3) | 2)) entry.key = r.string(inner, stop, true);
        else if (inner === ((2 << 3) | 2)) entry.value = r.string(inner, stop, true);
        else if (inner === ((3 << 3) | 2)) entry.rawValue = r.bytes(inner, stop);
        else r.other(inner, stop, HEADER_VALUE);
        if (r.sawInvalid) acc.flag("header");
      }
      (acc.headerMap ??= []).push(entry);
    } else r.other(tag, end, HEADER_MAP);
  }
}

/** Null-prototype copy with lower-case names (repeats joined with `,`), as protocol.ts's checkInputOf does. */
function lowerCased(acc: Accumulated): Record<string, string> {
  if (acc.headersLowerCase && (acc.headerMap === undefined || hasAny(acc.headers))) return acc.headers;
  const headers: Record<string, string> = Object.create(null);
  for (const name of Object.keys(acc.headers)) {
    const value = acc.headers[name]!;
    const lower = name.toLowerCase();
    headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
  }
  // Envoy fills `header_map` instead of `headers` when `encode_raw_headers` is on.
  if (acc.headerMap && acc.headerMap.length > 0 && !hasAny(headers)) {
    for (const entry of acc.headerMap) {
      const lower = entry.key.toLowerCase();
      const value = entry.value || (entry.rawValue && entry.rawValue.length > 0 ? lenientUtf8.decode(entry.rawValue) : "");
      headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
    }
  }
  return headers;
}

/** True when toLowerCase() would not change the name (a fast path for ASCII names). */
export function isLowerCase(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return false;
    if (c >= 0x80) return name.toLowerCase() === name;
  }
  return true;
}

function hasAny(record: Record<string, string>): boolean {
  for (const _ in record) return true;
  return false;
}

/** Decodes a CheckRequest into what check() needs; throws WireFormatError for malformed bytes. */
export function readCheckInput(bytes: Uint8Array): CheckInput {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const acc = new Accumulated();
  readCheckRequestInto(new Reader(buf), acc);
  let body: Uint8Array | string | undefined;
  if (acc.rawBody && acc.rawBody.length > 0) body = acc.rawBody;
  else if (acc.body.length > 0) body = acc.body;
  const invalidUtf8: InvalidUtf8 | undefined = acc.invalidPath ? "path" : acc.invalidHeader ? "header" : acc.bodyInvalid ? "body" : undefined;
  return {
    ...(invalidUtf8 ? { invalidUtf8 } : {}),
    method: acc.method,
    path: acc.path || acc.headers[":path"] || "",
    host: acc.host,
    headers: lowerCased(acc),
    body,
    sourceAddress: acc.addressCase === 1 ? acc.sourceAddress : undefined,
    contextExtensions: acc.contextExtensions,
  };
}

/* ------------------------------------------------------------------ writing */

/** Field numbers `writeCheckResponse` writes, by message (checked against the descriptors at start). */
export const RESPONSE_LAYOUT: Record<string, Record<string, number>> = {
  "envoy.service.auth.v3.CheckResponse": { status: 1, denied_response: 2, ok_response: 3, dynamic_metadata: 4 },
  "google.rpc.Status": { code: 1, message: 2 },
  "envoy.service.auth.v3.DeniedHttpResponse": { status: 1, headers: 2, body: 3 },
  "envoy.type.v3.HttpStatus": { code: 1 },
  "envoy.service.auth.v3.OkHttpResponse": { headers: 2, headers_to_remove: 5, response_headers_to_add: 6, query_parameters_to_remove: 8 },
  "envoy.config.core.v3.HeaderValueOption": { header: 1, append_action: 3 },
  "envoy.config.core.v3.HeaderValue": { key: 1, value: 2 },
  "google.protobuf.Struct": { fields: 1 },
  "google.protobuf.Value": { string_value: 3 },
};

// google.rpc.Code values used in CheckResponse.status.
const GRPC_PERMISSION_DENIED = 7;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_UNAVAILABLE = 14;
const GRPC_UNAUTHENTICATED = 16;
const GRPC_INTERNAL = 13;

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
export const OVERWRITE_IF_EXISTS_OR_ADD = 2;

export function grpcCodeFor(status: number): number {
  if (status === 401) return GRPC_UNAUTHENTICATED;
  if (status === 429) return GRPC_RESOURCE_EXHAUSTED;
  if (status === 503) return GRPC_UNAVAILABLE;
  if (status >= 500) return GRPC_INTERNAL;
  return GRPC_PERMISSION_DENIED;
}

function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** Size of a length-delimited field with a one-byte tag and a body of `size` bytes. */
function fieldSize(size: number): number {
  return 1 + varintSize(size) + size;
}

/** Size of a proto3 string field of `size` bytes (absent when empty: implicit presence). */
function stringFieldSize(size: number): number {
  return size === 0 ? 0 : fieldSize(size);
}

/** HeaderValueOption { header { key, value }, append_action }: its size, from the key's and value's. */
function headerOptionSize(keySize: number, valueSize: number): number {
  return fieldSize(stringFieldSize(keySize) + stringFieldSize(valueSize)) + 2;
}

/**
 * Two passes over the response: `measure` takes each string's UTF-8 length once (Buffer.byteLength:
 * a lone surrogate counts 3 bytes, as Buffer writes U+FFFD) and queues it; `text` then writes the
 * strings in the same order with the queued lengths. Message sizes are sums of these lengths.
 */
class Writer {
  pos = 0;
  buf: Buffer = EMPTY;
  private readonly sizes: number[] = [];
  private next = 0;

  measure(text: string): number {
    const size = text.length === 0 ? 0 : Buffer.byteLength(text, "utf8");
    this.sizes.push(size);
    return size;
  }
  /** A queued length: that of the next string written (`ahead` 0), or of one after it. */
  peek(ahead = 0): number {
    return this.sizes[this.next + ahead]!;
  }
  /** The output buffer: `reserve` bytes left free at the start, then `size` bytes of message. */
  allocate(size: number, reserve: number): void {
    this.buf = Buffer.allocUnsafe(reserve + size);
    this.pos = reserve;
  }
  byte(value: number): void {
    this.buf[this.pos++] = value;
  }
  varint(value: number): void {
    while (value >= 0x80) {
      this.buf[this.pos++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buf[this.pos++] = value;
  }
  /** Tag + length of a length-delimited field. */
  open(field: number, size: number): void {
    this.buf[this.pos++] = (field << 3) | 2;
    this.varint(size);
  }
  /** The next measured string, without tag. */
  text(text: string): void {
    const size = this.sizes[this.next++]!;
    if (size === text.length) this.pos += latin1Write(this.buf, text, this.pos, size);
    else this.pos += utf8Write(this.buf, text, this.pos, size);
  }
  /** The next measured string as a length-delimited field (always written: repeated strings, map keys). */
  stringField(field: number, text: string): void {
    this.open(field, this.peek());
    this.text(text);
  }
  /** The next measured string as a proto3 string field (absent when empty). */
  optionalStringField(field: number, text: string): void {
    if (this.peek() === 0) {
      this.next++;
      return;
    }
    this.stringField(field, text);
  }
  raw(bytes: Buffer): void {
    bytes.copy(this.buf, this.pos);
    this.pos += bytes.length;
  }
  finish(): Buffer {
    if (this.pos !== this.buf.length || this.next !== this.sizes.length) {
      throw new Error(`CheckResponse size mismatch: wrote ${this.pos} of ${this.buf.length} bytes`);
    }
    return this.buf;
  }
}

const EMPTY = Buffer.alloc(0);

function measureHeaderOptions(w: Writer, headers: Record<string, string>): number {
  let size = 0;
  for (const key in headers) size += fieldSize(headerOptionSize(w.measure(key), w.measure(headers[key]!)));
  return size;
}

function writeHeaderOptions(w: Writer, field: number, headers: Record<string, string>): void {
  for (const key in headers) {
    const keySize = w.peek();
    const valueSize = w.peek(1);
    w.open(field, headerOptionSize(keySize, valueSize));
    w.open(1, stringFieldSize(keySize) + stringFieldSize(valueSize));
    w.optionalStringField(1, key);
    w.optionalStringField(2, headers[key]!);
    w.byte((3 << 3) | 0);
    w.byte(OVERWRITE_IF_EXISTS_OR_ADD);
  }
}

function measureStringList(w: Writer, values: readonly string[]): number {
  let size = 0;
  for (const value of values) size += fieldSize(w.measure(value)); // repeated: empty strings are written too
  return size;
}

function writeStringList(w: Writer, field: number, values: readonly string[]): void {
  for (const value of values) w.stringField(field, value);
}

/**
 * dynamic_metadata: a google.protobuf.Struct of string Values, `{"credential": "API_KEY",
 * "request_id": "…", "consumer": "…", "app_id": "…", "degraded": "true"}` in its JSON form (what
 * Envoy's access logs read as `%DYNAMIC_METADATA(envoy.filters.http.ext_authz:credential)%`):
 *
 *   Struct { fields (1, map<string, Value>): entry { key (1): <name>, value (2): Value { string_value (3): <value> } } ... }
 *
 * string_value is a oneof member, so it is written even when empty.
 */
function metadataOf(decision: AllowDecision): string[] {
  const entries = ["credential", decision.identity.credential, "request_id", decision.requestId];
  if (decision.identity.consumer) entries.push("consumer", decision.identity.consumer);
  if (decision.identity.appId) entries.push("app_id", decision.identity.appId);
  if (decision.degraded) entries.push("degraded", "true");
  return entries;
}

/** Size of one map entry { key, Value { string_value } } (without its own tag and length). */
function metadataEntrySize(nameSize: number, valueSize: number): number {
  return fieldSize(nameSize) + fieldSize(fieldSize(valueSize));
}

/** Size of the dynamic_metadata Struct, measuring names and values. */
function measureMetadata(w: Writer, entries: string[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i += 2) size += fieldSize(metadataEntrySize(w.measure(entries[i]!), w.measure(entries[i + 1]!)));
  return size;
}

function writeMetadata(w: Writer, entries: string[]): void {
  for (let i = 0; i < entries.length; i += 2) {
    const nameSize = w.peek();
    const valueSize = w.peek(1);
    w.open(1, metadataEntrySize(nameSize, valueSize));
    w.stringField(1, entries[i]!);
    w.open(2, fieldSize(valueSize));
    w.stringField(3, entries[i + 1]!);
  }
}

/**
 * The CheckResponse bytes for a decision (the same bytes as encodeCheckResponse(checkResponseOf(decision))),
 * after `reserve` free bytes (a gRPC frame header).
 */
export function writeCheckResponse(decision: Decision, reserve = 0): Buffer {
  const w = new Writer();
  if (decision.allowed) {
    // Measured in the order written.
    const okSize =
      measureHeaderOptions(w, decision.upstreamHeaders) +
      measureStringList(w, decision.removeHeaders) +
      measureHeaderOptions(w, decision.responseHeaders) +
      measureStringList(w, decision.removeQueryParameters);
    const metadata = metadataOf(decision);
    const metadataSize = measureMetadata(w, metadata);
    w.allocate(2 + fieldSize(okSize) + fieldSize(metadataSize), reserve);
    w.open(1, 0); // status {} (code OK)
    w.open(3, okSize);
    writeHeaderOptions(w, 2, decision.upstreamHeaders);
    writeStringList(w, 5, decision.removeHeaders);
    writeHeaderOptions(w, 6, decision.responseHeaders);
    writeStringList(w, 8, decision.removeQueryParameters);
    w.open(4, metadataSize);
    writeMetadata(w, metadata);
    return w.finish();
  }
  const code = grpcCodeFor(decision.status);
  const statusSize = 1 + varintSize(code) + stringFieldSize(w.measure(decision.message));
  const httpStatusSize = decision.status === 0 ? 0 : 1 + varintSize(decision.status);
  const deniedSize = fieldSize(httpStatusSize) + measureHeaderOptions(w, decision.headers) + stringFieldSize(w.measure(decision.body));
  w.allocate(fieldSize(statusSize) + fieldSize(deniedSize), reserve);
  w.open(1, statusSize);
  w.byte((1 << 3) | 0);
  w.varint(code);
  w.optionalStringField(2, decision.message);
  w.open(2, deniedSize);
  w.open(1, httpStatusSize);
  if (decision.status !== 0) {
    w.byte((1 << 3) | 0);
    w.varint(decision.status);
  }
  writeHeaderOptions(w, 2, decision.headers);
  w.optionalStringField(3, decision.body);
  return w.finish();
}

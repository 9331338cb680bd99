import { expect } from "chai";
import { create, fromBinary, fromJson, toBinary, toJson, type DescMessage, type Message } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { loadEnvoyRegistry } from "../../packages/control-plane/src/envoy/schema/registry";
import type { AllowDecision, CheckInput, Decision, DenyDecision } from "../../packages/ext-authz/src/check";
import { assertWireLayout, checkInputOf, checkResponseOf, encodeCheckResponse } from "../../packages/ext-authz/src/protocol";
import {
  CHECK_REQUEST_SHAPE,
  OPAQUE,
  OVERWRITE_IF_EXISTS_OR_ADD,
  STRING,
  STRING_MAP,
  VARINT,
  WireFormatError,
  grpcCodeFor,
  isLowerCase,
  readCheckInput,
  writeCheckResponse,
  type FieldKind,
  type MessageShape,
} from "../../packages/ext-authz/src/wire";

/*
 * The ext_authz hot-path codec (wire.ts) against the reference: @bufbuild/protobuf over the Envoy
 * descriptor set (protos/envoy-descriptors.binpb). Requests are generated from a seeded PRNG,
 * encoded by the reference (plus hand-framed fragments for what the reference cannot write:
 * map entries with unknown fields or value before key, explicit empty strings), concatenated in
 * random order (protobuf merge), and decoded by both; each decode is also compared with the
 * value the generator meant. Malformed bytes must throw a WireFormatError (never another error,
 * a hang, or a wrong value). Responses: writeCheckResponse must give the reference's bytes and
 * decode (with the reference) to exactly the intended CheckResponse.
 */

const registry = loadEnvoyRegistry();
function desc(name: string): DescMessage {
  const d = registry.getMessage(name);
  if (!d) throw new Error(`${name} missing from the descriptor set`);
  return d;
}
const REQUEST = desc("envoy.service.auth.v3.CheckRequest");
const RESPONSE = desc("envoy.service.auth.v3.CheckResponse");

/* ------------------------------------------------------------------ seeded PRNG */

class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/* ------------------------------------------------------------------ hand framing */

function varint(value: number | bigint): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const tag = (field: number, wireType: number): Buffer => varint(field * 8 + wireType);
const cat = (...parts: (Uint8Array | number[])[]): Buffer => Buffer.concat(parts.map((p) => (Array.isArray(p) ? Buffer.from(p) : p)));
/** A length-delimited field. */
const ld = (field: number, ...parts: (Uint8Array | number[])[]): Buffer => {
  const body = cat(...parts);
  return cat(tag(field, 2), varint(body.length), body);
};
const str = (field: number, text: string): Buffer => ld(field, Buffer.from(text, "utf8"));
const vint = (field: number, value: number | bigint): Buffer => cat(tag(field, 0), varint(value));

/** CheckRequest { attributes { request { http { <fields> } } } } */
const inHttp = (...fields: Buffer[]): Buffer => ld(1, ld(4, ld(2, ...fields)));
/** CheckRequest { attributes { <fields> } } */
const inAttributes = (...fields: Buffer[]): Buffer => ld(1, ...fields);

/* ------------------------------------------------------------------ comparison */

interface Normalized {
  method: string;
  path: string;
  host: string;
  headers: [string, string][];
  body: { bytes: string } | { text: string } | undefined;
  sourceAddress: string | undefined;
  contextExtensions: [string, string][];
  invalidUtf8?: CheckInput["invalidUtf8"];
}

function entriesOf(record: Readonly<Record<string, string>>): [string, string][] {
  return Object.keys(record)
    .map((k): [string, string] => [k, record[k]!])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function normalize(input: CheckInput): Normalized {
  const body = input.body;
  return {
    method: input.method,
    path: input.path,
    host: input.host,
    headers: entriesOf(input.headers),
    body: body === undefined ? undefined : typeof body === "string" ? { text: body } : { bytes: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("hex") },
    sourceAddress: input.sourceAddress,
    contextExtensions: entriesOf(input.contextExtensions),
    ...(input.invalidUtf8 ? { invalidUtf8: input.invalidUtf8 } : {}),
  };
}

/**
 * Where wire.ts departs from the reference on purpose: client bytes that are not valid UTF-8 in
 * headers, path, host or a text body (the reference rejects the whole message) are decoded and
 * flagged. True when `value` is such a decode of bytes the reference rejected for UTF-8.
 */
function flaggedWhereReferenceRejects(value: Normalized, referenceError: unknown): boolean {
  return value.invalidUtf8 !== undefined && /not valid for encoding utf-8/.test(String((referenceError as Error)?.message));
}

function referenceInput(bytes: Uint8Array): CheckInput {
  return checkInputOf(fromBinary(REQUEST, bytes, { readUnknownFields: false }));
}

type Outcome = { ok: true; value: Normalized } | { ok: false; error: unknown };
function attempt(decode: () => CheckInput): Outcome {
  try {
    return { ok: true, value: normalize(decode()) };
  } catch (error) {
    return { ok: false, error };
  }
}

function expectWireError(bytes: Uint8Array, what: string, pattern?: RegExp): WireFormatError {
  let thrown: unknown;
  let value: CheckInput | undefined;
  try {
    value = readCheckInput(bytes);
  } catch (error) {
    thrown = error;
  }
  if (thrown === undefined) expect.fail(`${what}: expected a WireFormatError, got ${JSON.stringify(normalize(value!)).slice(0, 300)}`);
  expect(thrown, `${what}: ${String(thrown)}`).to.be.instanceOf(WireFormatError);
  if (pattern) expect((thrown as Error).message, what).to.match(pattern);
  return thrown as WireFormatError;
}

/** What a JS string becomes through UTF-8 (lone surrogates: U+FFFD). */
const wf = (s: string): string => Buffer.from(s, "utf8").toString("utf8");

/* ------------------------------------------------------------------ request generator */

const PIECES = [
  "a", "z", "Q", "0", "9", "-", "_", ".", "~", "%", "%20", "%zz", "+", "=", "&", "?", "/", ",", ";", ":", " ", "\t", "\"",
  "é", "ß", "ü", "Ä", "İ", "ſ", "Ω", "\u212a", "中", "文", "😀", "\u{10ffff}", "\ufeff", "\u0000", "\u007f", "\u0080", "\u200b", "\ud7ff", "\ue000", "\ufffd",
];

function text(rng: Rng, max = 12): string {
  if (rng.chance(0.1)) return "";
  let out = "";
  const n = rng.range(1, max);
  for (let i = 0; i < n; i++) out += rng.pick(PIECES);
  if (rng.chance(0.02)) out = out.repeat(rng.range(50, 1500)); // long values: multi-byte lengths
  return out;
}

function token(rng: Rng): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-";
  let out = rng.pick(["x-", "", "content-", "x-ca-"]);
  const n = rng.range(1, 12);
  for (let i = 0; i < n; i++) out += alphabet[rng.int(alphabet.length)];
  return out;
}

const SPECIAL_NAMES = [":path", ":authority", ":method", ":scheme", "__proto__", "constructor", "toString", "hasOwnProperty", "123", "0", "", "ä", "Ä", "k", "\u212a", "İ", "x-é"];

function headerName(rng: Rng): string {
  const r = rng.next();
  if (r < 0.12) return rng.pick(SPECIAL_NAMES);
  const name = token(rng);
  if (r < 0.3) return name.replace(/[a-z]/g, (c) => (rng.chance(0.5) ? c.toUpperCase() : c)); // case variants merge
  return name;
}

type AddressPart =
  | { case: "socket"; address: string; port?: number; namedPort?: string; resolver?: string; ipv4Compat?: boolean; protocol?: number }
  | { case: "pipe"; path: string; mode?: number }
  | { case: "internal"; listener: string };

interface Peer {
  service?: string;
  principal?: string;
  certificate?: string;
  labels?: [string, string][];
  /** Only used on the destination (the source's address is the `source` sequence). */
  address?: AddressPart;
}

interface RequestModel {
  method: string;
  path: string;
  host: string;
  /** Unique keys, in wire order. */
  headers: [string, string][];
  headerMap: { key: string; value: string; rawValue?: Uint8Array }[];
  body: string;
  rawBody?: Uint8Array;
  context: [string, string][];
  /** Source addresses in wire order (merged as protobuf does). */
  source: AddressPart[];
  sourcePeer?: Peer;
  destination?: Peer;
  /** Fields the check does not use. */
  http: { id?: string; scheme?: string; query?: string; fragment?: string; size?: bigint; protocol?: string };
  time?: { seconds: bigint; nanos: number };
  sni?: string;
  metadata: boolean;
}

function addressPart(rng: Rng, opaque = true): AddressPart {
  const r = opaque ? rng.next() : rng.next() * 0.85;
  if (r < 0.7) {
    return {
      case: "socket",
      address: rng.pick(["203.0.113.10", "198.51.100.7", "::1", "2001:db8::1", "", "10.0.0.1", text(rng, 4)]),
      ...(rng.chance(0.5) ? { port: rng.range(0, 65535) } : rng.chance(0.3) ? { namedPort: text(rng, 3) } : {}),
      ...(rng.chance(0.2) ? { resolver: text(rng, 3) } : {}),
      ...(rng.chance(0.2) ? { ipv4Compat: true } : {}),
      ...(rng.chance(0.2) ? { protocol: 1 } : {}),
    };
  }
  if (r < 0.85) return { case: "pipe", path: "/run/" + token(rng), ...(rng.chance(0.5) ? { mode: rng.range(0, 0o777) } : {}) };
  return { case: "internal", listener: token(rng) };
}

function peer(rng: Rng, withAddress: boolean, opaque: boolean): Peer {
  return {
    ...(rng.chance(0.5) ? { service: text(rng, 4) } : {}),
    ...(rng.chance(0.5) ? { principal: text(rng, 4) } : {}),
    ...(rng.chance(0.3) ? { certificate: text(rng, 6) } : {}),
    ...(rng.chance(0.4) ? { labels: uniqueEntries(rng, rng.range(1, 4), () => token(rng), () => text(rng, 4)) } : {}),
    ...(withAddress ? { address: addressPart(rng, opaque) } : {}),
  };
}

function uniqueEntries(rng: Rng, n: number, key: () => string, value: () => string): [string, string][] {
  const seen = new Set<string>();
  const out: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const k = key();
    if (seen.has(k)) continue;
    seen.add(k);
    out.push([k, value()]);
  }
  return out;
}

function generateRequest(rng: Rng, options: { opaque?: boolean } = {}): RequestModel {
  const opaque = options.opaque ?? true;
  const many = rng.chance(0.03);
  const headers = uniqueEntries(rng, many ? rng.range(500, 2500) : rng.range(0, 25), () => headerName(rng), () => text(rng));
  const headerMap = rng.chance(0.25)
    ? Array.from({ length: rng.range(1, 8) }, () => ({
        key: headerName(rng),
        value: rng.chance(0.7) ? text(rng) : "",
        ...(rng.chance(0.4) ? { rawValue: rng.chance(0.5) ? rng.bytes(rng.range(0, 40)) : Buffer.from(text(rng)) } : {}),
      }))
    : [];
  const bodyKind = rng.next();
  const big = rng.chance(0.03);
  let path = "";
  if (rng.chance(0.85)) {
    path = "/" + Array.from({ length: rng.range(0, 4) }, () => text(rng, 3)).join("/");
    if (rng.chance(0.5)) path += "?" + Array.from({ length: rng.range(0, 4) }, () => `${token(rng)}=${text(rng, 3)}`).join("&");
  }
  return {
    method: rng.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "", "get", "BREW", "MÉTHODE"]),
    path,
    host: rng.pick(["api.example.com", "", "api.example.com:8443", "[::1]:80", text(rng, 4)]),
    headers,
    headerMap,
    body: bodyKind < 0.4 ? (big ? "b".repeat(rng.range(20_000, 300_000)) : text(rng, 30)) : "",
    rawBody: bodyKind > 0.6 ? rng.bytes(big ? rng.range(20_000, 300_000) : rng.range(0, 300)) : undefined,
    context: uniqueEntries(rng, rng.range(0, 6), () => rng.pick(["api_id", "stage", "operation", "__proto__", "", "é", token(rng)]), () => text(rng, 4)),
    source: Array.from({ length: rng.pick([0, 1, 1, 1, 2, 3, 4]) }, () => addressPart(rng, opaque)),
    sourcePeer: rng.chance(0.3) ? peer(rng, false, opaque) : undefined,
    destination: rng.chance(0.4) ? peer(rng, rng.chance(0.7), opaque) : undefined,
    http: {
      ...(rng.chance(0.5) ? { id: String(rng.int(1e9)) } : {}),
      ...(rng.chance(0.5) ? { scheme: rng.pick(["http", "https", ""]) } : {}),
      ...(rng.chance(0.3) ? { query: text(rng, 4) } : {}),
      ...(rng.chance(0.2) ? { fragment: text(rng, 4) } : {}),
      ...(rng.chance(0.4) ? { size: rng.pick([0n, 1n, 1234n, -1n, 9007199254740993n, -(2n ** 63n)]) } : {}),
      ...(rng.chance(0.4) ? { protocol: rng.pick(["HTTP/1.1", "HTTP/2", "HTTP/3"]) } : {}),
    },
    time: rng.chance(0.4) ? { seconds: BigInt(rng.int(2_000_000_000)), nanos: rng.int(1e9) } : undefined,
    sni: rng.chance(0.2) ? text(rng, 4) : undefined,
    metadata: opaque && rng.chance(0.3),
  };
}

/** The CheckInput a model means, computed from the model (protobuf merge and check input rules). */
function expectedInput(model: RequestModel): Normalized {
  const headers: Record<string, string> = Object.create(null);
  for (const [name, value] of model.headers) {
    const lower = name.toLowerCase();
    headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
  }
  if (model.headers.length === 0) {
    for (const entry of model.headerMap) {
      const lower = entry.key.toLowerCase();
      const value = entry.value || (entry.rawValue && entry.rawValue.length > 0 ? new TextDecoder().decode(entry.rawValue) : "");
      headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
    }
  }
  let addressCase = "";
  let address = "";
  for (const part of model.source) {
    if (part.case === "socket") {
      if (addressCase !== "socket") address = "";
      if (part.address) address = part.address;
    }
    addressCase = part.case;
  }
  const rawPath = model.headers.find(([name]) => name === ":path")?.[1];
  const context: Record<string, string> = Object.create(null);
  for (const [k, v] of model.context) context[k] = v;
  return {
    method: model.method,
    path: model.path || rawPath || "",
    host: model.host,
    headers: entriesOf(headers),
    body: model.rawBody && model.rawBody.length > 0 ? { bytes: Buffer.from(model.rawBody).toString("hex") } : model.body ? { text: model.body } : undefined,
    sourceAddress: addressCase === "socket" ? address : undefined,
    contextExtensions: entriesOf(context),
  };
}

/* ---- encoding a model as a sequence of fragments, each a complete CheckRequest (concatenation = merge) */

function addressInit(part: AddressPart) {
  if (part.case === "socket") {
    const port = part.port !== undefined ? { portSpecifier: { case: "portValue", value: part.port } } : part.namedPort !== undefined ? { portSpecifier: { case: "namedPort", value: part.namedPort } } : {};
    return {
      address: {
        case: "socketAddress",
        value: { address: part.address, resolverName: part.resolver ?? "", ipv4Compat: part.ipv4Compat ?? false, protocol: part.protocol ?? 0, ...port },
      },
    };
  }
  if (part.case === "pipe") return { address: { case: "pipe", value: { path: part.path, mode: part.mode ?? 0 } } };
  return { address: { case: "envoyInternalAddress", value: { addressNameSpecifier: { case: "serverListenerName", value: part.listener } } } };
}

function peerInit(p: Peer) {
  return {
    service: p.service ?? "",
    principal: p.principal ?? "",
    certificate: p.certificate ?? "",
    labels: withOwnKeys(p.labels ?? []),
    ...(p.address ? { address: addressInit(p.address) } : {}),
  };
}

/** A plain object with these own keys (`__proto__` included, as a map key). */
function withOwnKeys(entries: [string, string][]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function knownNumbers(d: DescMessage): Set<number> {
  return new Set(d.fields.map((f) => f.number));
}

/** An unknown field's wire type and bytes (as @bufbuild/protobuf keeps them: for a group, up to and including its end tag). */
function unknownValue(rng: Rng, no: number, depth = 0): { wireType: number; data: Uint8Array } {
  const wireType = rng.pick(depth < 3 ? [0, 0, 1, 2, 2, 5, 3] : [0, 1, 2, 5]);
  switch (wireType) {
    case 0:
      return { wireType, data: varint(rng.pick([0, 1, 127, 128, 300, 2 ** 32 - 1, 2 ** 53 - 1, -1])) };
    case 1:
      return { wireType, data: rng.bytes(8) };
    case 5:
      return { wireType, data: rng.bytes(4) };
    case 2: {
      const body = rng.chance(0.5) ? rng.bytes(rng.range(0, 200)) : rng.chance(0.5) ? Buffer.from(text(rng)) : Buffer.alloc(0);
      return { wireType, data: cat(varint(body.length), body) };
    }
    default: {
      // A group: any fields inside (even numbers that are known outside), then the matching end tag.
      const inner: Buffer[] = [];
      for (let i = rng.range(0, 3); i > 0; i--) {
        const innerNo = rng.range(1, 20);
        const v = unknownValue(rng, innerNo, depth + 1);
        inner.push(cat(tag(innerNo, v.wireType), v.data));
      }
      return { wireType, data: cat(...inner, tag(no, 4)) };
    }
  }
}

function unknownNumber(rng: Rng, known: Set<number>): number {
  for (;;) {
    const no = rng.chance(0.7) ? rng.range(1, 40) : rng.pick([100, 1000, 19000, 2 ** 20, 2 ** 29 - 1]);
    if (!known.has(no)) return no;
  }
}

function unknownFieldBytes(rng: Rng, known: Set<number>): Buffer {
  const no = unknownNumber(rng, known);
  const v = unknownValue(rng, no);
  return cat(tag(no, v.wireType), v.data);
}

/** Adds unknown fields (through `$unknown`, which the reference writes after the known ones) to messages of the tree. */
function sprinkleUnknown(rng: Rng, d: DescMessage, message: Record<string, any>, p: number): void {
  for (const field of d.fields) {
    if (field.fieldKind === "message") {
      let value: unknown;
      if (field.oneof) {
        const oneof = message[field.oneof.localName] as { case?: string; value?: unknown };
        value = oneof.case === field.localName ? oneof.value : undefined;
      } else value = message[field.localName];
      if (value && typeof value === "object" && "$typeName" in value) sprinkleUnknown(rng, field.message, value as Record<string, any>, p);
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      for (const value of message[field.localName] as Record<string, any>[]) if ("$typeName" in value) sprinkleUnknown(rng, field.message, value, p);
    }
  }
  if (rng.chance(p)) {
    const known = knownNumbers(d);
    const unknown = (message.$unknown ?? []) as { no: number; wireType: number; data: Uint8Array }[];
    for (let i = rng.range(1, 3); i > 0; i--) {
      const no = unknownNumber(rng, known);
      unknown.push({ no, ...unknownValue(rng, no) });
    }
    message.$unknown = unknown;
  }
}

/** A fragment encoded by the reference (with unknown fields sprinkled in with probability `p`). */
function ref(rng: Rng, init: object, p: number): Buffer {
  const message = create(REQUEST, init as never) as unknown as Record<string, any>;
  sprinkleUnknown(rng, REQUEST, message, p);
  return Buffer.from(toBinary(REQUEST, message as unknown as Message));
}

const HTTP_REQUEST = desc("envoy.service.auth.v3.AttributeContext.HttpRequest");
const ATTRIBUTE_CONTEXT = desc("envoy.service.auth.v3.AttributeContext");
const MAP_ENTRY_KNOWN = new Set([1, 2]);

/** A map<string, string> entry framed by hand: key and value in either order, explicit or omitted empties, unknown fields between. */
function handEntry(rng: Rng, field: number, key: string, value: string): Buffer {
  const parts: Buffer[] = [];
  if (key !== "" || rng.chance(0.5)) parts.push(str(1, key));
  if (value !== "" || rng.chance(0.5)) parts.push(str(2, value));
  for (let i = rng.chance(0.5) ? rng.range(1, 3) : 0; i > 0; i--) parts.push(unknownFieldBytes(rng, MAP_ENTRY_KNOWN));
  return ld(field, ...rng.shuffle(parts));
}

/**
 * Encodes a model as fragments in a random order that keeps what must stay ordered in order
 * (header entries: the order decides how `X-A` and `x-a` join; source addresses: oneof merging;
 * a noise value before the real one).
 */
function encodeRequest(rng: Rng, model: RequestModel, options: { split: boolean; unknownP: number; noise: boolean }): Buffer {
  const { split, unknownP } = options;
  const sequences: Buffer[][] = [];
  const one = (init: object) => sequences.push([ref(rng, init, unknownP)]);
  const http = (fields: object) => ({ attributes: { request: { http: fields } } });

  if (!split) {
    // One reference message for everything but the source sequence, which needs one fragment per address.
    sequences.push([
      ref(
        rng,
        {
          attributes: {
            ...(model.sourcePeer ? { source: peerInit(model.sourcePeer) } : {}),
            ...(model.destination ? { destination: peerInit(model.destination) } : {}),
            request: {
              ...(model.time ? { time: model.time } : {}),
              http: {
                ...model.http,
                method: model.method,
                path: model.path,
                host: model.host,
                headers: withOwnKeys(model.headers),
                ...(model.headerMap.length > 0 ? { headerMap: { headers: model.headerMap.map((e) => ({ key: e.key, value: e.value, rawValue: e.rawValue ?? new Uint8Array() })) } } : {}),
                body: model.body,
                rawBody: model.rawBody ?? new Uint8Array(),
              },
            },
            contextExtensions: withOwnKeys(model.context),
            ...(model.sni !== undefined ? { tlsSession: { sni: model.sni } } : {}),
            ...(model.metadata ? { metadataContext: { filterMetadata: { "envoy.filters.http.jwt_authn": { sub: "x", n: 1, list: [true, null, "é"] } } } } : {}),
          },
        },
        unknownP,
      ),
    ]);
  } else {
    // Scalars, each in its own fragment; with noise, an earlier fragment sets another value first.
    const scalar = (name: string, value: string) => {
      if (value === "" && rng.chance(0.5)) return;
      const seq: Buffer[] = [];
      if (options.noise && value !== "" && rng.chance(0.5)) seq.push(ref(rng, http({ [name]: text(rng, 3) || "noise" }), unknownP));
      const number = HTTP_REQUEST.fields.find((f) => f.localName === name)!.number;
      // An explicit empty string (the reference never writes one) also sets the field.
      seq.push(value === "" ? inHttp(str(number, "")) : rng.chance(0.3) ? inHttp(str(number, value)) : ref(rng, http({ [name]: value }), unknownP));
      sequences.push(seq);
    };
    scalar("method", model.method);
    scalar("path", model.path);
    scalar("host", model.host);
    scalar("body", model.body);
    if (model.rawBody !== undefined) {
      const seq: Buffer[] = [];
      if (options.noise && model.rawBody.length > 0 && rng.chance(0.5)) seq.push(ref(rng, http({ rawBody: rng.bytes(rng.range(1, 20)) }), unknownP));
      seq.push(model.rawBody.length === 0 ? inHttp(ld(12)) : ref(rng, http({ rawBody: model.rawBody }), unknownP));
      sequences.push(seq);
    }
    // Headers in contiguous chunks, in order; some chunks framed by hand.
    const headerSeq: Buffer[] = [];
    for (let i = 0; i < model.headers.length; ) {
      const chunk = model.headers.slice(i, i + rng.range(1, 6));
      i += chunk.length;
      headerSeq.push(rng.chance(0.3) ? inHttp(...chunk.map(([k, v]) => handEntry(rng, 3, k, v))) : ref(rng, http({ headers: withOwnKeys(chunk) }), unknownP));
    }
    sequences.push(headerSeq);
    // header_map entries: a repeated field, appended in order.
    const mapSeq: Buffer[] = [];
    for (let i = 0; i < model.headerMap.length; ) {
      const chunk = model.headerMap.slice(i, i + rng.range(1, 3));
      i += chunk.length;
      mapSeq.push(ref(rng, http({ headerMap: { headers: chunk.map((e) => ({ key: e.key, value: e.value, rawValue: e.rawValue ?? new Uint8Array() })) } }), unknownP));
    }
    sequences.push(mapSeq);
    // Context extensions: any order; with noise, a key is first set to another value.
    for (const [k, v] of model.context) {
      const seq: Buffer[] = [];
      if (options.noise && rng.chance(0.3)) seq.push(inAttributes(handEntry(rng, 10, k, "noise:" + v)));
      seq.push(rng.chance(0.4) ? inAttributes(handEntry(rng, 10, k, v)) : ref(rng, { attributes: { contextExtensions: withOwnKeys([[k, v]]) } }, unknownP));
      sequences.push(seq);
    }
    // Everything the check does not use.
    if (model.sourcePeer) one({ attributes: { source: peerInit(model.sourcePeer) } });
    if (model.destination) one({ attributes: { destination: peerInit(model.destination) } });
    if (model.time) one({ attributes: { request: { time: model.time } } });
    for (const [name, value] of Object.entries(model.http)) one(http({ [name]: value }));
    if (model.sni !== undefined) one({ attributes: { tlsSession: { sni: model.sni } } });
    if (model.metadata) one({ attributes: { routeMetadataContext: { filterMetadata: { f: { a: "b" } } } } });
    // Fragments of unknown fields only, at several depths.
    for (let i = rng.range(0, 3); i > 0; i--) {
      const where = rng.pick([
        (f: Buffer) => f,
        (f: Buffer) => inAttributes(f),
        (f: Buffer) => inHttp(f),
        (f: Buffer) => ld(1, ld(1, ld(1, f))), // source.address
        (f: Buffer) => ld(1, ld(4, f)), // request
      ]);
      const known = [knownNumbers(REQUEST), knownNumbers(ATTRIBUTE_CONTEXT), knownNumbers(HTTP_REQUEST)];
      sequences.push([where(unknownFieldBytes(rng, new Set([...known[0]!, ...known[1]!, ...known[2]!, 1, 2, 3, 4, 5, 6])))]);
    }
  }
  // Source addresses, in order (oneof: the same case merges, another case starts over).
  sequences.push(model.source.map((part) => ref(rng, { attributes: { source: { address: addressInit(part) } } }, unknownP)));

  // Random interleaving that keeps each sequence's order.
  const out: Buffer[] = [];
  const live = sequences.filter((s) => s.length > 0);
  while (live.length > 0) {
    const i = rng.int(live.length);
    out.push(live[i]!.shift()!);
    if (live[i]!.length === 0) live.splice(i, 1);
  }
  return cat(...out);
}

/** Copies of the bytes in the containers readCheckInput may get. */
function containers(bytes: Buffer): [string, Uint8Array][] {
  const offset = new ArrayBuffer(bytes.length + 11);
  const view = new Uint8Array(offset, 7, bytes.length);
  view.set(bytes);
  return [
    ["Buffer", bytes],
    ["Uint8Array", new Uint8Array(bytes)],
    ["Uint8Array view at an offset", view],
  ];
}

/** Does a message (framing already known to be valid) hold a field wire.ts does not look into (Metadata, EnvoyInternalAddress)? */
function holdsOpaque(bytes: Uint8Array, d: DescMessage = REQUEST): boolean {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    const field = d.fields.find((f) => f.number === no);
    const child = field && (field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")) ? field.message : undefined;
    if (child && wireType === WireType.LengthDelimited) {
      if (child.typeName === "envoy.config.core.v3.Metadata" || child.typeName === "envoy.config.core.v3.EnvoyInternalAddress") return true;
      if (holdsOpaque(reader.bytes(), child)) return true;
    } else reader.skip(wireType, no);
  }
  return false;
}

/* ------------------------------------------------------------------ request tests */

describe("ext_authz wire codec: CheckRequest", function () {
  this.timeout(120_000);

  it("its shapes and field numbers match the Envoy descriptor set", () => {
    expect(() => assertWireLayout()).to.not.throw();
  });

  it("reads what Envoy means: CheckRequests written as proto3 JSON, encoded with Envoy's descriptors", () => {
    // The request side's reference: Envoy's JSON form of a CheckRequest (as its ext_authz filter
    // fills it), encoded by @bufbuild/protobuf over protos/envoy-descriptors.binpb; the expected
    // CheckInput is written by hand.
    const envoyRequest = (json: Json) => Buffer.from(toBinary(REQUEST, fromJson(REQUEST, json as never)));
    const signed = envoyRequest({
      attributes: {
        source: { address: { socketAddress: { address: "203.0.113.7", portValue: 51234 } }, principal: "" },
        destination: { address: { socketAddress: { address: "10.0.0.2", portValue: 8080 } } },
        request: {
          time: "2026-01-02T03:04:05.678Z",
          http: {
            id: "8841622283521436113",
            method: "POST",
            headers: { ":authority": "api.example.com", ":method": "POST", ":path": "/books?id=7", ":scheme": "https", "x-ca-key": "203000001", "content-type": "application/x-www-form-urlencoded" },
            path: "/books?id=7",
            host: "api.example.com",
            scheme: "https",
            protocol: "HTTP/2",
            size: "11",
            rawBody: Buffer.from("title=Dune&").toString("base64"),
          },
        },
        contextExtensions: { api_id: "books", stage: "RELEASE", operation: "POST /books" },
        metadataContext: { filterMetadata: { "envoy.filters.http.jwt_authn": { sub: "x" } } },
        tlsSession: { sni: "api.example.com" },
      },
    });
    expect(normalize(readCheckInput(signed))).to.deep.equal({
      method: "POST",
      path: "/books?id=7",
      host: "api.example.com",
      headers: [[":authority", "api.example.com"], [":method", "POST"], [":path", "/books?id=7"], [":scheme", "https"], ["content-type", "application/x-www-form-urlencoded"], ["x-ca-key", "203000001"]],
      body: { bytes: Buffer.from("title=Dune&").toString("hex") },
      sourceAddress: "203.0.113.7",
      contextExtensions: [["api_id", "books"], ["operation", "POST /books"], ["stage", "RELEASE"]],
    });
    // encode_raw_headers: header_map instead of headers (raw values decoded leniently); a pipe peer has no address.
    const raw = envoyRequest({
      attributes: {
        source: { address: { pipe: { path: "/run/envoy.sock" } } },
        request: {
          http: {
            method: "GET",
            path: "/x",
            headerMap: { headers: [{ key: "API-Key", rawValue: Buffer.from("apip_abc").toString("base64") }, { key: "x-b", value: "1" }, { key: "x-b", value: "2" }] },
            body: "text body",
          },
        },
        contextExtensions: { api_id: "a", stage: "TEST" },
      },
    });
    expect(normalize(readCheckInput(raw))).to.deep.equal({
      method: "GET",
      path: "/x",
      host: "",
      headers: [["api-key", "apip_abc"], ["x-b", "1,2"]],
      body: { text: "text body" },
      sourceAddress: undefined,
      contextExtensions: [["api_id", "a"], ["stage", "TEST"]],
    });
  });

  it("decodes generated requests exactly as the reference does, whole and split into merged fragments in random order", () => {
    const rng = new Rng(0x5eed0001);
    let compared = 0;
    for (let i = 0; i < 400; i++) {
      const model = generateRequest(rng);
      const expected = expectedInput(model);
      const variants: [string, Buffer][] = [
        ["whole", encodeRequest(rng, model, { split: false, unknownP: 0, noise: false })],
        ["whole + unknown fields", encodeRequest(rng, model, { split: false, unknownP: 0.5, noise: false })],
        ["split", encodeRequest(rng, model, { split: true, unknownP: 0, noise: false })],
        ["split + unknown fields + overridden values", encodeRequest(rng, model, { split: true, unknownP: 0.4, noise: true })],
      ];
      for (const [variant, bytes] of variants) {
        const where = `seed 0x5eed0001 case ${i} (${variant}, ${bytes.length} bytes)`;
        const reference = normalize(referenceInput(bytes));
        expect(reference, `${where}: the generator's own expectation disagrees with the reference`).to.deep.equal(expected);
        for (const [container, input] of containers(bytes)) {
          expect(normalize(readCheckInput(input)), `${where}, ${container}`).to.deep.equal(expected);
          compared++;
        }
      }
    }
    expect(compared).to.equal(400 * 4 * 3);
  });

  it("returns null-prototype records that hold any name as an own key (__proto__, constructor)", () => {
    const bytes = cat(inHttp(handEntry(new Rng(1), 3, "__proto__", "p"), handEntry(new Rng(2), 3, "constructor", "c")), inAttributes(ld(10, str(1, "__proto__"), str(2, "x"))));
    const input = readCheckInput(bytes);
    expect(Object.getPrototypeOf(input.headers)).to.equal(null);
    expect(Object.getPrototypeOf(input.contextExtensions)).to.equal(null);
    expect(Object.keys(input.headers).sort()).to.deep.equal(["__proto__", "constructor"]);
    expect(Object.getOwnPropertyDescriptor(input.headers, "__proto__")?.value).to.equal("p");
    expect(Object.getOwnPropertyDescriptor(input.contextExtensions, "__proto__")?.value).to.equal("x");
    expect(({} as Record<string, unknown>).x).to.equal(undefined);
    expect(normalize(input)).to.deep.equal(normalize(referenceInput(bytes)));
  });

  it("merges as protobuf does: later scalars and map values win, the first position of a name decides the join order", () => {
    // headers: "X-A" first, then "x-b", then "x-a"; then "X-A" again with a new value (keeps its first position).
    const bytes = cat(
      inHttp(str(2, "GET"), ld(3, str(1, "X-A"), str(2, "1")), ld(3, str(1, "x-b"), str(2, "b"))),
      inHttp(ld(3, str(1, "x-a"), str(2, "2")), str(2, "POST")),
      inHttp(ld(3, str(2, "3"), str(1, "X-A"))),
      inHttp(str(4, "/p"), str(11, "text body"), ld(12, Buffer.from([1, 2])), ld(12)),
      inAttributes(ld(10, str(1, "stage"), str(2, "TEST")), ld(10, str(1, "api_id"), str(2, "a"))),
      inAttributes(ld(10, str(1, "stage"), str(2, "RELEASE"))),
      inAttributes(ld(10, str(1, "stage"))), // a missing value is ""
    );
    const input = readCheckInput(bytes);
    expect(input.method).to.equal("POST");
    expect(input.path).to.equal("/p");
    expect({ ...input.headers }).to.deep.equal({ "x-a": "3,2", "x-b": "b" });
    expect(input.body).to.equal("text body"); // the empty raw_body replaced the earlier one
    expect({ ...input.contextExtensions }).to.deep.equal({ stage: "", api_id: "a" });
    expect(normalize(input)).to.deep.equal(normalize(referenceInput(bytes)));
  });

  it("takes the source address from the last socket_address case only; the destination never leaks in", () => {
    const socket = (...fields: Buffer[]) => inAttributes(ld(1, ld(1, ld(1, ...fields))));
    const pipe = inAttributes(ld(1, ld(1, ld(2, str(1, "/run/sock")))));
    const internal = inAttributes(ld(1, ld(1, ld(3, str(1, "listener")))));
    const destination = inAttributes(ld(2, ld(1, ld(1, str(2, "192.0.2.99")))));
    const cases: [string, Buffer, string | undefined][] = [
      ["socket", socket(str(2, "203.0.113.1"), vint(3, 443)), "203.0.113.1"],
      ["socket then port only (merge)", cat(socket(str(2, "203.0.113.1")), socket(vint(3, 1))), "203.0.113.1"],
      ["socket then pipe", cat(socket(str(2, "203.0.113.1")), pipe), undefined],
      ["socket, pipe, socket without address (starts over)", cat(socket(str(2, "203.0.113.1")), pipe, socket(vint(3, 1))), ""],
      ["internal then socket", cat(internal, socket(str(2, "198.51.100.2"))), "198.51.100.2"],
      ["socket then internal", cat(socket(str(2, "198.51.100.2")), internal), undefined],
      ["destination only", destination, undefined],
      ["destination after source", cat(socket(str(2, "203.0.113.5")), destination), "203.0.113.5"],
      ["source peer without address", inAttributes(ld(1, str(4, "spiffe://x"))), undefined],
      ["explicit empty address", cat(socket(str(2, "203.0.113.1")), socket(str(2, ""))), ""],
    ];
    for (const [name, bytes, expected] of cases) {
      expect(readCheckInput(bytes).sourceAddress, name).to.equal(expected);
      expect(referenceInput(bytes).sourceAddress, `${name} (reference)`).to.equal(expected);
    }
  });

  it("reads header_map only when headers is empty, decoding raw_value leniently", () => {
    const entry = (...fields: Buffer[]) => ld(1, ...fields);
    const headerMap = ld(13, entry(str(1, "X-Key"), str(2, "v1")), entry(str(1, "x-key"), ld(3, Buffer.from([0x61, 0xff, 0x62]))), entry(str(1, "empty")), entry(ld(3, Buffer.from("\ufeffbom"))));
    const onlyMap = inHttp(headerMap);
    expect({ ...readCheckInput(onlyMap).headers }).to.deep.equal({ "x-key": "v1,a\ufffdb", empty: "", "": "bom" });
    const both = inHttp(headerMap, ld(3, str(1, "x-other"), str(2, "o")));
    expect({ ...readCheckInput(both).headers }).to.deep.equal({ "x-other": "o" });
    for (const bytes of [onlyMap, both]) expect(normalize(readCheckInput(bytes))).to.deep.equal(normalize(referenceInput(bytes)));
  });

  it("falls back to the :path header only when path is empty", () => {
    const withHeader = inHttp(ld(3, str(1, ":path"), str(2, "/from-header?a=1")));
    expect(readCheckInput(withHeader).path).to.equal("/from-header?a=1");
    expect(readCheckInput(cat(withHeader, inHttp(str(4, "/p")))).path).to.equal("/p");
    expect(readCheckInput(inHttp(ld(3, str(1, ":PATH"), str(2, "/x")))).path).to.equal("");
    expect(readCheckInput(Buffer.alloc(0))).to.deep.include({ method: "", path: "", host: "", body: undefined, sourceAddress: undefined });
  });

  it("checks every string for UTF-8 as the reference does, in used and unused fields; client text is flagged instead", () => {
    const rng = new Rng(0x5eed0002);
    const FRAGMENTS = [[0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf], [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0x80], [0xbf], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xef, 0xbb, 0xbf], [0xff], [0xfe], [0x00], [0x41], [0x7f]];
    const places: [string, (b: Buffer) => Buffer][] = [
      ["method", (b) => inHttp(ld(2, b))],
      ["path", (b) => inHttp(ld(4, b))],
      ["host", (b) => inHttp(ld(5, b))],
      ["body", (b) => inHttp(ld(11, b))],
      ["header name", (b) => inHttp(ld(3, ld(1, b), str(2, "v")))],
      ["header value", (b) => inHttp(ld(3, str(1, "k"), ld(2, b)))],
      ["context key", (b) => inAttributes(ld(10, ld(1, b), str(2, "v")))],
      ["context value", (b) => inAttributes(ld(10, str(1, "k"), ld(2, b)))],
      ["source address", (b) => inAttributes(ld(1, ld(1, ld(1, ld(2, b)))))],
      ["unused: http id", (b) => inHttp(ld(1, b))],
      ["unused: scheme", (b) => inHttp(ld(6, b))],
      ["unused: protocol", (b) => inHttp(ld(10, b))],
      ["header_map key", (b) => inHttp(ld(13, ld(1, ld(1, b))))],
      ["header_map value", (b) => inHttp(ld(13, ld(1, ld(2, b))))],
      ["unused: destination principal", (b) => inAttributes(ld(2, ld(4, b)))],
      ["unused: source label key", (b) => inAttributes(ld(1, ld(3, ld(1, b))))],
      ["unused: pipe path", (b) => inAttributes(ld(1, ld(1, ld(2, ld(1, b)))))],
      ["unused: named port", (b) => inAttributes(ld(1, ld(1, ld(1, ld(4, b)))))],
      ["unused: tls sni", (b) => inAttributes(ld(12, ld(1, b)))],
    ];
    // The client's own text: flagged (a 400 decision) rather than a failed call; a body becomes bytes.
    const FLAGGED: Record<string, "header" | "path" | "body"> = {
      path: "path", host: "header", body: "body", "header name": "header", "header value": "header", "header_map key": "header", "header_map value": "header",
    };
    let rejected = 0;
    let accepted = 0;
    let flagged = 0;
    for (let i = 0; i < 3000; i++) {
      const parts: number[] = [];
      for (let n = rng.range(1, 4); n > 0; n--) parts.push(...rng.pick(FRAGMENTS));
      const [place, frame] = rng.pick(places);
      const raw = Buffer.from(parts);
      const bytes = frame(raw);
      const where = `${place} <${raw.toString("hex")}>`;
      const reference = attempt(() => referenceInput(bytes));
      if (reference.ok) {
        expect(normalize(readCheckInput(bytes)), where).to.deep.equal(reference.value);
        accepted++;
      } else if (FLAGGED[place]) {
        const input = readCheckInput(bytes);
        expect(input.invalidUtf8, where).to.equal(FLAGGED[place]);
        const lenient = new TextDecoder().decode(raw);
        if (place === "path") expect(input.path, where).to.equal(lenient);
        else if (place === "host") expect(input.host, where).to.equal(lenient);
        else if (place === "body") expect(Buffer.from(input.body as Uint8Array).equals(raw), where).to.equal(true);
        else if (place.endsWith("key") || place.endsWith("name")) expect(Object.keys(input.headers), where).to.deep.equal([lenient.toLowerCase()]);
        else expect(Object.values(input.headers), where).to.deep.equal([lenient]);
        flagged++;
      } else {
        expectWireError(bytes, where, /not valid UTF-8/);
        rejected++;
      }
    }
    expect(rejected).to.be.greaterThan(300);
    expect(accepted).to.be.greaterThan(500);
    expect(flagged).to.be.greaterThan(300);
  });

  it("keeps a leading U+FEFF in strings (text, not a byte-order mark) and returns raw_body bytes as sent", () => {
    const raw = Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a]);
    const bytes = inHttp(str(2, "\ufeffGET"), ld(12, raw));
    const input = readCheckInput(bytes);
    expect(input.method).to.equal("\ufeffGET");
    expect(Buffer.from(input.body as Uint8Array).equals(raw)).to.equal(true);
    expect(normalize(input)).to.deep.equal(normalize(referenceInput(bytes)));
  });

  it("decodes a large request (1 MiB raw body, 3000 headers, 200 KiB header value) like the reference", () => {
    const rng = new Rng(0x5eed0003);
    const headers: [string, string][] = Array.from({ length: 3000 }, (_, i) => [`x-h-${i}`, text(rng, 3)]);
    headers.push(["x-big", "é".repeat(100 * 1024)]);
    const bytes = ref(rng, { attributes: { request: { http: { method: "POST", path: "/upload", headers: withOwnKeys(headers), rawBody: rng.bytes(1024 * 1024) } } } }, 0);
    expect(normalize(readCheckInput(bytes))).to.deep.equal(normalize(referenceInput(bytes)));
  });
});

/* ------------------------------------------------------------------ malformed requests */

/** Every field of every shape wire.ts reads, with how to wrap bytes into that place. */
function fieldPlaces(): { name: string; kind: FieldKind; wrap: (inner: Buffer) => Buffer }[] {
  const out: { name: string; kind: FieldKind; wrap: (inner: Buffer) => Buffer }[] = [];
  const visit = (shape: MessageShape, prefix: string, wrap: (inner: Buffer) => Buffer, seen: Set<string>) => {
    for (const [no, kind] of shape.fields) {
      const name = `${prefix}.${no}`;
      out.push({ name, kind, wrap });
      if (typeof kind === "object" && !seen.has(kind.typeName)) visit(kind, `${name}(${kind.typeName.split(".").pop()})`, (inner) => wrap(ld(no, inner)), new Set([...seen, kind.typeName]));
    }
  };
  visit(CHECK_REQUEST_SHAPE, "CheckRequest", (inner) => inner, new Set([CHECK_REQUEST_SHAPE.typeName]));
  return out;
}

/** A field of `no` with wire type `wireType` and a well-framed value. */
function fieldWith(no: number, wireType: number): Buffer {
  switch (wireType) {
    case 0:
      return cat(tag(no, 0), [1]);
    case 1:
      return cat(tag(no, 1), Buffer.alloc(8));
    case 5:
      return cat(tag(no, 5), Buffer.alloc(4));
    case 2:
      return ld(no);
    default:
      return cat(tag(no, 3), tag(no, 4));
  }
}

describe("ext_authz wire codec: malformed CheckRequests", function () {
  this.timeout(120_000);

  const truncatedOrBad: [string, number[], RegExp][] = [
    ["a tag alone", [0x0a], /truncated varint/],
    ["a truncated length varint", [0x0a, 0x80], /truncated varint/],
    ["a truncated tag varint", [0x80], /truncated varint/],
    ["a length past the end", [0x0a, 0x05, 0x00], /length past the end/],
    ["a huge length", [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01], /length past the end/],
    ["a length varint over 32 bits", [0x0a, 0xff, 0xff, 0xff, 0xff, 0x1f], /overflows 32 bits/],
    ["a 6-byte length varint", [0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00], /overflows 32 bits/],
    ["a tag varint over 32 bits", [0xff, 0xff, 0xff, 0xff, 0x1f, 0x00], /overflows 32 bits/],
    ["field number 0", [0x02, 0x00], /illegal tag/],
    ["wire type 6", [0x0e, 0x00], /illegal tag/],
    ["wire type 7", [0x0f, 0x00], /illegal tag/],
    ["an end group without a start", [0x2c], /unexpected wire type 4/],
    ["an unmatched end group", [0x2b, 0x34], /unmatched end group/],
    ["a group never closed", [0x2b, 0x08, 0x01], /truncated varint/],
    ["an unknown varint of 11 bytes", [0x28, ...Array(10).fill(0xff), 0x01], /longer than 10 bytes/],
    ["a truncated unknown varint", [0x28, 0xff], /truncated varint/],
    ["a truncated fixed64", [0x29, 1, 2, 3, 4, 5, 6, 7], /truncated fixed64/],
    ["a truncated fixed32", [0x2d, 1, 2, 3], /truncated fixed32/],
    ["an unknown length-delimited field past the end", [0x2a, 0x03, 0x00], /length past the end/],
  ];
  for (const [name, bytes, pattern] of truncatedOrBad) {
    it(`rejects ${name}`, () => {
      const error = expectWireError(Buffer.from(bytes), name, pattern);
      expect(error.message).to.match(/^malformed CheckRequest: .* at byte \d+$/);
    });
  }

  it("accepts the largest well-formed cases next to those: 10-byte varints, 5-byte tags, field number 2^29-1", () => {
    const bytes = cat([0x28, ...Array(9).fill(0xff), 0x01], tag(2 ** 29 - 1, 0), [0], [0x0a, 0x80, 0x80, 0x80, 0x80, 0x00]);
    expect(normalize(readCheckInput(bytes))).to.deep.equal(normalize(referenceInput(bytes)));
  });

  it("rejects a nested length that runs past its enclosing message (even where the reference reads on)", () => {
    // attributes (2 bytes) holds request whose length (5) runs into the bytes after attributes.
    const bytes = Buffer.from([0x0a, 0x02, 0x22, 0x05, 0x0a, 0x00, 0x0a, 0x00, 0x00]);
    expectWireError(bytes, "nested length past its parent", /length past the end/);
    const headerEntry = inHttp(Buffer.from([0x1a, 0x04, 0x0a, 0x09, 0x61, 0x62]));
    expectWireError(headerEntry, "map entry key past the entry", /length past the end/);
  });

  it("limits nested groups in unknown fields to 100 levels, without recursing further", () => {
    // Field 20 (unknown everywhere): `depth` start-group tags, then as many end-group tags.
    const nested = (depth: number) => Buffer.concat([Buffer.alloc(depth * 2, tag(20, 3)), Buffer.alloc(depth * 2, tag(20, 4))]);
    const base = inHttp(str(2, "GET"));
    // The reference counts the enclosing message as one level (99 groups at the top); wire.ts allows
    // 100 per unknown field at any depth: unknown fields are skipped either way, the input is the same.
    expect(normalize(readCheckInput(cat(base, nested(99))))).to.deep.equal(normalize(referenceInput(cat(base, nested(99)))));
    expect(normalize(readCheckInput(cat(base, nested(100))))).to.deep.equal(normalize(readCheckInput(base)));
    expectWireError(nested(101), "101 nested groups", /nested too deeply/);
    expectWireError(nested(200_000), "200000 nested groups", /nested too deeply/);
    expectWireError(inHttp(nested(101)), "101 nested groups inside http", /nested too deeply/);
  });

  it("rejects a wrong wire type on every known field of every message it reads", () => {
    let checked = 0;
    for (const place of fieldPlaces()) {
      const no = Number(place.name.slice(place.name.lastIndexOf(".") + 1));
      const right = place.kind === VARINT ? 0 : 2;
      // The right wire type with a well-framed (empty or zero) value is accepted: the test is not vacuous.
      expect(() => readCheckInput(place.wrap(fieldWith(no, right))), `${place.name} with wire type ${right}`).to.not.throw();
      for (const wrong of [0, 1, 2, 3, 5].filter((w) => w !== right)) {
        expectWireError(place.wrap(fieldWith(no, wrong)), `${place.name} with wire type ${wrong}`);
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(150);
  });

  it("rejects a varint field sent packed (length-delimited) and a map entry whose key or value is not length-delimited", () => {
    expectWireError(inAttributes(ld(1, ld(1, ld(1, ld(3, [0x01, 0x02]))))), "port_value packed", /not a varint/);
    expectWireError(inHttp(ld(9, [0x01])), "size packed", /not a varint/);
    expectWireError(inHttp(ld(3, vint(1, 5), str(2, "v"))), "header key as varint");
    expectWireError(inAttributes(ld(10, str(1, "k"), cat(tag(2, 5), [0, 0, 0, 0]))), "context value as fixed32");
  });

  it("rejects invalid UTF-8 in every string field of every message it reads (and the reference agrees), except the client's text", () => {
    // HttpRequest headers (3), path (4), host (5), body (11) and HeaderValue key/value: flagged instead.
    const clientText = (name: string) => /\(HttpRequest\)\.(3|4|5|11)$/.test(name) || /\(HeaderValue\)\.(1|2)$/.test(name);
    let checked = 0;
    let flagged = 0;
    for (const place of fieldPlaces()) {
      const no = Number(place.name.slice(place.name.lastIndexOf(".") + 1));
      const bad = Buffer.from([0x61, 0xc3, 0x28]);
      const candidates: Buffer[] = [];
      if (place.kind === STRING) candidates.push(place.wrap(ld(no, bad)));
      if (place.kind === STRING_MAP) candidates.push(place.wrap(ld(no, ld(1, bad), str(2, "v"))), place.wrap(ld(no, str(1, "k"), ld(2, bad))));
      for (const bytes of candidates) {
        const reference = attempt(() => referenceInput(bytes));
        expect(reference.ok, `${place.name} (reference)`).to.equal(false);
        if (clientText(place.name)) {
          expect(flaggedWhereReferenceRejects(normalize(readCheckInput(bytes)), (reference as { error: unknown }).error), place.name).to.equal(true);
          flagged++;
        } else {
          expectWireError(bytes, place.name, /not valid UTF-8/);
          checked++;
        }
      }
    }
    expect(checked).to.be.greaterThan(20);
    expect(flagged).to.equal(7);
  });

  it("rejects garbage inside every message it reads, and does not look into opaque fields (as documented)", () => {
    let opaque = 0;
    for (const place of fieldPlaces()) {
      const no = Number(place.name.slice(place.name.lastIndexOf(".") + 1));
      const garbage = place.wrap(ld(no, [0x07, 0x01])); // tag with field number 0
      if (typeof place.kind === "object" || place.kind === STRING_MAP) expectWireError(garbage, place.name, /illegal tag/);
      else if (place.kind === OPAQUE) {
        // metadata, internal addresses, bytes: the framing is checked, the contents are not decoded.
        expect(() => readCheckInput(garbage), place.name).to.not.throw();
        expectWireError(place.wrap(cat(tag(no, 2), [0x05, 0x00])), `${place.name}: length past the end`, /length past the end/);
        opaque++;
      }
    }
    expect(opaque).to.be.greaterThan(4);
    // metadata_context with garbage inside: the check's input is as without it.
    const base = inHttp(str(2, "GET"), str(4, "/x"));
    expect(normalize(readCheckInput(cat(base, inAttributes(ld(11, [0xff, 0xff])))))).to.deep.equal(normalize(readCheckInput(base)));
  });

  it("throws a WireFormatError for every strict prefix of a request", () => {
    const rng = new Rng(0x5eed0004);
    let prefixes = 0;
    for (let i = 0; i < 40; i++) {
      const model = generateRequest(rng);
      model.headers = model.headers.slice(0, 20);
      model.body = model.body.slice(0, 200);
      if (model.rawBody) model.rawBody = model.rawBody.subarray(0, 200);
      // One attributes field at the top: every strict prefix cuts it short.
      const whole = encodeRequest(rng, { ...model, source: model.source.slice(0, 1) }, { split: false, unknownP: 0.3, noise: false });
      const attributes = fromBinary(REQUEST, whole) as unknown as { $unknown?: unknown };
      delete attributes.$unknown; // no unknown fields after attributes at the top
      const bytes = Buffer.from(toBinary(REQUEST, attributes as unknown as Message));
      if (bytes.length === 0) continue;
      expect(bytes[0]).to.equal(0x0a);
      for (let cut = 1; cut < bytes.length; cut++) {
        expectWireError(bytes.subarray(0, cut), `case ${i} cut at ${cut} of ${bytes.length}`);
        prefixes++;
      }
      expect(normalize(readCheckInput(bytes))).to.deep.equal(normalize(referenceInput(bytes)));
    }
    expect(prefixes).to.be.greaterThan(5000);
  });

  it("with nested contents cut short (and the outer length fixed): a WireFormatError or the reference's value", () => {
    const rng = new Rng(0x5eed0005);
    let errors = 0;
    let values = 0;
    for (let i = 0; i < 80; i++) {
      const model = generateRequest(rng, { opaque: false });
      model.headers = model.headers.slice(0, 6);
      model.body = model.body.slice(0, 40);
      if (model.rawBody) model.rawBody = model.rawBody.subarray(0, 40);
      const content = Buffer.from(toBinary(desc("envoy.service.auth.v3.AttributeContext"), (fromBinary(REQUEST, encodeRequest(rng, model, { split: false, unknownP: 0.3, noise: false })) as unknown as { attributes: Message }).attributes ?? create(ATTRIBUTE_CONTEXT)));
      const cuts = content.length <= 600 ? Array.from({ length: content.length + 1 }, (_, c) => c) : Array.from({ length: 600 }, () => rng.int(content.length + 1));
      for (const cut of cuts) {
        const bytes = ld(1, content.subarray(0, cut));
        const wire = attempt(() => readCheckInput(bytes));
        if (!wire.ok) {
          expect(wire.error, `case ${i} cut ${cut}`).to.be.instanceOf(WireFormatError);
          errors++;
          continue;
        }
        const reference = attempt(() => referenceInput(bytes));
        if (!reference.ok && flaggedWhereReferenceRejects(wire.value, reference.error)) {
          values++; // a multi-byte character of the client's text cut in two
          continue;
        }
        expect(reference.ok, `case ${i} cut ${cut}: wire.ts accepted what the reference rejects`).to.equal(true);
        expect(wire.value, `case ${i} cut ${cut}`).to.deep.equal((reference as { value: Normalized }).value);
        values++;
      }
    }
    expect(errors).to.be.greaterThan(5000);
    expect(values).to.be.greaterThan(80);
  });

  it("under random byte mutations: a WireFormatError, or exactly the reference's value, never anything else", () => {
    const rng = new Rng(0x5eed0006);
    const counts = { error: 0, same: 0, opaque: 0, flagged: 0 };
    for (let i = 0; i < 300; i++) {
      const model = generateRequest(rng, { opaque: false });
      model.headers = model.headers.slice(0, 15);
      const original = encodeRequest(rng, model, { split: rng.chance(0.5), unknownP: 0.3, noise: true });
      for (let m = 0; m < 40; m++) {
        const bytes = Buffer.from(original);
        const mutated = mutate(rng, bytes);
        const where = `case ${i} mutation ${m}`;
        const wire = attempt(() => readCheckInput(mutated));
        if (!wire.ok) {
          expect(wire.error, `${where}: ${String(wire.error)}`).to.be.instanceOf(WireFormatError);
          counts.error++;
          continue;
        }
        const reference = attempt(() => referenceInput(mutated));
        if (reference.ok) {
          expect(wire.value, where).to.deep.equal(reference.value);
          counts.same++;
        } else if (flaggedWhereReferenceRejects(wire.value, reference.error)) {
          counts.flagged++;
        } else {
          // Only where the mutation made a field wire.ts does not look into (documented), which the reference decodes.
          expect(holdsOpaque(mutated), `${where}: wire.ts accepted bytes the reference rejects (${String(reference.error)})`).to.equal(true);
          counts.opaque++;
        }
      }
    }
    expect(counts.error).to.be.greaterThan(2000);
    expect(counts.same).to.be.greaterThan(1000);
  });
});

function mutate(rng: Rng, bytes: Buffer): Buffer {
  let out = bytes;
  for (let n = rng.range(1, 3); n > 0; n--) {
    if (out.length === 0) return Buffer.from([rng.int(256)]);
    const at = rng.int(out.length);
    switch (rng.int(5)) {
      case 0:
        out[at] = rng.int(256);
        break;
      case 1:
        out[at]! ^= 1 << rng.int(8);
        break;
      case 2:
        out = cat(out.subarray(0, at), [rng.pick([0x00, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x22, 0x03, 0x04, rng.int(256)])], out.subarray(at));
        break;
      case 3:
        out = cat(out.subarray(0, at), out.subarray(at + 1));
        break;
      default:
        out[at] = rng.pick([0x00, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 0x0e, 0x0f]);
    }
  }
  return out;
}

/* ------------------------------------------------------------------ responses */

/*
 * The reference for responses is what Envoy reads: the bytes are decoded with Envoy's
 * descriptors and turned into proto3 JSON (what Envoy's own JSON form of a CheckResponse is),
 * which must equal the JSON written here by hand from the decision, in the shape the README
 * documents (dynamic_metadata a flat Struct `{"credential": "API_KEY", ...}`). Nothing of the
 * project's own encoder is used to build the expectation.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** envoy.type.v3.StatusCode names (proto3 JSON writes enums by name; numbers outside the enum as numbers). */
const HTTP_STATUS_NAMES: Record<number, string> = {
  200: "OK", 400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
  413: "PayloadTooLarge", 414: "URITooLong", 429: "TooManyRequests", 431: "RequestHeaderFieldsTooLarge",
  500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
};

/** HeaderValueOption list in proto3 JSON (empty strings are default values: omitted). */
const intendedOptions = (headers: Record<string, string>): Json[] =>
  Object.entries(headers).map(([key, value]) => {
    const header: { [key: string]: Json } = {};
    if (key) header.key = wf(key);
    if (value) header.value = wf(value);
    return { header, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" };
  });

/** The CheckResponse a decision means, as proto3 JSON, built here from the decision alone. */
function intended(decision: Decision): Json {
  if (decision.allowed) {
    const ok: { [key: string]: Json } = {};
    if (Object.keys(decision.upstreamHeaders).length) ok.headers = intendedOptions(decision.upstreamHeaders);
    if (decision.removeHeaders.length) ok.headersToRemove = decision.removeHeaders.map(wf);
    if (Object.keys(decision.responseHeaders).length) ok.responseHeadersToAdd = intendedOptions(decision.responseHeaders);
    if (decision.removeQueryParameters.length) ok.queryParametersToRemove = decision.removeQueryParameters.map(wf);
    const metadata: { [key: string]: Json } = { credential: decision.identity.credential, request_id: wf(decision.requestId) };
    if (decision.identity.consumer) metadata.consumer = wf(decision.identity.consumer);
    if (decision.identity.appId) metadata.app_id = wf(decision.identity.appId);
    if (decision.degraded) metadata.degraded = "true";
    return { status: {}, okResponse: ok, dynamicMetadata: metadata };
  }
  const status: { [key: string]: Json } = {};
  const code = grpcCodeFor(decision.status);
  if (code) status.code = code;
  if (decision.message) status.message = wf(decision.message);
  const denied: { [key: string]: Json } = { status: decision.status === 0 ? {} : { code: HTTP_STATUS_NAMES[decision.status] ?? decision.status } };
  if (Object.keys(decision.headers).length) denied.headers = intendedOptions(decision.headers);
  if (decision.body) denied.body = wf(decision.body);
  return { status, deniedResponse: denied };
}

/** What Envoy reads from `bytes`: decoded with its descriptors (no unknown fields anywhere), as proto3 JSON. */
function decodedResponse(bytes: Uint8Array): Json {
  const message = fromBinary(RESPONSE, bytes);
  expectNoUnknown(message, "CheckResponse");
  return toJson(RESPONSE, message) as Json;
}

function expectNoUnknown(value: unknown, path: string): void {
  if (!value || typeof value !== "object") return;
  if (value instanceof Uint8Array) return;
  expect((value as { $unknown?: unknown }).$unknown, `${path} has unknown fields`).to.equal(undefined);
  for (const [k, v] of Object.entries(value)) expectNoUnknown(v, `${path}.${k}`);
}

const CREDENTIALS = ["API_KEY", "SUBSCRIPTION", "SIGNATURE", "APPCODE", "NONE"] as const;
const STATUSES = [400, 401, 403, 404, 405, 413, 414, 429, 431, 500, 502, 503, 504, 0, 200, 999];

function record(rng: Rng, n: number, key: () => string, value: () => string): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[key()] = value();
  return out;
}

function responseText(rng: Rng, max = 12): string {
  let s = text(rng, max);
  if (rng.chance(0.05)) s += rng.pick(["\ud800", "\udfff", "a\udc00b"]); // lone surrogates: written as U+FFFD
  if (rng.chance(0.03)) s += "x".repeat(rng.pick([127, 128, 16_383, 16_384, 70_000]));
  return s;
}

function generateDecision(rng: Rng): Decision {
  const requestId = rng.chance(0.8) ? `req-${rng.int(1e9)}` : responseText(rng, 4);
  if (rng.chance(0.5)) {
    const decision: AllowDecision = {
      allowed: true,
      requestId,
      upstreamHeaders: record(rng, rng.range(0, 8), () => headerName(rng), () => responseText(rng)),
      removeHeaders: Array.from({ length: rng.range(0, 6) }, () => (rng.chance(0.1) ? "" : headerName(rng))),
      removeQueryParameters: Array.from({ length: rng.range(0, 4) }, () => (rng.chance(0.1) ? "" : responseText(rng, 3))),
      responseHeaders: record(rng, rng.range(0, 4), () => headerName(rng), () => responseText(rng)),
      identity: {
        credential: rng.pick(CREDENTIALS),
        ...(rng.chance(0.7) ? { consumer: rng.chance(0.1) ? "" : responseText(rng, 4) } : {}),
        ...(rng.chance(0.5) ? { appId: rng.chance(0.1) ? "" : responseText(rng, 4) } : {}),
      },
      ...(rng.chance(0.2) ? { degraded: true } : rng.chance(0.2) ? { degraded: false } : {}),
    };
    return decision;
  }
  const decision: DenyDecision = {
    allowed: false,
    requestId,
    reason: "internalError",
    status: rng.pick(STATUSES),
    code: "X000XX",
    message: responseText(rng),
    headers: record(rng, rng.range(0, 6), () => headerName(rng), () => responseText(rng)),
    body: rng.chance(0.1) ? "" : rng.chance(0.05) ? "{".repeat(rng.range(100_000, 300_000)) : JSON.stringify({ code: "X", message: responseText(rng) }),
    credential: rng.pick(CREDENTIALS),
  };
  return decision;
}

function checkResponse(decision: Decision, where: string): void {
  const bytes = writeCheckResponse(decision);
  expect(decodedResponse(bytes), where).to.deep.equal(intended(decision));
  // The generic encoder (protocol.ts, used by the test client) means the same.
  expect(decodedResponse(encodeCheckResponse(checkResponseOf(decision))), `${where}: generic encoder`).to.deep.equal(intended(decision));
  const framed = writeCheckResponse(decision, 5);
  expect(framed.length, `${where}: reserve`).to.equal(bytes.length + 5);
  expect(framed.subarray(5).equals(bytes), `${where}: reserve`).to.equal(true);
}

describe("ext_authz wire codec: CheckResponse", function () {
  this.timeout(120_000);

  it("writes generated decisions that Envoy's descriptors decode to the intended response (proto3 JSON)", () => {
    const rng = new Rng(0x5eed0007);
    for (let i = 0; i < 600; i++) checkResponse(generateDecision(rng), `seed 0x5eed0007 decision ${i}`);
  });

  it("gets every nested length right across varint size boundaries (metadata values, header values, bodies)", () => {
    const lengths = [...Array.from({ length: 300 }, (_, i) => i), ...Array.from({ length: 140 }, (_, i) => 16_260 + i), 2_097_000, 2_097_151, 2_097_152, 2_097_300];
    for (const n of lengths) {
      const v = "v".repeat(n);
      const allow: AllowDecision = {
        allowed: true,
        requestId: v,
        upstreamHeaders: { "x-consumer": v },
        removeHeaders: [v],
        removeQueryParameters: [v],
        responseHeaders: { [v || "k"]: "" },
        identity: { credential: "API_KEY", consumer: v || "c", appId: "é".repeat(Math.floor(n / 2)) || "a" },
        degraded: n % 2 === 0,
      };
      checkResponse(allow, `allow, length ${n}`);
      const deny: DenyDecision = {
        allowed: false,
        requestId: "r",
        reason: "internalError",
        status: 401,
        code: "A401AK",
        message: v,
        headers: { "x-ca-error-message": v },
        body: v,
        credential: "NONE",
      };
      checkResponse(deny, `deny, length ${n}`);
    }
  });

  it("writes the exact shapes the check produces", () => {
    const allow = (over: Partial<AllowDecision>): AllowDecision => ({
      allowed: true,
      requestId: "4f1c0f0e-1111-4222-8333-444455556666",
      upstreamHeaders: {},
      removeHeaders: [],
      removeQueryParameters: [],
      responseHeaders: {},
      identity: { credential: "NONE" },
      ...over,
    });
    const minimal = allow({});
    checkResponse(minimal, "minimal allow");
    expect(decodedResponse(writeCheckResponse(minimal))).to.deep.equal({
      status: {},
      okResponse: {},
      dynamicMetadata: { credential: "NONE", request_id: "4f1c0f0e-1111-4222-8333-444455556666" },
    });
    const full = allow({
      upstreamHeaders: { "x-apigw-credential": "SUBSCRIPTION", "x-ca-app-id": "app-1", "x-empty": "" },
      removeHeaders: ["x-ca-key", "authorization", "x-api-key"],
      removeQueryParameters: ["apikey", "api_key"],
      responseHeaders: { "x-ca-request-id": "4f1c0f0e-1111-4222-8333-444455556666" },
      identity: { credential: "SUBSCRIPTION", consumer: "sub-1", appId: "app-1" },
      degraded: true,
    });
    checkResponse(full, "full allow");
    // As Envoy's JSON form of the message: the documented flat dynamic_metadata.
    expect(decodedResponse(writeCheckResponse(full))).to.deep.equal({
      status: {},
      okResponse: {
        headers: [
          { header: { key: "x-apigw-credential", value: "SUBSCRIPTION" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" },
          { header: { key: "x-ca-app-id", value: "app-1" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" },
          { header: { key: "x-empty" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" },
        ],
        headersToRemove: ["x-ca-key", "authorization", "x-api-key"],
        responseHeadersToAdd: [{ header: { key: "x-ca-request-id", value: "4f1c0f0e-1111-4222-8333-444455556666" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" }],
        queryParametersToRemove: ["apikey", "api_key"],
      },
      dynamicMetadata: { credential: "SUBSCRIPTION", request_id: "4f1c0f0e-1111-4222-8333-444455556666", consumer: "sub-1", app_id: "app-1", degraded: "true" },
    });

    const deny401: DenyDecision = {
      allowed: false,
      requestId: "r-1",
      reason: "invalidApiKey",
      status: 401,
      code: "A401KY",
      message: "Invalid API Key",
      headers: { "content-type": "application/json; charset=utf-8", "www-authenticate": 'ApiKey realm="apigw", header="API-Key"' },
      body: '{"code":"A401KY","message":"Invalid API Key"}',
      credential: "API_KEY",
    };
    checkResponse(deny401, "deny 401");
    expect(decodedResponse(writeCheckResponse(deny401))).to.deep.equal({
      status: { code: 16, message: "Invalid API Key" },
      deniedResponse: {
        status: { code: "Unauthorized" },
        headers: [
          { header: { key: "content-type", value: "application/json; charset=utf-8" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" },
          { header: { key: "www-authenticate", value: 'ApiKey realm="apigw", header="API-Key"' }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" },
        ],
        body: '{"code":"A401KY","message":"Invalid API Key"}',
      },
    });

    for (const status of STATUSES) {
      const deny: DenyDecision = {
        allowed: false,
        requestId: "r-1",
        reason: "internalError",
        status,
        code: "C",
        message: status === 0 ? "" : `Status ${status}`,
        headers: { "content-type": "application/json; charset=utf-8", "www-authenticate": 'APIKEY realm="x"', "retry-after": "1" },
        body: status === 200 ? "" : JSON.stringify({ code: "C", message: "m" }),
        credential: "API_KEY",
      };
      checkResponse(deny, `deny ${status}`);
    }
  });

  it("writes lone surrogates as U+FFFD with the right lengths", () => {
    const deny: DenyDecision = {
      allowed: false,
      requestId: "r",
      reason: "internalError",
      status: 400,
      code: "C",
      message: "a\ud800b",
      headers: { "x-\udfff": "\ud83d" },
      body: "\ud83d\ude00\ud83d",
      credential: "NONE",
    };
    checkResponse(deny, "lone surrogates");
    expect(decodedResponse(writeCheckResponse(deny))).to.deep.equal({
      status: { code: 7, message: "a\ufffdb" },
      deniedResponse: {
        status: { code: "BadRequest" },
        headers: [{ header: { key: "x-\ufffd", value: "\ufffd" }, appendAction: "OVERWRITE_IF_EXISTS_OR_ADD" }],
        body: "😀\ufffd",
      },
    });
  });

  it("maps HTTP statuses to gRPC codes", () => {
    expect([401, 429, 503, 500, 502, 504, 400, 403, 404, 0].map(grpcCodeFor)).to.deep.equal([16, 8, 14, 13, 13, 13, 7, 7, 7, 7]);
  });

  it("isLowerCase says whether toLowerCase() changes a name", () => {
    for (const name of ["", "x-a", "X-a", "x-A", "ä", "Ä", "x-ä", "x-Ä", "\u212a", "İ", "ß", "ſ", "123", ":path", "a".repeat(1000) + "B"]) {
      expect(isLowerCase(name), JSON.stringify(name)).to.equal(name.toLowerCase() === name);
    }
  });
});

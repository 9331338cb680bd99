import { create, fromBinary, ScalarType, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { loadEnvoyRegistry } from "../../control-plane/src/envoy/schema/registry";
import type { CheckInput, Decision } from "./check";
import { CHECK_REQUEST_SHAPE, OPAQUE, RESPONSE_LAYOUT, STRING, STRING_MAP, VARINT, grpcCodeFor, type MessageShape } from "./wire";

/**
 * The wire side of `envoy.service.auth.v3.Authorization/Check`: message schemas from the Envoy
 * descriptor set (the same registry the control plane validates Envoy resources with), binary
 * (de)serializers, and the conversions CheckRequest → CheckInput and Decision → CheckResponse.
 *
 * Two implementations of the conversions: the generic one here (@bufbuild/protobuf messages:
 * `decodeCheckRequest` + `checkInputOf`, `checkResponseOf` + `encodeCheckResponse`; the test
 * client uses these serializers) and the server's hot path in wire.ts (`readCheckInput`,
 * `writeCheckResponse`: bytes to CheckInput and Decision to bytes directly, several times
 * cheaper). They give the same CheckInput and responses of the same meaning; wire.ts is checked
 * against the descriptors by `assertWireLayout()` when the server starts.
 */

export const CHECK_METHOD_PATH = "/envoy.service.auth.v3.Authorization/Check";

function schema(name: string): DescMessage {
  const desc = loadEnvoyRegistry().getMessage(name);
  if (!desc) throw new Error(`${name} is not in the Envoy descriptor set`);
  return desc;
}

let schemas: { request: DescMessage; response: DescMessage } | undefined;

/** CheckRequest and CheckResponse descriptors (loaded once). */
export function checkSchemas(): { request: DescMessage; response: DescMessage } {
  schemas ??= {
    request: schema("envoy.service.auth.v3.CheckRequest"),
    response: schema("envoy.service.auth.v3.CheckResponse"),
  };
  return schemas;
}

// Shapes of the decoded messages this module reads and writes (@bufbuild/protobuf's generic
// messages use the proto fields' lowerCamelCase names; maps are plain objects, bytes Uint8Array).
interface HeaderValueJs {
  key: string;
  value: string;
  rawValue: Uint8Array;
}
interface HttpRequestJs {
  method: string;
  headers: Record<string, string>;
  headerMap?: { headers: HeaderValueJs[] };
  path: string;
  host: string;
  body: string;
  rawBody: Uint8Array;
}
interface CheckRequestJs {
  attributes?: {
    source?: { address?: { address: { case: string | undefined; value?: { address?: string } } } };
    request?: { http?: HttpRequestJs };
    contextExtensions: Record<string, string>;
  };
}

export function decodeCheckRequest(bytes: Uint8Array): Message {
  return fromBinary(checkSchemas().request, bytes, { readUnknownFields: false });
}

export function encodeCheckRequest(message: Message): Buffer {
  return Buffer.from(toBinary(checkSchemas().request, message));
}

export function decodeCheckResponse(bytes: Uint8Array): Message {
  return fromBinary(checkSchemas().response, bytes);
}

export function encodeCheckResponse(message: Message): Buffer {
  return Buffer.from(toBinary(checkSchemas().response, message));
}

const EXPECTED_WIRE_TYPE: Record<number, string> = { [VARINT]: "varint", [OPAQUE]: "message or bytes", [STRING]: "string", [STRING_MAP]: "map<string, string>" };

/**
 * Checks wire.ts's message shapes and field numbers against the Envoy descriptor set: every field
 * of every message read is known with the right kind, and every field written has the number
 * and type the descriptors give. Throws at start rather than misreading at run time.
 */
export function assertWireLayout(): void {
  const registry = loadEnvoyRegistry();
  const problems: string[] = [];
  const seen = new Set<string>();
  const checkShape = (shape: MessageShape) => {
    if (seen.has(shape.typeName)) return;
    seen.add(shape.typeName);
    const desc = registry.getMessage(shape.typeName);
    if (!desc) return void problems.push(`${shape.typeName} is not in the descriptor set`);
    for (const number of shape.fields.keys()) {
      if (!desc.fields.some((f) => f.number === number)) problems.push(`${shape.typeName} has no field ${number}`);
    }
    for (const field of desc.fields) {
      const kind = shape.fields.get(field.number);
      const where = `${shape.typeName}.${field.name} (${field.number})`;
      if (kind === undefined) {
        problems.push(`${where} is missing from the shape`);
        continue;
      }
      let ok: boolean;
      if (typeof kind === "object") {
        ok = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message");
        if (ok && field.message?.typeName !== kind.typeName) problems.push(`${where} is a ${field.message?.typeName}, not a ${kind.typeName}`);
        if (ok) checkShape(kind);
      } else if (kind === STRING) ok = (field.fieldKind === "scalar" || field.fieldKind === "list") && field.scalar === ScalarType.STRING;
      else if (kind === STRING_MAP) ok = field.fieldKind === "map" && field.mapKey === ScalarType.STRING && field.mapKind === "scalar" && field.scalar === ScalarType.STRING;
      else if (kind === OPAQUE) ok = field.fieldKind === "message" || (field.fieldKind === "scalar" && field.scalar === ScalarType.BYTES);
      else ok = field.fieldKind === "enum" || (field.fieldKind === "scalar" && VARINT_SCALARS.has(field.scalar));
      if (!ok) problems.push(`${where} is not a ${typeof kind === "object" ? kind.typeName : EXPECTED_WIRE_TYPE[kind]}`);
    }
  };
  checkShape(CHECK_REQUEST_SHAPE);
  for (const [typeName, fields] of Object.entries(RESPONSE_LAYOUT)) {
    const desc = registry.getMessage(typeName);
    if (!desc) {
      problems.push(`${typeName} is not in the descriptor set`);
      continue;
    }
    for (const [name, number] of Object.entries(fields)) {
      if (desc.fields.find((f) => f.name === name)?.number !== number) problems.push(`${typeName}.${name} is not field ${number}`);
    }
  }
  if (problems.length > 0) throw new Error(`ext_authz wire codec does not match the Envoy descriptors: ${problems.join("; ")}`);
}

const VARINT_SCALARS = new Set<ScalarType>([
  ScalarType.INT32, ScalarType.INT64, ScalarType.UINT32, ScalarType.UINT64, ScalarType.SINT32, ScalarType.SINT64, ScalarType.BOOL,
]);

/** Service definition for grpc-js over generic messages: binary in, binary out, no protobufjs/proto-loader involved. */
export function authorizationService(): ServiceDefinition {
  return {
    Check: {
      path: CHECK_METHOD_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (message: Message) => encodeCheckRequest(message),
      requestDeserialize: (bytes: Buffer) => decodeCheckRequest(bytes),
      responseSerialize: (message: Message) => encodeCheckResponse(message),
      responseDeserialize: (bytes: Buffer) => decodeCheckResponse(bytes),
      originalName: "check",
    },
  } as ServiceDefinition;
}

const utf8 = new TextDecoder("utf-8");

/** Null-prototype copy with lower-case names (Envoy already sends them lower-case). */
function lowerCaseHeaders(source: Record<string, string> | undefined, headerMap: HeaderValueJs[] | undefined): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  if (source) {
    for (const name of Object.keys(source)) {
      const value = source[name];
      if (typeof value !== "string") continue;
      const lower = name.toLowerCase();
      headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
    }
  }
  // Envoy fills `header_map` instead of `headers` when `encode_raw_headers` is on.
  if (headerMap && headerMap.length > 0 && Object.keys(headers).length === 0) {
    for (const entry of headerMap) {
      const lower = (entry.key ?? "").toLowerCase();
      const value = entry.value || (entry.rawValue && entry.rawValue.length > 0 ? utf8.decode(entry.rawValue) : "");
      headers[lower] = lower in headers ? `${headers[lower]},${value}` : value;
    }
  }
  return headers;
}

/** What check() needs from a decoded CheckRequest. Missing parts become empty values (and a 4xx decision). */
export function checkInputOf(message: Message): CheckInput {
  const request = message as unknown as CheckRequestJs;
  const attributes = request.attributes;
  const http = attributes?.request?.http;
  const source = attributes?.source?.address?.address;
  const contextExtensions: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(attributes?.contextExtensions ?? {})) contextExtensions[k] = v;
  let body: Uint8Array | string | undefined;
  if (http?.rawBody && http.rawBody.length > 0) body = http.rawBody;
  else if (http?.body) body = http.body;
  return {
    method: http?.method ?? "",
    path: http?.path || http?.headers?.[":path"] || "",
    host: http?.host ?? "",
    headers: lowerCaseHeaders(http?.headers, http?.headerMap?.headers),
    body,
    sourceAddress: source?.case === "socketAddress" ? source.value?.address : undefined,
    contextExtensions,
  };
}

const GRPC_OK = 0;

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

function headerOptions(headers: Record<string, string>) {
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, appendAction: OVERWRITE_IF_EXISTS_OR_ADD }));
}

/**
 * The CheckResponse for a decision.
 *
 * `dynamic_metadata` is a google.protobuf.Struct: @bufbuild/protobuf takes (and gives) a Struct
 * field as its JSON object, so `{ credential: "API_KEY", request_id: "…" }` is the Struct whose
 * fields are those string Values, which is what Envoy's access logs read
 * (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:credential)%`).
 */
export function checkResponseOf(decision: Decision): Message {
  const { response } = checkSchemas();
  if (decision.allowed) {
    const metadata: Record<string, string> = { credential: decision.identity.credential, request_id: decision.requestId };
    if (decision.identity.consumer) metadata.consumer = decision.identity.consumer;
    if (decision.identity.appId) metadata.app_id = decision.identity.appId;
    if (decision.degraded) metadata.degraded = "true";
    return create(response, {
      status: { code: GRPC_OK },
      httpResponse: {
        case: "okResponse",
        value: {
          headers: headerOptions(decision.upstreamHeaders),
          headersToRemove: decision.removeHeaders,
          queryParametersToRemove: decision.removeQueryParameters,
          responseHeadersToAdd: headerOptions(decision.responseHeaders),
        },
      },
      dynamicMetadata: metadata,
    } as never);
  }
  return create(response, {
    status: { code: grpcCodeFor(decision.status), message: decision.message },
    httpResponse: {
      case: "deniedResponse",
      value: {
        status: { code: decision.status },
        headers: headerOptions(decision.headers),
        body: decision.body,
      },
    },
  } as never);
}

import { create, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { loadEnvoyRegistry } from "../../control-plane/src/envoy/schema/registry";
import type { CheckInput, Decision } from "./check";

/**
 * The wire side of `envoy.service.auth.v3.Authorization/Check`: message schemas from the Envoy
 * descriptor set (the same registry the control plane validates Envoy resources with), strict
 * binary (de)serializers for grpc-js, and the conversions CheckRequest → CheckInput and
 * Decision → CheckResponse. The test client uses the same serializers.
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

/** Service definition for grpc-js: binary in, binary out, no protobufjs/proto-loader involved. */
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

// google.rpc.Code values used in CheckResponse.status.
const GRPC_OK = 0;
const GRPC_PERMISSION_DENIED = 7;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_UNAVAILABLE = 14;
const GRPC_UNAUTHENTICATED = 16;
const GRPC_INTERNAL = 13;

/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

function headerOptions(headers: Record<string, string>) {
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, appendAction: OVERWRITE_IF_EXISTS_OR_ADD }));
}

function grpcCodeFor(status: number): number {
  if (status === 401) return GRPC_UNAUTHENTICATED;
  if (status === 429) return GRPC_RESOURCE_EXHAUSTED;
  if (status === 503) return GRPC_UNAVAILABLE;
  if (status >= 500) return GRPC_INTERNAL;
  return GRPC_PERMISSION_DENIED;
}

function stringValue(value: string) {
  return { kind: { case: "stringValue", value } };
}

/** The CheckResponse for a decision. */
export function checkResponseOf(decision: Decision): Message {
  const { response } = checkSchemas();
  if (decision.allowed) {
    const metadata: Record<string, ReturnType<typeof stringValue>> = {
      credential: stringValue(decision.identity.credential),
      request_id: stringValue(decision.requestId),
    };
    if (decision.identity.consumer) metadata.consumer = stringValue(decision.identity.consumer);
    if (decision.identity.appId) metadata.app_id = stringValue(decision.identity.appId);
    if (decision.degraded) metadata.degraded = stringValue("true");
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
      dynamicMetadata: { fields: metadata },
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

/**
 * The ADS wire format: envoy.service.discovery.v3 messages (de)serialised with @bufbuild/protobuf
 * and the schemas of the Envoy descriptor set (loadEnvoyRegistry), never with proto-loader plain
 * objects (which drop fields). Shared by the server and by test clients.
 *
 * Resources travel as google.protobuf.Any `{type_url, value}` whose value is the bytes the snapshot
 * encoded once; serialising a response only copies them.
 */
import { create, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { envoyMessageSchema } from "../envoy/schema/registry";

export const ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService";
export const ADS_SOTW_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const ADS_DELTA_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;

/** The parts of envoy.config.core.v3.Node the server reads. */
export interface XdsNode {
  id: string;
  cluster: string;
  userAgentName?: string;
  userAgentVersionType?: { case: string | undefined; value?: unknown };
}

export interface RpcStatus {
  code: number;
  message: string;
}

export interface AnyMessage {
  typeUrl: string;
  value: Uint8Array;
}

export interface DiscoveryRequest {
  versionInfo: string;
  node?: XdsNode;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail?: RpcStatus;
}

export interface DiscoveryResponse {
  versionInfo: string;
  resources: AnyMessage[];
  typeUrl: string;
  nonce: string;
  controlPlane?: { identifier: string };
}

export interface DeltaDiscoveryRequest {
  node?: XdsNode;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: RpcStatus;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource?: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  resources: DeltaResource[];
  typeUrl: string;
  removedResources: string[];
  nonce: string;
  controlPlane?: { identifier: string };
}

let schemas:
  | {
      request: DescMessage;
      response: DescMessage;
      deltaRequest: DescMessage;
      deltaResponse: DescMessage;
      resource: DescMessage;
      any: DescMessage;
    }
  | undefined;

export function discoverySchemas() {
  if (!schemas) {
    schemas = {
      request: envoyMessageSchema("envoy.service.discovery.v3.DiscoveryRequest"),
      response: envoyMessageSchema("envoy.service.discovery.v3.DiscoveryResponse"),
      deltaRequest: envoyMessageSchema("envoy.service.discovery.v3.DeltaDiscoveryRequest"),
      deltaResponse: envoyMessageSchema("envoy.service.discovery.v3.DeltaDiscoveryResponse"),
      resource: envoyMessageSchema("envoy.service.discovery.v3.Resource"),
      any: envoyMessageSchema("google.protobuf.Any"),
    };
  }
  return schemas;
}

function encode(desc: DescMessage, value: unknown): Buffer {
  const message = create(desc, value as never) as Message;
  const bytes = toBinary(desc, message);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeDiscoveryRequest(value: Partial<DiscoveryRequest>): Buffer {
  return encode(discoverySchemas().request, value);
}
export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  return fromBinary(discoverySchemas().request, bytes) as unknown as DiscoveryRequest;
}
/*
 * Responses are encoded with their resources' bytes copied once. toBinary would copy each
 * resource's value several times (into its writer's growing chunks, then into the result): about
 * 70 ms per stream for a 60 MiB RouteConfiguration against 30 ms for one copy, on every stream
 * that a change goes to. So the small fields go through toBinary and the resources, whose values
 * the snapshot encoded once, are framed here: a repeated message field is one `tag, length,
 * bytes` record per element, and a message's encoding is its fields' encodings concatenated, so
 * `[fields before resources] + records + [fields after]` is the message (a test compares it with
 * toBinary of the whole).
 */
const RESOURCES_FIELD = 2; // DiscoveryResponse.resources, DeltaDiscoveryResponse.resources, Resource.resource
const ANY_TYPE_URL_FIELD = 1;
const ANY_VALUE_FIELD = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

/** The tag and length of a length-delimited field. */
function fieldHeader(field: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(varintSize((field << 3) | 2) + varintSize(length));
  let pos = 0;
  for (let n = (field << 3) | 2; ; ) {
    if (n < 0x80) {
      out[pos++] = n;
      break;
    }
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  for (let n = length; ; ) {
    if (n < 0x80) {
      out[pos++] = n;
      break;
    }
    out[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  return out;
}

/** Appends the record of an Any field (`field`) to `parts`; returns its length. */
function pushAnyRecord(parts: Uint8Array[], field: number, any: AnyMessage): number {
  const typeUrl = Buffer.from(any.typeUrl, "utf8");
  const typeUrlPart = any.typeUrl ? [fieldHeader(ANY_TYPE_URL_FIELD, typeUrl.length), typeUrl] : [];
  const valuePart = any.value.length ? [fieldHeader(ANY_VALUE_FIELD, any.value.length), any.value] : [];
  const inner = [...typeUrlPart, ...valuePart];
  const innerLength = inner.reduce((n, p) => n + p.length, 0);
  const header = fieldHeader(field, innerLength);
  parts.push(header, ...inner);
  return header.length + innerLength;
}

function concat(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts, parts.reduce((n, p) => n + p.length, 0));
}

export function encodeDiscoveryResponse(value: Partial<DiscoveryResponse>): Buffer {
  const { resources = [], ...rest } = value;
  const { versionInfo, ...after } = rest;
  const parts: Uint8Array[] = [encode(discoverySchemas().response, { versionInfo })];
  for (const resource of resources) pushAnyRecord(parts, RESOURCES_FIELD, resource);
  parts.push(encode(discoverySchemas().response, after));
  return concat(parts);
}
export function decodeDiscoveryResponse(bytes: Uint8Array): DiscoveryResponse {
  return fromBinary(discoverySchemas().response, bytes) as unknown as DiscoveryResponse;
}
export function encodeDeltaDiscoveryRequest(value: Partial<DeltaDiscoveryRequest>): Buffer {
  return encode(discoverySchemas().deltaRequest, value);
}
export function decodeDeltaDiscoveryRequest(bytes: Uint8Array): DeltaDiscoveryRequest {
  return fromBinary(discoverySchemas().deltaRequest, bytes) as unknown as DeltaDiscoveryRequest;
}
export function encodeDeltaDiscoveryResponse(value: Partial<DeltaDiscoveryResponse>): Buffer {
  const { resources = [], ...rest } = value;
  const { systemVersionInfo, ...after } = rest;
  const parts: Uint8Array[] = [encode(discoverySchemas().deltaResponse, { systemVersionInfo })];
  for (const { resource, version, ...later } of resources) {
    // Resource: version (field 1) and the fields after its Any (name = 3, …) through toBinary.
    const before = encode(discoverySchemas().resource, { version });
    const after = encode(discoverySchemas().resource, later);
    const resourceParts: Uint8Array[] = [before];
    const anyLength = resource ? pushAnyRecord(resourceParts, RESOURCES_FIELD, resource) : 0;
    resourceParts.push(after);
    parts.push(fieldHeader(RESOURCES_FIELD, before.length + anyLength + after.length), ...resourceParts);
  }
  parts.push(encode(discoverySchemas().deltaResponse, after));
  return concat(parts);
}
export function decodeDeltaDiscoveryResponse(bytes: Uint8Array): DeltaDiscoveryResponse {
  return fromBinary(discoverySchemas().deltaResponse, bytes) as unknown as DeltaDiscoveryResponse;
}

/** A pre-encoded message passes through; anything else is encoded with `encode`. */
function serializer<T>(encodeFn: (value: T) => Buffer): (value: T | Buffer) => Buffer {
  return (value) => (Buffer.isBuffer(value) ? value : encodeFn(value as T));
}

/**
 * The gRPC service definition for grpc-js (server.addService / makeGenericClientConstructor).
 * Responses may be written as pre-encoded Buffers (the server does, to count bytes).
 */
export function adsServiceDefinition(): ServiceDefinition {
  const sotw: MethodDefinition<DiscoveryRequest | Buffer, DiscoveryResponse | Buffer> = {
    path: ADS_SOTW_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: serializer(encodeDiscoveryRequest),
    requestDeserialize: decodeDiscoveryRequest,
    responseSerialize: serializer(encodeDiscoveryResponse),
    responseDeserialize: decodeDiscoveryResponse,
    originalName: "streamAggregatedResources",
  };
  const delta: MethodDefinition<DeltaDiscoveryRequest | Buffer, DeltaDiscoveryResponse | Buffer> = {
    path: ADS_DELTA_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: serializer(encodeDeltaDiscoveryRequest),
    requestDeserialize: decodeDeltaDiscoveryRequest,
    responseSerialize: serializer(encodeDeltaDiscoveryResponse),
    responseDeserialize: decodeDeltaDiscoveryResponse,
    originalName: "deltaAggregatedResources",
  };
  return { StreamAggregatedResources: sotw, DeltaAggregatedResources: delta } as ServiceDefinition;
}

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
export function encodeDiscoveryResponse(value: Partial<DiscoveryResponse>): Buffer {
  return encode(discoverySchemas().response, value);
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
  return encode(discoverySchemas().deltaResponse, value);
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

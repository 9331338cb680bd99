/**
 * A real ADS client for tests: @grpc/grpc-js over loopback with the same @bufbuild/protobuf
 * serialisers as the server. It behaves like Envoy where tests need it to (node on the first
 * request only, ACK = version + nonce of the response, NACK = previous good version + nonce +
 * error_detail) but leaves every request to the test, so tests can also misbehave (stale nonces).
 *
 * Every response received is checked: each resource decodes with the Envoy registry, re-encodes to
 * the same bytes (no unknown or dropped field), passes validateEnvoyResource, carries the
 * response's type URL, and no name appears twice. A failed check makes `next()` reject.
 */
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type JsonObject } from "@bufbuild/protobuf";
import { envoyMessageSchema } from "../../packages/control-plane/src/envoy/schema/registry";
import { decodeEnvoyResource, validateEnvoyResource } from "../../packages/control-plane/src/envoy/schema/strict";
import {
  ADS_DELTA_PATH,
  ADS_SOTW_PATH,
  decodeDeltaDiscoveryResponse,
  decodeDiscoveryResponse,
  encodeDeltaDiscoveryRequest,
  encodeDiscoveryRequest,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../packages/control-plane/src/xds/protocol";

export interface TestNode {
  id: string;
  cluster?: string;
}

export interface DecodedResource {
  name: string;
  /** Delta only: the per-resource version. */
  version?: string;
  json: JsonObject;
}

/** Checks one encoded resource; returns its JSON (proto field names) or throws. */
export function checkReceivedResource(typeUrl: string, value: Uint8Array): JsonObject {
  const desc = envoyMessageSchema(typeUrl);
  const message = fromBinary(desc, value);
  const again = toBinary(desc, message);
  if (Buffer.compare(Buffer.from(again), Buffer.from(value)) !== 0) {
    throw new Error(`a ${typeUrl} does not re-encode to the same bytes (unknown or dropped fields)`);
  }
  const json = decodeEnvoyResource(typeUrl, value) as JsonObject;
  const issues = validateEnvoyResource(typeUrl, json);
  if (issues.length) throw new Error(`a ${typeUrl} sent by the server is invalid: ${JSON.stringify(issues)}`);
  return json;
}

function resourceName(typeUrl: string, json: JsonObject): string {
  return String(typeUrl.endsWith("ClusterLoadAssignment") ? json.cluster_name : json.name);
}

function checkNames(names: string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new Error(`resource "${n}" appears twice in one response`);
    seen.add(n);
  }
}

export function decodeSotw(response: DiscoveryResponse): DecodedResource[] {
  const out = response.resources.map((any) => {
    if (any.typeUrl !== response.typeUrl) throw new Error(`resource type ${any.typeUrl} in a ${response.typeUrl} response`);
    const json = checkReceivedResource(any.typeUrl, any.value);
    return { name: resourceName(any.typeUrl, json), json };
  });
  checkNames(out.map((r) => r.name));
  return out;
}

export function decodeDelta(response: DeltaDiscoveryResponse): DecodedResource[] {
  const out = response.resources.map((r) => {
    if (!r.resource) throw new Error(`delta resource "${r.name}" has no body`);
    if (r.resource.typeUrl !== response.typeUrl) throw new Error(`resource type ${r.resource.typeUrl} in a ${response.typeUrl} response`);
    const json = checkReceivedResource(r.resource.typeUrl, r.resource.value);
    if (resourceName(response.typeUrl, json) !== r.name) throw new Error(`delta resource "${r.name}" holds "${resourceName(response.typeUrl, json)}"`);
    return { name: r.name, version: r.version, json };
  });
  checkNames([...out.map((r) => r.name), ...response.removedResources]);
  return out;
}

/** A bidi stream with a queue of checked responses. */
class AdsStream<Req, Res> {
  private readonly queue: Res[] = [];
  private waiter?: { resolve: (r: Res) => void; reject: (e: Error) => void };
  private failure?: Error;
  readonly received: Res[] = [];
  private nodeSent = false;

  constructor(
    protected readonly call: grpc.ClientDuplexStream<Req, Res>,
    protected readonly node: TestNode,
    check: (response: Res) => void,
  ) {
    call.on("data", (response: Res) => {
      try {
        check(response);
      } catch (error) {
        this.fail(error as Error);
        return;
      }
      this.received.push(response);
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(response);
      } else this.queue.push(response);
    });
    call.on("error", (error: Error) => this.fail(error));
    call.on("end", () => this.fail(new Error("the server ended the stream")));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(error);
    }
  }

  /** The next response (waits up to `timeoutMs`). */
  next(timeoutMs = 3000): Promise<Res> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Res>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no xDS response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Resolves when no response arrives within `ms`; rejects with the response otherwise. */
  async expectNone(ms = 300): Promise<void> {
    const response = await this.next(ms).catch(() => undefined);
    if (response) throw new Error(`expected no xDS response, got ${JSON.stringify(summary(response))}`);
  }

  /** The error the stream ended with (waits up to `timeoutMs`). */
  async closedWith(timeoutMs = 3000): Promise<Error & { code?: number; details?: string }> {
    try {
      const r = await this.next(timeoutMs);
      throw new Error(`expected the stream to fail, got ${JSON.stringify(summary(r))}`);
    } catch (error) {
      return error as Error;
    }
  }

  protected write(request: Partial<Req> & { node?: unknown }): void {
    if (!this.nodeSent && request.node === undefined) request = { ...request, node: this.node };
    if (request.node !== undefined) this.nodeSent = true;
    this.call.write(request as Req);
  }

  /** Sends a raw request (node added to the first one unless given). */
  send(request: Partial<Req> & { node?: unknown }): void {
    this.write(request);
  }

  close(): void {
    this.call.cancel();
  }
}

function summary(response: unknown): unknown {
  const r = response as Partial<DiscoveryResponse & DeltaDiscoveryResponse>;
  return {
    typeUrl: r.typeUrl,
    nonce: r.nonce,
    version: r.versionInfo ?? r.systemVersionInfo,
    resources: r.resources?.length,
    removed: r.removedResources,
  };
}

export class SotwClient extends AdsStream<DiscoveryRequest, DiscoveryResponse> {
  /** Per type: the names last requested and the last version ACKed. */
  readonly names = new Map<string, string[]>();
  readonly acked = new Map<string, string>();

  request(typeUrl: string, names: string[] = [], extra: Partial<DiscoveryRequest> = {}): void {
    this.names.set(typeUrl, names);
    this.write({ typeUrl, resourceNames: names, versionInfo: this.acked.get(typeUrl) ?? "", responseNonce: "", ...extra });
  }

  /** ACK a response (optionally changing the names requested). */
  ack(response: DiscoveryResponse, names?: string[]): void {
    if (names) this.names.set(response.typeUrl, names);
    this.acked.set(response.typeUrl, response.versionInfo);
    this.write({
      typeUrl: response.typeUrl,
      versionInfo: response.versionInfo,
      responseNonce: response.nonce,
      resourceNames: this.names.get(response.typeUrl) ?? [],
    });
  }

  /** NACK a response: the previous good version, its nonce, error_detail. */
  nack(response: DiscoveryResponse, message = "rejected by the test client"): void {
    this.write({
      typeUrl: response.typeUrl,
      versionInfo: this.acked.get(response.typeUrl) ?? "",
      responseNonce: response.nonce,
      resourceNames: this.names.get(response.typeUrl) ?? [],
      errorDetail: { code: 3, message },
    });
  }
}

export class DeltaClient extends AdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  /** Per type: name → version the client has applied (what it would send on reconnect). */
  readonly versions = new Map<string, Map<string, string>>();

  private have(typeUrl: string): Map<string, string> {
    let m = this.versions.get(typeUrl);
    if (!m) this.versions.set(typeUrl, (m = new Map()));
    return m;
  }

  subscribe(typeUrl: string, names: string[] = [], initial?: Record<string, string>, extra: Partial<DeltaDiscoveryRequest> = {}): void {
    if (initial) for (const [n, v] of Object.entries(initial)) this.have(typeUrl).set(n, v);
    this.write({ typeUrl, resourceNamesSubscribe: names, initialResourceVersions: initial ?? {}, ...extra });
  }

  unsubscribe(typeUrl: string, names: string[]): void {
    for (const n of names) this.have(typeUrl).delete(n);
    this.write({ typeUrl, resourceNamesUnsubscribe: names });
  }

  ack(response: DeltaDiscoveryResponse): void {
    const have = this.have(response.typeUrl);
    for (const r of response.resources) have.set(r.name, r.version);
    for (const n of response.removedResources) have.delete(n);
    this.write({ typeUrl: response.typeUrl, responseNonce: response.nonce });
  }

  nack(response: DeltaDiscoveryResponse, message = "rejected by the test client"): void {
    this.write({ typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: { code: 3, message } });
  }
}

const CLIENT_OPTIONS: grpc.ClientOptions = { "grpc.max_receive_message_length": -1 };

function client(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), CLIENT_OPTIONS);
}

/** Opens a StreamAggregatedResources stream. `address` is "127.0.0.1:<port>". */
export function connectSotw(address: string, node: TestNode): SotwClient {
  const c = client(address);
  const call = c.makeBidiStreamRequest<DiscoveryRequest, DiscoveryResponse>(
    ADS_SOTW_PATH,
    (r) => encodeDiscoveryRequest(r),
    (b) => decodeDiscoveryResponse(b),
  );
  call.on("close", () => c.close());
  return new SotwClient(call, node, decodeSotw);
}

/** Opens a DeltaAggregatedResources stream. */
export function connectDelta(address: string, node: TestNode): DeltaClient {
  const c = client(address);
  const call = c.makeBidiStreamRequest<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
    ADS_DELTA_PATH,
    (r) => encodeDeltaDiscoveryRequest(r),
    (b) => decodeDeltaDiscoveryResponse(b),
  );
  call.on("close", () => c.close());
  return new DeltaClient(call, node, decodeDelta);
}

/** All forwarding route paths (path, prefix or URI template) of a RouteConfiguration, in order. */
export function routePaths(routeConfig: Record<string, any>): string[] {
  const out: string[] = [];
  for (const vhost of routeConfig.virtual_hosts ?? []) {
    for (const route of vhost.routes ?? []) {
      if (route.direct_response) continue;
      const m = route.match ?? {};
      out.push(m.path ?? m.prefix ?? m.path_match_policy?.typed_config?.path_template ?? "?");
    }
  }
  return out;
}

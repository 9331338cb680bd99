import * as grpc from "@grpc/grpc-js";
import { create, type Message } from "@bufbuild/protobuf";
import {
  CHECK_METHOD_PATH,
  checkSchemas,
  decodeCheckResponse,
  encodeCheckRequest,
} from "../../packages/ext-authz/src/protocol";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import {
  scopeField,
  SecretBox,
  sha256Hex,
  type CredentialStore,
  type ProjectedApiKey,
  type ProjectedApplication,
  type ProjectedSubscription,
  type ScopeConfig,
  type Stage,
} from "@apigw/shared";

/**
 * A gRPC client for envoy.service.auth.v3.Authorization/Check over loopback, with the same
 * @bufbuild/protobuf serializers as the server, that builds CheckRequests the way Envoy does
 * (lower-case header names incl. pseudo-headers, `path` with the query) and flattens the
 * CheckResponse into something easy to assert on.
 */
export interface SimpleCheckRequest {
  method?: string;
  /** Path with query. */
  path: string;
  host?: string;
  headers?: Record<string, string>;
  body?: string;
  rawBody?: Uint8Array;
  sourceAddress?: string;
  contextExtensions?: Record<string, string>;
}

export interface SimpleCheckResult {
  grpcCode: number;
  grpcMessage: string;
  allowed: boolean;
  /** Denied: the HTTP status. */
  status?: number;
  /** Denied response headers, or OK upstream headers (lower-case names). */
  headers: Record<string, string>;
  /** Denied: the body. */
  body?: string;
  /** Denied: the parsed JSON body. */
  json?: { code: string; message: string };
  headersToRemove: string[];
  queryParametersToRemove: string[];
  responseHeadersToAdd: Record<string, string>;
  /** OK: header append actions by name (2 = OVERWRITE_IF_EXISTS_OR_ADD). */
  appendActions: Record<string, number>;
  dynamicMetadata: Record<string, string>;
}

interface HeaderOptionJs {
  header?: { key: string; value: string };
  appendAction: number;
}
interface CheckResponseJs {
  status?: { code: number; message: string };
  httpResponse:
    | { case: "okResponse"; value: { headers: HeaderOptionJs[]; headersToRemove: string[]; queryParametersToRemove: string[]; responseHeadersToAdd: HeaderOptionJs[] } }
    | { case: "deniedResponse"; value: { status?: { code: number }; headers: HeaderOptionJs[]; body: string } }
    | { case: undefined };
  /** google.protobuf.Struct, as @bufbuild/protobuf gives it: its JSON object. */
  dynamicMetadata?: Record<string, unknown>;
}

function toRecord(options: HeaderOptionJs[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of options) if (o.header) out[o.header.key] = o.header.value;
  return out;
}

export function buildCheckRequest(request: SimpleCheckRequest): Message {
  const method = request.method ?? "GET";
  const host = request.host ?? "api.example.com";
  const headers: Record<string, string> = { ":method": method, ":path": request.path, ":authority": host, ":scheme": "http" };
  for (const [name, value] of Object.entries(request.headers ?? {})) headers[name.toLowerCase()] = value;
  return create(checkSchemas().request, {
    attributes: {
      source: request.sourceAddress
        ? { address: { address: { case: "socketAddress", value: { address: request.sourceAddress, portValue: 40000 } } } }
        : undefined,
      request: {
        http: {
          id: "1",
          method,
          headers,
          path: request.path,
          host,
          scheme: "http",
          protocol: "HTTP/1.1",
          body: request.body ?? "",
          rawBody: request.rawBody ?? new Uint8Array(),
        },
      },
      contextExtensions: request.contextExtensions ?? {},
    },
  } as never);
}

export class ExtAuthzClient {
  private readonly client: grpc.Client;

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
  }

  /** Sends a raw CheckRequest message (for malformed inputs built by hand). */
  checkMessage(message: Message): Promise<SimpleCheckResult> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        CHECK_METHOD_PATH,
        (m: Message) => encodeCheckRequest(m),
        (bytes: Buffer) => decodeCheckResponse(bytes),
        message,
        { deadline: Date.now() + 10_000 },
        (error, response) => (error ? reject(error) : resolve(flatten(response as Message))),
      );
    });
  }

  /** Sends raw bytes as the request (for undecodable input). */
  checkBytes(bytes: Buffer): Promise<SimpleCheckResult> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        CHECK_METHOD_PATH,
        (b: Buffer) => b,
        (b: Buffer) => decodeCheckResponse(b),
        bytes,
        { deadline: Date.now() + 10_000 },
        (error, response) => (error ? reject(error) : resolve(flatten(response as Message))),
      );
    });
  }

  check(request: SimpleCheckRequest): Promise<SimpleCheckResult> {
    return this.checkMessage(buildCheckRequest(request));
  }

  close(): void {
    this.client.close();
  }
}

function flatten(message: Message): SimpleCheckResult {
  const response = message as unknown as CheckResponseJs;
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(response.dynamicMetadata ?? {})) metadata[k] = typeof v === "string" ? v : JSON.stringify(v);
  const base = {
    grpcCode: response.status?.code ?? 0,
    grpcMessage: response.status?.message ?? "",
    dynamicMetadata: metadata,
  };
  const http = response.httpResponse;
  if (http.case === "okResponse") {
    const appendActions: Record<string, number> = {};
    for (const o of http.value.headers) if (o.header) appendActions[o.header.key] = o.appendAction;
    return {
      ...base,
      allowed: base.grpcCode === 0,
      headers: toRecord(http.value.headers),
      headersToRemove: http.value.headersToRemove,
      queryParametersToRemove: http.value.queryParametersToRemove,
      responseHeadersToAdd: toRecord(http.value.responseHeadersToAdd),
      appendActions,
    };
  }
  if (http.case === "deniedResponse") {
    let json: { code: string; message: string } | undefined;
    try {
      json = JSON.parse(http.value.body) as { code: string; message: string };
    } catch {
      json = undefined;
    }
    return {
      ...base,
      allowed: false,
      status: http.value.status?.code,
      headers: toRecord(http.value.headers),
      body: http.value.body,
      json,
      headersToRemove: [],
      queryParametersToRemove: [],
      responseHeadersToAdd: {},
      appendActions: {},
    };
  }
  return { ...base, allowed: base.grpcCode === 0, headers: {}, headersToRemove: [], queryParametersToRemove: [], responseHeadersToAdd: {}, appendActions: {} };
}
/* ---------- Fixtures for the ext_authz tests: scopes as the projection writes them ---------- */


export function scopeConfig(apiId: string, stage: Stage, partial: Partial<ScopeConfig> = {}): ScopeConfig {
  return { revision: 1, apiId, stage, deployed: true, accepts: {}, operations: {}, ...partial };
}

export interface ScopeEntries {
  apiKeys?: { raw: string; key: ProjectedApiKey }[];
  subscriptions?: { token: string; subscription: ProjectedSubscription }[];
  /** Applications: `app:<AppKey>` gets the sealed secret, `code:<sha256>` the AppCode entry. */
  apps?: { appKey?: string; appSecret?: string; appCode?: string; app: ProjectedApplication; sealedWith?: string }[];
}

/** Writes a scope exactly as the control plane's projection does (the contract in projectedScope.ts). */
export async function writeScope(store: CredentialStore, masterKey: string, config: ScopeConfig, entries: ScopeEntries = {}): Promise<void> {
  const fields: Record<string, string> = { [scopeField.config]: JSON.stringify(config) };
  for (const { raw, key } of entries.apiKeys ?? []) fields[scopeField.apiKey(sha256Hex(raw))] = JSON.stringify(key);
  for (const { token, subscription } of entries.subscriptions ?? []) fields[scopeField.subscription(sha256Hex(token))] = JSON.stringify(subscription);
  for (const entry of entries.apps ?? []) {
    if (entry.appKey && entry.appSecret) {
      const box = new SecretBox(entry.sealedWith ?? masterKey);
      fields[scopeField.appKey(entry.appKey)] = JSON.stringify({ ...entry.app, appKey: entry.appKey, secretSealed: box.encrypt(entry.appSecret, entry.appKey) });
    }
    if (entry.appCode) fields[scopeField.appCode(sha256Hex(entry.appCode))] = JSON.stringify(entry.app);
  }
  await store.replaceScope({ apiId: config.apiId, stage: config.stage }, fields);
  await markProjectionComplete(store);
}

/** What a completed full projection leaves in the store (the marker ext_authz and /ready look for). */
export async function markProjectionComplete(store: CredentialStore): Promise<void> {
  const token = `test-${Math.random().toString(36).slice(2)}`;
  await store.beginProjection(token);
  await store.completeProjection(token, JSON.stringify({ revision: 0, completedAt: new Date().toISOString() }));
}

/** The official Node.js signing client (CommonJS, untyped). */
export interface AliyunOptions {
  query?: Record<string, unknown>;
  data?: unknown;
  headers?: Record<string, string>;
  signHeaders?: Record<string, string>;
}
export interface AliyunClient {
  get(url: string, opts?: AliyunOptions): Promise<unknown>;
  post(url: string, opts?: AliyunOptions): Promise<unknown>;
  put(url: string, opts?: AliyunOptions): Promise<unknown>;
  delete(url: string, opts?: AliyunOptions): Promise<unknown>;
}
const requireCjs = createRequire(import.meta.url);
export const AliyunApiGatewayClient = (requireCjs("aliyun-api-gateway") as {
  Client: new (appKey: string, appSecret: string, stage?: string) => AliyunClient;
}).Client;

export interface CapturedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A local HTTP server that records what a client really sends (answering 200 `{}`), so that a
 * request signed by `aliyun-api-gateway` can be replayed to ext_authz as Envoy would present it.
 */
export class CaptureServer {
  private server?: Server;
  private captured: CapturedRequest[] = [];
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        this.captured.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Runs `send` and returns the one request it made. */
  async capture(send: (baseUrl: string) => Promise<unknown>): Promise<CapturedRequest> {
    this.captured = [];
    await send(this.url);
    if (this.captured.length !== 1) throw new Error(`expected one captured request, got ${this.captured.length}`);
    return this.captured[0]!;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** A captured request as Envoy presents it to ext_authz (headers lower-case, raw body forwarded). */
export function checkRequestOf(
  captured: CapturedRequest,
  contextExtensions: Record<string, string>,
  change: Partial<SimpleCheckRequest> & { headerChanges?: Record<string, string | undefined> } = {},
): SimpleCheckRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(captured.headers)) {
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  for (const [name, value] of Object.entries(change.headerChanges ?? {})) {
    if (value === undefined) delete headers[name];
    else headers[name] = value;
  }
  const { headerChanges: _ignored, ...rest } = change;
  return {
    method: captured.method,
    path: captured.url,
    host: headers.host,
    headers,
    rawBody: captured.body.length > 0 ? new Uint8Array(captured.body) : undefined,
    sourceAddress: "203.0.113.10",
    contextExtensions,
    ...rest,
  };
}

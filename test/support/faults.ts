/**
 * Helpers of the fault tests (and the fault benchmark): requests to any control plane (not only
 * the harness's), a write load that records every answer, an ADS client that follows the route
 * paths, and a control plane in a child process that can be SIGKILLed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { XDS_TYPE_URLS } from "../../packages/control-plane/src/xds";
import { USERS } from "./environment";
import { BASE } from "./client";
import { restApi } from "./fixtures";
import { sleep, waitFor } from "./wait";
import { connectSotw, decodeSotw, routePaths, type SotwClient } from "./xdsClient";

export const ROUTE_CONFIG = "apigw-routes";

export interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

/** A management API request to the control plane at `managementUrl` (as the admin). */
export async function callAt(managementUrl: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {
    Accept: "application/json",
    Authorization: "Basic " + Buffer.from(`${USERS.admin.name}:${USERS.admin.password}`).toString("base64"),
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(managementUrl + BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** A small API of its own: handle `name`, served at /<name>/v1/items. */
export function faultApi(name: string) {
  return restApi(name, { displayName: name, version: "v1", context: `/${name}/$version`, policies: [], operations: [{ method: "GET", path: "/items" }] });
}

export const faultApiPath = (name: string) => `/${name}/v1/items`;

export async function readyStatus(adminUrl: string): Promise<number> {
  try {
    return (await fetch(adminUrl + "/ready", { signal: AbortSignal.timeout(5000) })).status;
  } catch {
    return 0;
  }
}

export async function waitReady(adminUrl: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${adminUrl}/ready to answer 200`, async () => ((await readyStatus(adminUrl)) === 200 ? true : undefined), timeoutMs, 50);
}

export interface LoadResult {
  /** Handles of the APIs whose creation was acknowledged (2xx). */
  acknowledged: string[];
  /** Every status code answered, with its count. */
  statuses: Map<number, number>;
  /** Answers that are neither 2xx nor a 503 with Retry-After and the error shape. */
  unexpected: { status: number; body: unknown; retryAfter: string | null }[];
  /** Requests without an answer (the control plane itself went away). */
  unanswered: number;
}

/**
 * Creates APIs named `<prefix>-<n>` from `concurrency` workers until `stop()`; checks every
 * answer as it comes: 201, or 503 with Retry-After in the error shape.
 */
export function writeLoad(managementUrl: () => string, prefix: string, concurrency = 4, pauseMs = 5) {
  const result: LoadResult = { acknowledged: [], statuses: new Map(), unexpected: [], unanswered: 0 };
  let stopped = false;
  let n = 0;
  const worker = async () => {
    while (!stopped) {
      const name = `${prefix}-${n++}`;
      let answer: Answer;
      try {
        answer = await callAt(managementUrl(), "POST", "/rest-apis", faultApi(name));
      } catch {
        result.unanswered++;
        await sleep(20);
        continue;
      }
      result.statuses.set(answer.status, (result.statuses.get(answer.status) ?? 0) + 1);
      if (answer.status === 201) result.acknowledged.push(name);
      else if (!isUnavailableAnswer(answer)) {
        result.unexpected.push({ status: answer.status, body: answer.body, retryAfter: answer.headers.get("retry-after") });
      }
      await sleep(pauseMs);
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    result,
    async stop(): Promise<LoadResult> {
      stopped = true;
      await Promise.all(workers);
      return result;
    },
  };
}

/** A 503 in the error shape with a Retry-After: what a store outage must look like. */
export function isUnavailableAnswer(answer: Answer): boolean {
  return (
    answer.status === 503 &&
    /^\d+$/.test(answer.headers.get("retry-after") ?? "") &&
    answer.body?.status === "error" &&
    typeof answer.body?.message === "string"
  );
}

/** A SotW ADS client that keeps the route paths of the RouteConfiguration up to date (ACKing everything). */
export class RouteWatcher {
  readonly client: SotwClient;
  paths = new Set<string>();

  constructor(xdsAddress: string, node: { id: string; cluster?: string }) {
    this.client = connectSotw(xdsAddress, node);
    this.client.request(XDS_TYPE_URLS.cluster);
    this.client.request(XDS_TYPE_URLS.listener);
    this.client.request(XDS_TYPE_URLS.route, [ROUTE_CONFIG]);
  }

  /** Reads responses until `paths` satisfies `done`. */
  async until(what: string, done: (paths: Set<string>) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.paths)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ADS to deliver ${what}`);
      const response = await this.client.next(left).catch((error: Error) => {
        throw new Error(`waiting for ADS to deliver ${what}: ${error.message}`);
      });
      if (response.typeUrl === XDS_TYPE_URLS.route) {
        const config = decodeSotw(response).find((r) => r.name === ROUTE_CONFIG);
        if (config) this.paths = new Set(routePaths(config.json as Record<string, any>));
      }
      this.client.ack(response);
    }
  }

  close(): void {
    this.client.close();
  }
}


/** A control plane in a child process (`npm start`'s entry point), on the given ports. */
export class ChildControlPlane {
  private child?: ChildProcess;
  private exit?: Promise<number | null>;
  output = "";
  readonly managementUrl: string;
  readonly adminUrl: string;
  readonly xdsAddress: string;

  constructor(
    private readonly env: Record<string, string>,
    ports: { management: number; admin: number; xds: number; extAuthz: number },
  ) {
    this.managementUrl = `http://127.0.0.1:${ports.management}`;
    this.adminUrl = `http://127.0.0.1:${ports.admin}`;
    this.xdsAddress = `127.0.0.1:${ports.xds}`;
    this.env = {
      ...env,
      HOST: "127.0.0.1",
      MANAGEMENT_PORT: String(ports.management),
      ADMIN_PORT: String(ports.admin),
      XDS_PORT: String(ports.xds),
      EXT_AUTHZ_PORT: String(ports.extAuthz),
    };
  }

  /** Starts the process and waits until /ready answers 200. */
  async start(timeoutMs = 30_000): Promise<void> {
    const root = resolve(import.meta.dirname, "../..");
    const child = spawn(process.execPath, ["--import", "tsx", "packages/control-plane/src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH ?? "", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.exit = new Promise((r) => child.once("exit", (code) => r(code)));
    try {
      await waitReady(this.adminUrl, timeoutMs);
      // Not another process on these ports answering in its place.
      if (!this.running) throw new Error("the control plane exited");
    } catch (error) {
      throw new Error(`${(error as Error).message}; its output:\n${this.output}`);
    }
  }

  get running(): boolean {
    return Boolean(this.child && this.child.exitCode === null && this.child.signalCode === null);
  }

  /** SIGKILL: no shutdown, connections and transactions cut wherever they are. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child!.kill("SIGKILL");
    await this.exit;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.child!.kill("SIGTERM");
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), 10_000);
    await this.exit;
    clearTimeout(timer);
  }
}

import { harness } from "./hooks";
import { USERS } from "./environment";

export type UserName = keyof typeof USERS;

export interface Reply<T = any> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

export interface RequestOptions {
  /** A JSON-serialisable body, or a string sent as it is. */
  body?: unknown;
  as?: UserName | null;
  contentType?: string;
  headers?: Record<string, string>;
}

export const BASE = "/api/management/v0.9";

/** A real HTTP request to the running management API. */
export async function call<T = any>(method: string, path: string, options: RequestOptions = {}): Promise<Reply<T>> {
  const headers: Record<string, string> = { Accept: "application/json", ...(options.headers ?? {}) };
  const as = options.as === undefined ? "admin" : options.as;
  if (as) {
    const user = USERS[as];
    headers.Authorization = "Basic " + Buffer.from(`${user.name}:${user.password}`).toString("base64");
  }
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers["Content-Type"] = options.contentType ?? "application/json";
  } else if (options.contentType) {
    headers["Content-Type"] = options.contentType;
  }
  const url = harness().managementUrl + (path.startsWith("/api/") ? path : BASE + path);
  const response = await fetch(url, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed as T, text, headers: response.headers };
}

export const get = <T = any>(path: string, options?: RequestOptions) => call<T>("GET", path, options);
export const post = <T = any>(path: string, body?: unknown, options?: RequestOptions) => call<T>("POST", path, { ...options, body });
export const put = <T = any>(path: string, body?: unknown, options?: RequestOptions) => call<T>("PUT", path, { ...options, body });
export const del = <T = any>(path: string, options?: RequestOptions) => call<T>("DELETE", path, options);

/** Counts rows, to prove that a failed request changed nothing. */
export async function countRows(table: string): Promise<number> {
  const row = await harness().database.knex(table).count({ n: "*" }).first();
  return Number(row?.n ?? 0);
}

/** The fields named in a validation error body. */
export function fields(reply: Reply): string[] {
  return ((reply.body?.errors ?? []) as { field: string }[]).map((e) => e.field);
}

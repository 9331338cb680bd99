import { createHash } from "node:crypto";
import { isFormContentType, type Parameter, type SignableRequest } from "./stringToSign";

/**
 * Helpers that turn what arrives on the wire into a SignableRequest, and the checks made on a
 * signed request besides the signature itself. None of them throws on hostile input: malformed
 * input gives an error result.
 */

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

function percentDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

/**
 * Decodes `application/x-www-form-urlencoded` text (a query string or a form body) into
 * `[name, value]` pairs in order, as Node's `querystring.parse` splits it: `&` separates pairs
 * (empty pieces are skipped), the first `=` separates name from value (no `=` means an empty value),
 * `+` is a space, `%XX` sequences are UTF-8. Malformed percent-encoding (`%zz`, a lone `%`, bytes
 * that are not UTF-8) is an error; `querystring.parse` would keep such text literally, but a
 * request carrying it is not one an official client signs.
 */
export function parseUrlEncoded(text: string): ParseResult<Parameter[]> {
  const pairs: Parameter[] = [];
  if (text === "") return { ok: true, value: pairs };
  for (const piece of text.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const rawName = eq === -1 ? piece : piece.slice(0, eq);
    const rawValue = eq === -1 ? "" : piece.slice(eq + 1);
    const name = percentDecode(rawName);
    if (name === undefined) return { ok: false, error: `malformed percent-encoding in parameter name "${excerpt(rawName)}"` };
    const value = percentDecode(rawValue);
    if (value === undefined) return { ok: false, error: `malformed percent-encoding in the value of parameter "${excerpt(name)}"` };
    pairs.push([name, value]);
  }
  return { ok: true, value: pairs };
}

/** Keeps error messages short whatever the input size. */
function excerpt(text: string, max = 64): string {
  return text.length <= max ? text : text.slice(0, max) + "...";
}

/**
 * Splits a request target (`/path?query`, as in the HTTP request line or Envoy's `:path`) at the
 * first `?`: the path is kept exactly as received (the signature covers it undecoded, as clients
 * sign it), the query is decoded into pairs.
 */
export function parseRequestTarget(target: string): ParseResult<{ path: string; query: Parameter[] }> {
  if (typeof target !== "string" || !target.startsWith("/")) {
    return { ok: false, error: "the request target must be a path starting with /" };
  }
  const question = target.indexOf("?");
  if (question === -1) return { ok: true, value: { path: target, query: [] } };
  const query = parseUrlEncoded(target.slice(question + 1));
  if (!query.ok) return { ok: false, error: `invalid query string: ${query.error}` };
  return { ok: true, value: { path: target.slice(0, question), query: query.value } };
}

/** Decodes a raw `application/x-www-form-urlencoded` body (UTF-8) into `[name, value]` pairs. */
export function parseFormBody(body: string | Uint8Array): ParseResult<Parameter[]> {
  let text: string;
  if (typeof body === "string") {
    text = body;
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      return { ok: false, error: "invalid form body: not valid UTF-8" };
    }
  }
  const parsed = parseUrlEncoded(text);
  return parsed.ok ? parsed : { ok: false, error: `invalid form body: ${parsed.error}` };
}

/** Content-MD5: base64 of the MD5 of the raw body bytes (a string body is taken as UTF-8). */
export function contentMd5(body: string | Uint8Array): string {
  return createHash("md5")
    .update(typeof body === "string" ? Buffer.from(body, "utf8") : body)
    .digest("base64");
}

/** Whether a Content-MD5 header value matches the body (the digest is not secret: plain compare). */
export function contentMd5Matches(headerValue: string, body: string | Uint8Array): boolean {
  return headerValue === contentMd5(body);
}

export const TIMESTAMP_WINDOW_MS = 15 * 60 * 1000;

export type TimestampCheck = "ok" | "Invalid Timestamp" | "Timestamp Expired";

/**
 * Checks X-Ca-Timestamp: milliseconds since the epoch, ASCII digits only (no sign, no spaces,
 * at most 16 digits and a safe integer), else "Invalid Timestamp" (also when missing); more than
 * `windowMs` away from `nowMs` in either direction is "Timestamp Expired" (exactly `windowMs`
 * away is still accepted).
 */
export function checkTimestamp(
  value: string | undefined,
  nowMs: number,
  windowMs: number = TIMESTAMP_WINDOW_MS,
): TimestampCheck {
  if (typeof value !== "string" || value.length === 0 || value.length > 16 || !/^[0-9]+$/.test(value)) {
    return "Invalid Timestamp";
  }
  const timestamp = Number(value);
  if (!Number.isSafeInteger(timestamp)) return "Invalid Timestamp";
  return Math.abs(nowMs - timestamp) <= windowMs ? "ok" : "Timestamp Expired";
}

/**
 * Node-style headers (IncomingMessage.headers, where a repeated header may be an array) as a
 * plain record with lower-case names; repeated values are joined with `, `.
 */
export function normalizeHeaders(raw: Readonly<Record<string, string | readonly string[] | undefined>>): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    const joined = typeof value === "string" ? value : value.join(", ");
    headers[lower] = lower in headers ? `${headers[lower]}, ${joined}` : joined;
  }
  return headers;
}

export interface RawRequest {
  method: string;
  /** The request target: path and query, as received. */
  target: string;
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The raw body; read only when the Content-Type is application/x-www-form-urlencoded. */
  body?: string | Uint8Array;
}

/**
 * Everything needed to rebuild the string to sign, from a request as received: the target split
 * and decoded, the headers normalized and, for a form, the body decoded.
 */
export function toSignableRequest(raw: RawRequest): ParseResult<SignableRequest> {
  const target = parseRequestTarget(raw.target);
  if (!target.ok) return target;
  const headers = normalizeHeaders(raw.headers);
  const contentType = headers["content-type"] ?? "";
  const request: SignableRequest = {
    method: raw.method,
    path: target.value.path,
    query: target.value.query,
    headers,
    contentType,
  };
  if (isFormContentType(contentType)) {
    const form = parseFormBody(raw.body ?? "");
    if (!form.ok) return form;
    request.formBody = form.value;
  }
  return { ok: true, value: request };
}

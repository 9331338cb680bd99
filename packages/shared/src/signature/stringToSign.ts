/**
 * The string to sign of Alibaba Cloud API Gateway's AppKey/AppSecret request signing
 * (see /work/shared/spec/app-signature.md), rebuilt on the server side from a normalized request:
 *
 *     HTTPMethod\n
 *     Accept\n
 *     Content-MD5\n
 *     Content-Type\n
 *     Date\n
 *     <signed headers block><path and parameters>
 *
 * Nothing here throws, and the result is bounded by the size of the request itself: a header
 * listed several times in X-Ca-Signature-Headers is signed once (otherwise one large header
 * listed thousands of times would grow the string to sign without limit).
 */

/** Header names a signed request uses, lower-case (HTTP header names are case-insensitive). */
export const CA_HEADERS = {
  key: "x-ca-key",
  signature: "x-ca-signature",
  signatureMethod: "x-ca-signature-method",
  signatureHeaders: "x-ca-signature-headers",
  timestamp: "x-ca-timestamp",
  nonce: "x-ca-nonce",
  stage: "x-ca-stage",
  contentMd5: "content-md5",
} as const;

/** Headers with a line of their own in the string to sign, in that order (lower-case). */
export const OWN_LINE_HEADERS = ["accept", "content-md5", "content-type", "date"] as const;

/** Headers that have their own line, or carry the signature itself: never in the signed block. */
const NEVER_IN_BLOCK = new Set<string>([CA_HEADERS.signature, CA_HEADERS.signatureHeaders, ...OWN_LINE_HEADERS]);

export const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";

/** A parameter as it was decoded from the query string or a form body: `[name, value]`. */
export type Parameter = readonly [name: string, value: string];

/** What the string to sign is built from. */
export interface SignableRequest {
  /** The HTTP method as received (clients send it upper-case); used as is. */
  method: string;
  /** The request path without the query, exactly as received (not percent-decoded). */
  path: string;
  /** Query parameters in the order received, names and values percent-decoded. */
  query: ReadonlyArray<Parameter>;
  /** Request headers; names are matched case-insensitively. */
  headers: Readonly<Record<string, string | undefined>>;
  /** The Content-Type value; when undefined it is read from `headers`. */
  contentType?: string;
  /** The decoded form body; only used when the Content-Type is application/x-www-form-urlencoded. */
  formBody?: ReadonlyArray<Parameter>;
}

/** Ordinal (UTF-16 code unit) order, as JavaScript's default sort and Java's String.compareTo. */
function ordinal(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A case-insensitive, prototype-safe view of a header record. */
export function headerLookup(headers: Readonly<Record<string, string | undefined>>): (name: string) => string | undefined {
  const byLowerName = new Map<string, string>();
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== "string") continue;
    const lower = name.toLowerCase();
    if (!byLowerName.has(lower)) byLowerName.set(lower, value);
  }
  return (name) => byLowerName.get(name.toLowerCase());
}

/**
 * The header names listed in X-Ca-Signature-Headers, in signing order: split on commas,
 * whitespace around each name trimmed, empty entries dropped, the headers that are never signed
 * in the block (X-Ca-Signature, X-Ca-Signature-Headers, Accept, Content-MD5, Content-Type, Date)
 * dropped, repeats (compared case-insensitively) kept once with the first spelling, then sorted in
 * ordinal order of the names as written (so `X-Ca-Key` sorts before `x-tenant`).
 */
export function signedHeaderNames(listed: string | undefined): string[] {
  if (!listed) return [];
  const seen = new Set<string>();
  const names: string[] = [];
  for (const entry of listed.split(",")) {
    const name = entry.trim();
    if (name === "") continue;
    const lower = name.toLowerCase();
    if (NEVER_IN_BLOCK.has(lower) || seen.has(lower)) continue;
    seen.add(lower);
    names.push(name);
  }
  return names.sort(ordinal);
}

/**
 * The signed headers block: `name:value\n` for each signed header, the name as listed, the value
 * looked up case-insensitively (an absent header gives `name:` with an empty value). Empty when no
 * header is signed.
 */
export function buildSignedHeadersBlock(
  listed: string | undefined,
  headers: Readonly<Record<string, string | undefined>>,
): string {
  return signedHeadersBlock(listed, headerLookup(headers));
}

function signedHeadersBlock(listed: string | undefined, lookup: (name: string) => string | undefined): string {
  return signedHeaderNames(listed)
    .map((name) => `${name}:${lookup(name) ?? ""}\n`)
    .join("");
}

/** True when the media type (before any `;` parameters) is application/x-www-form-urlencoded. */
export function isFormContentType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const semicolon = contentType.indexOf(";");
  const mediaType = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return mediaType === FORM_CONTENT_TYPE;
}

/** Groups parameters by name, values in the order they appeared. */
function groupByName(parameters: ReadonlyArray<Parameter>): Map<string, string[]> {
  const grouped = new Map<string, string[]>();
  for (const [name, value] of parameters) {
    const values = grouped.get(name);
    if (values) values.push(value);
    else grouped.set(name, [value]);
  }
  return grouped;
}

/**
 * The path followed, when there are parameters, by `?` and the parameters sorted by name (ordinal
 * order) and joined with `&`, each `name=value`, or just `name` when the value is empty.
 *
 * Repeated names, as the Node client (`aliyun-api-gateway` 1.1.6) signs them — it parses the query
 * with `querystring.parse`, merges the form fields over it with `Object.assign` and writes each
 * value with a template string:
 * - a name repeated within the query (or within the form body) is one parameter whose value is all
 *   its values joined with `,` in the order received: `?tag=a&tag=b` signs `tag=a,b`; the joined
 *   value counts as empty only when it is (`?a=&a=` signs `a=,`);
 * - a name present both in the query and in the form body takes the form body's value(s) only.
 */
export function buildPathAndParameters(
  path: string,
  query: ReadonlyArray<Parameter>,
  formBody?: ReadonlyArray<Parameter>,
): string {
  const merged = groupByName(query);
  if (formBody) {
    for (const [name, values] of groupByName(formBody)) merged.set(name, values);
  }
  if (merged.size === 0) return path;
  const parts = [...merged.keys()].sort(ordinal).map((name) => {
    const value = merged.get(name)!.join(",");
    return value === "" ? name : `${name}=${value}`;
  });
  return `${path}?${parts.join("&")}`;
}

/** The string to sign for a request, as the server computes it. */
export function buildStringToSign(request: SignableRequest): string {
  const lookup = headerLookup(request.headers);
  const contentType = request.contentType ?? lookup("content-type") ?? "";
  const formBody = isFormContentType(contentType) ? request.formBody : undefined;
  return (
    `${request.method}\n` +
    `${lookup("accept") ?? ""}\n` +
    `${lookup("content-md5") ?? ""}\n` +
    `${contentType}\n` +
    `${lookup("date") ?? ""}\n` +
    signedHeadersBlock(lookup(CA_HEADERS.signatureHeaders), lookup) +
    buildPathAndParameters(request.path, request.query, formBody)
  );
}

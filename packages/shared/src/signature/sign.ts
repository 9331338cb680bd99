import { createHmac } from "node:crypto";
import { constantTimeEqual } from "../crypto/hash";
import { SIGNATURE_METHODS } from "../policies/types";

// One list of methods for the appAuth policy's schema and for verification.
export type SignatureMethod = (typeof SIGNATURE_METHODS)[number];
export const DEFAULT_SIGNATURE_METHOD: SignatureMethod = "HmacSHA256";

const DIGEST: Record<SignatureMethod, string> = { HmacSHA256: "sha256", HmacSHA1: "sha1" };

/**
 * The method named by X-Ca-Signature-Method: HmacSHA256 when the header is absent or empty,
 * undefined when it names anything else (matched exactly, as the official clients write it).
 */
export function parseSignatureMethod(value: string | undefined): SignatureMethod | undefined {
  if (value === undefined || value === "") return DEFAULT_SIGNATURE_METHOD;
  return (SIGNATURE_METHODS as readonly string[]).includes(value) ? (value as SignatureMethod) : undefined;
}

/** Base64 of the HMAC of the string to sign (UTF-8), keyed with the AppSecret (UTF-8 bytes). */
export function sign(stringToSign: string, secret: string, method: SignatureMethod = DEFAULT_SIGNATURE_METHOD): string {
  return createHmac(DIGEST[method], Buffer.from(secret, "utf8")).update(stringToSign, "utf8").digest("base64");
}

/**
 * Whether `provided` (the X-Ca-Signature value) is the signature of the string to sign. The
 * base64 text is compared exactly (no lenient decoding), in time that does not depend on where
 * the two differ; a missing, empty or wrong-length value is simply false.
 */
export function verifySignature(
  stringToSign: string,
  secret: string,
  method: SignatureMethod,
  provided: string | undefined,
): boolean {
  if (typeof provided !== "string" || provided === "") return false;
  return constantTimeEqual(provided, sign(stringToSign, secret, method));
}

export const INVALID_SIGNATURE_PREFIX = "Invalid Signature, Server StringToSign:";

/** Longest X-Ca-Error-Message built here: well under Node's default 16 KiB for all response headers. */
export const MAX_ERROR_MESSAGE_LENGTH = 4096;

/**
 * A value safe to put in a response header: every character outside printable ASCII is written
 * as the percent-encoding of its UTF-8 bytes, and the result is cut to `max` characters (ending
 * with `...` when cut). The one encoder of header values built from request or stored data (this
 * file's X-Ca-Error-Message, ext_authz's messages and identity headers).
 */
export function headerSafe(value: string, max: number = MAX_ERROR_MESSAGE_LENGTH): string {
  let safe = /^[\x20-\x7e]*$/.test(value)
    ? value
    : value.replace(/[^\x20-\x7e]/gu, (ch) =>
        Array.from(Buffer.from(ch, "utf8"), (b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""),
      );
  if (safe.length > max) safe = safe.slice(0, max - 3) + "...";
  return safe;
}

/**
 * The X-Ca-Error-Message of a signature mismatch: the prefix the Node client splits on, then the
 * server's string to sign with each newline shown as `#`, made header-safe (`headerSafe`: other
 * characters outside printable ASCII percent-encoded, cut to MAX_ERROR_MESSAGE_LENGTH characters).
 */
export function invalidSignatureMessage(stringToSign: string): string {
  return headerSafe(INVALID_SIGNATURE_PREFIX + stringToSign.replace(/\n/g, "#"), MAX_ERROR_MESSAGE_LENGTH);
}

import { randomHex, sha256Hex } from "../crypto/hash";

/** WSO2 API Platform key format: `apip_` followed by 32 random bytes in lower-case hex. */
export const API_KEY_PREFIX = "apip_";
export const API_KEY_PATTERN = /^apip_[0-9a-f]{64}$/;

export function generateApiKey(): string {
  return API_KEY_PREFIX + randomHex(32);
}

export function hashApiKey(rawKey: string): string {
  return sha256Hex(rawKey);
}

/** What a listing shows of a key: `***` and its last five characters. */
export function maskSecret(rawOrSuffix: string): string {
  return "***" + rawOrSuffix.slice(-5);
}

/** Headers that carry an API key and a subscription key when the API's policy names none (matched case-insensitively). */
export const DEFAULT_API_KEY_HEADER = "API-Key";
export const DEFAULT_SUBSCRIPTION_KEY_HEADER = "Subscription-Key";

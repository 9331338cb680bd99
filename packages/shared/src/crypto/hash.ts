import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Lower-case hex SHA-256 of a UTF-8 string: the only form in which keys and tokens are stored. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

/** Random string over [a-z0-9], for generated names and AppKeys. */
export function randomAlphanumeric(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const out: string[] = [];
  // Rejection sampling keeps the distribution uniform (256 is not a multiple of 36).
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 252 && out.length < length) out.push(alphabet[byte % 36]!);
    }
  }
  return out.join("");
}

/** Compares two strings in time that depends only on their lengths. */
export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  if (left.length !== right.length) {
    timingSafeEqual(left, left);
    return false;
  }
  return timingSafeEqual(left, right);
}

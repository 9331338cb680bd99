import { SecretBox } from "@apigw/shared";

/**
 * Decrypted AppSecrets, kept in memory for a short time (`ttlMs`) so that a busy application does
 * not pay an AES-GCM decryption per request. An entry is found by the AppKey and used only for the
 * same sealed value, so a reset secret (a new sealed value in Redis) is used on the next request,
 * whatever the TTL.
 * Bounded: at most `maxEntries`; the oldest entry is dropped first (insertion order).
 */
export class SecretCache {
  private readonly box: SecretBox;
  /** By AppKey: the sealed value an entry was opened from must match (a reset secret is a miss). */
  private readonly entries = new Map<string, { sealed: string; secret: string; expiresAt: number }>();

  constructor(
    masterKey: string,
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    this.box = new SecretBox(masterKey);
  }

  /** The AppSecret, or undefined when the sealed value cannot be opened with the master key. */
  get(appKey: string, sealed: string): string | undefined {
    const now = this.now();
    const hit = this.entries.get(appKey);
    if (hit && hit.sealed === sealed) {
      if (hit.expiresAt > now) return hit.secret;
      this.entries.delete(appKey);
    }
    let secret: string;
    try {
      secret = this.box.decrypt(sealed, appKey);
    } catch {
      return undefined;
    }
    if (this.ttlMs > 0) {
      // Re-inserted, so that insertion order stays the order of the last decryption.
      this.entries.delete(appKey);
      if (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
      this.entries.set(appKey, { sealed, secret, expiresAt: now + this.ttlMs });
    }
    return secret;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

import type { ClaimAndCountResult, CredentialStore, ExpiringKey, ScopeRef } from "./store";
import { scopeKey, parseScopeKey } from "./store";

/**
 * The in-process credential store of the embedded default (`npm start` with no REDIS_URL): the
 * same contract as Redis, for one process. Expired entries are dropped lazily and by a sweep.
 */
export class MemoryCredentialStore implements CredentialStore {
  private readonly scopes = new Map<string, Map<string, string>>();
  private readonly expiring = new Map<string, { value: number; expiresAt: number }>();
  private readonly meta = new Map<string, string>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweep = setInterval(() => this.dropExpired(), 30_000);
    this.sweep.unref();
  }

  async replaceScope(scope: ScopeRef, fields: Record<string, string>): Promise<void> {
    this.scopes.set(scopeKey(scope), new Map(Object.entries(fields)));
  }

  async updateFields(scope: ScopeRef, set: Record<string, string>, remove: readonly string[]): Promise<void> {
    const key = scopeKey(scope);
    const hash = new Map(this.scopes.get(key));
    for (const field of remove) hash.delete(field);
    for (const [field, value] of Object.entries(set)) hash.set(field, value);
    // Like Redis: a hash without fields does not exist.
    if (hash.size === 0) this.scopes.delete(key);
    else this.scopes.set(key, hash);
  }

  async deleteScope(scope: ScopeRef): Promise<void> {
    this.scopes.delete(scopeKey(scope));
  }

  async listScopes(): Promise<ScopeRef[]> {
    return [...this.scopes.keys()].map(parseScopeKey).filter((s): s is ScopeRef => s !== undefined);
  }

  async readFields(scope: ScopeRef, fields: readonly string[]): Promise<(string | null)[]> {
    const hash = this.scopes.get(scopeKey(scope));
    return fields.map((f) => hash?.get(f) ?? null);
  }

  async claimOnce(key: string, ttlSeconds: number): Promise<boolean> {
    const entry = this.live(key);
    if (entry) return false;
    this.expiring.set(key, { value: 1, expiresAt: this.now() + ttlSeconds * 1000 });
    return true;
  }

  async increment(key: string, ttlSeconds: number, by = 1): Promise<number> {
    const entry = this.live(key);
    if (entry) {
      entry.value += by;
      return entry.value;
    }
    this.expiring.set(key, { value: by, expiresAt: this.now() + ttlSeconds * 1000 });
    return by;
  }

  async claimAndCount(nonce: ExpiringKey | undefined, counters: readonly ExpiringKey[]): Promise<ClaimAndCountResult> {
    // Synchronous from here on: no other call runs between the claim and the increments.
    const now = this.now();
    if (nonce) {
      if (this.live(nonce.key)) return { fresh: false, counts: [] };
      this.expiring.set(nonce.key, { value: 1, expiresAt: now + nonce.ttlSeconds * 1000 });
    }
    const counts: number[] = [];
    for (const { key, ttlSeconds } of counters) {
      const entry = this.live(key);
      if (entry) {
        entry.value += 1;
        counts.push(entry.value);
      } else {
        this.expiring.set(key, { value: 1, expiresAt: now + ttlSeconds * 1000 });
        counts.push(1);
      }
    }
    return { fresh: true, counts };
  }

  async setMeta(name: string, value: string): Promise<void> {
    this.meta.set(name, value);
  }

  async getMeta(name: string): Promise<string | null> {
    return this.meta.get(name) ?? null;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweep);
  }

  private live(key: string) {
    const entry = this.expiring.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.expiring.delete(key);
      return undefined;
    }
    return entry;
  }

  private dropExpired(): void {
    const now = this.now();
    for (const [key, entry] of this.expiring) if (entry.expiresAt <= now) this.expiring.delete(key);
  }
}

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
  private readonly projectionTokens = new Set<string>();
  private marker: string | null = null;
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
    return this.claim(key, ttlSeconds);
  }

  async increment(key: string, ttlSeconds: number, by = 1): Promise<number> {
    return this.add(key, ttlSeconds, by);
  }

  async claimAndCount(nonce: ExpiringKey | undefined, counters: readonly ExpiringKey[]): Promise<ClaimAndCountResult> {
    // Synchronous from here on: no other call runs between the claim and the increments.
    if (nonce && !this.claim(nonce.key, nonce.ttlSeconds)) return { fresh: false, counts: [] };
    return { fresh: true, counts: counters.map(({ key, ttlSeconds }) => this.add(key, ttlSeconds, 1)) };
  }

  async setMeta(name: string, value: string): Promise<void> {
    this.meta.set(name, value);
  }

  async getMeta(name: string): Promise<string | null> {
    return this.meta.get(name) ?? null;
  }

  async beginProjection(token: string): Promise<void> {
    this.projectionTokens.add(token);
  }

  async completeProjection(token: string, marker: string): Promise<boolean> {
    if (!this.projectionTokens.delete(token)) return false;
    this.marker = marker;
    return true;
  }

  async projectionMarker(): Promise<string | null> {
    return this.marker;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweep);
  }

  /** SET NX EX: true when `key` was absent (or expired) and is now held for `ttlSeconds`. */
  private claim(key: string, ttlSeconds: number): boolean {
    if (this.live(key)) return false;
    this.expiring.set(key, { value: 1, expiresAt: this.now() + ttlSeconds * 1000 });
    return true;
  }

  /** INCRBY with an EXPIRE on creation: the counter's new value. */
  private add(key: string, ttlSeconds: number, by: number): number {
    const entry = this.live(key);
    if (entry) {
      entry.value += by;
      return entry.value;
    }
    this.expiring.set(key, { value: by, expiresAt: this.now() + ttlSeconds * 1000 });
    return by;
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

import { Redis, Cluster, type ChainableCommander, type RedisOptions } from "ioredis";
import type { ClaimAndCountResult, CredentialStore, ExpiringKey, ScopeRef } from "./store";
import {
  claimThenCount,
  KEY_PREFIX,
  metaKey,
  parseScopeKey,
  PROJECTION_MARKER_KEY,
  PROJECTION_TOKEN_TTL_SECONDS,
  projectionTokenKey,
  scopeKey,
} from "./store";

export interface RedisConnectionOptions {
  /** `redis://[:password@]host:port/db` or `rediss://…` for a single server. */
  url?: string;
  /** Sentinel: `host:port,host:port` and the master's name. */
  sentinels?: string;
  sentinelMaster?: string;
  /** Cluster: `host:port,host:port` seed nodes. */
  clusterNodes?: string;
  /** How long a command may take before it fails (ms). */
  commandTimeoutMs?: number;
}

const INCREMENT_SCRIPT = `
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return value`;

/**
 * claimAndCount in one script. ARGV[1]: the nonce's TTL, or "" when there is no nonce; then
 * KEYS[1] is the nonce key. The counters are the remaining KEYS, the j-th one with its TTL in
 * ARGV[1 + j]. Returns nil when the nonce was already claimed (nothing counted), else the
 * counters' new values.
 */
const CLAIM_AND_COUNT_SCRIPT = `
local first = 1
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[1], '1', 'EX', ARGV[1], 'NX') then return false end
  first = 2
end
local counts = {}
for j = 1, #KEYS - first + 1 do
  local key = KEYS[first + j - 1]
  local value = redis.call('INCRBY', key, 1)
  if value == 1 then redis.call('EXPIRE', key, ARGV[1 + j]) end
  counts[j] = value
end
return counts`;

/**
 * completeProjection: KEYS[1] the rebuild's token, KEYS[2] the marker. Sets the marker only when
 * the token survived the rebuild (the server did not lose its data meanwhile).
 */
const COMPLETE_PROJECTION_SCRIPT = `
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1`;

function hostPorts(list: string): { host: string; port: number }[] {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [host, port] = entry.split(":");
      return { host: host!, port: Number(port ?? 6379) };
    });
}

/**
 * Commands fail fast while Redis is unreachable (no offline queue, no retries per request), so a
 * caller can answer at once (ext_authz fails closed with 503) instead of queueing without bound;
 * the connection itself keeps reconnecting in the background with capped backoff.
 */
export function connectRedis(options: RedisConnectionOptions): Redis | Cluster {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 1000,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    lazyConnect: false,
  };
  if (options.clusterNodes) {
    return new Cluster(hostPorts(options.clusterNodes), { enableOfflineQueue: false, redisOptions: common, clusterRetryStrategy: common.retryStrategy });
  }
  if (options.sentinels) {
    return new Redis({ ...common, sentinels: hostPorts(options.sentinels), name: options.sentinelMaster ?? "mymaster" });
  }
  return new Redis(options.url ?? "redis://127.0.0.1:6379", common);
}

/** Runs a MULTI/EXEC; throws the first command's error, or when the transaction was aborted. */
async function execAll(multi: ChainableCommander): Promise<void> {
  const results = await multi.exec();
  const failed = results?.find(([error]) => error);
  if (!results || failed) throw failed?.[0] ?? new Error("Redis transaction aborted");
}

type WithIncrement = {
  apigwIncrement(key: string, by: string, ttl: string): Promise<number>;
  apigwClaimAndCount(numberOfKeys: number, keysAndArgs: string[]): Promise<number[] | null>;
  apigwCompleteProjection(tokenKey: string, markerKey: string, marker: string): Promise<number>;
};

export class RedisCredentialStore implements CredentialStore {
  constructor(readonly redis: Redis | Cluster) {
    // defineCommand sends EVALSHA, falling back to EVAL once when the script is not cached.
    redis.defineCommand("apigwIncrement", { numberOfKeys: 1, lua: INCREMENT_SCRIPT });
    redis.defineCommand("apigwClaimAndCount", { lua: CLAIM_AND_COUNT_SCRIPT });
    redis.defineCommand("apigwCompleteProjection", { numberOfKeys: 2, lua: COMPLETE_PROJECTION_SCRIPT });
  }

  async replaceScope(scope: ScopeRef, fields: Record<string, string>): Promise<void> {
    const key = scopeKey(scope);
    const entries = Object.entries(fields);
    if (entries.length === 0) {
      await this.redis.del(key);
      return;
    }
    // Build a staging copy, then RENAME it over the live key: readers see the old scope or the new one, never a mix.
    const staging = `${key}:next`;
    const multi = this.redis.multi();
    multi.del(staging);
    for (let i = 0; i < entries.length; i += 1000) {
      multi.hset(staging, Object.fromEntries(entries.slice(i, i + 1000)));
    }
    multi.rename(staging, key);
    await execAll(multi);
  }

  async updateFields(scope: ScopeRef, set: Record<string, string>, remove: readonly string[]): Promise<void> {
    const key = scopeKey(scope);
    const entries = Object.entries(set);
    const removed = remove.filter((field) => !Object.hasOwn(set, field));
    if (entries.length === 0 && removed.length === 0) return;
    // One MULTI/EXEC: a reader sees the fields before or after, never half of the change.
    const multi = this.redis.multi();
    for (let i = 0; i < removed.length; i += 1000) multi.hdel(key, ...removed.slice(i, i + 1000));
    for (let i = 0; i < entries.length; i += 1000) multi.hset(key, Object.fromEntries(entries.slice(i, i + 1000)));
    await execAll(multi);
  }

  async deleteScope(scope: ScopeRef): Promise<void> {
    await this.redis.del(scopeKey(scope));
  }

  async listScopes(): Promise<ScopeRef[]> {
    const nodes = this.redis instanceof Cluster ? this.redis.nodes("master") : [this.redis];
    const scopes: ScopeRef[] = [];
    for (const node of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `${KEY_PREFIX}scope:{*}`, "COUNT", 1000);
        cursor = next;
        for (const key of keys) {
          const scope = parseScopeKey(key);
          if (scope) scopes.push(scope);
        }
      } while (cursor !== "0");
    }
    return scopes;
  }

  async readFields(scope: ScopeRef, fields: readonly string[]): Promise<(string | null)[]> {
    if (fields.length === 0) return [];
    return this.redis.hmget(scopeKey(scope), ...fields);
  }

  async claimOnce(key: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(key, "1", "EX", ttlSeconds, "NX")) === "OK";
  }

  async increment(key: string, ttlSeconds: number, by = 1): Promise<number> {
    return Number(await (this.redis as unknown as WithIncrement).apigwIncrement(key, String(by), String(ttlSeconds)));
  }

  async claimAndCount(nonce: ExpiringKey | undefined, counters: readonly ExpiringKey[]): Promise<ClaimAndCountResult> {
    if (this.redis instanceof Cluster) {
      // A script's keys must share a slot in Redis Cluster, and nonce and counter keys do not:
      // the same effect in two round trips.
      return claimThenCount(this, nonce, counters);
    }
    if (!nonce && counters.length === 0) return { fresh: true, counts: [] };
    // KEYS then ARGV, in one array (ioredis flattens it).
    const numberOfKeys = (nonce ? 1 : 0) + counters.length;
    const keysAndArgs: string[] = new Array(numberOfKeys * 2 + (nonce ? 0 : 1));
    let k = 0;
    if (nonce) keysAndArgs[k++] = nonce.key;
    for (const counter of counters) keysAndArgs[k++] = counter.key;
    keysAndArgs[k++] = nonce ? String(nonce.ttlSeconds) : "";
    for (const counter of counters) keysAndArgs[k++] = String(counter.ttlSeconds);
    const counts = await (this.redis as unknown as WithIncrement).apigwClaimAndCount(numberOfKeys, keysAndArgs);
    if (counts === null) return { fresh: false, counts: [] };
    return { fresh: true, counts: counts.map(Number) };
  }

  async setMeta(name: string, value: string): Promise<void> {
    await this.redis.set(metaKey(name), value);
  }

  async getMeta(name: string): Promise<string | null> {
    return this.redis.get(metaKey(name));
  }

  async beginProjection(token: string): Promise<void> {
    await this.redis.set(projectionTokenKey(token), "1", "EX", PROJECTION_TOKEN_TTL_SECONDS);
  }

  async completeProjection(token: string, marker: string): Promise<boolean> {
    const done = await (this.redis as unknown as WithIncrement).apigwCompleteProjection(projectionTokenKey(token), PROJECTION_MARKER_KEY, marker);
    return Number(done) === 1;
  }

  async projectionMarker(): Promise<string | null> {
    return this.redis.get(PROJECTION_MARKER_KEY);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

/** Resolves once the connection is ready (commands fail fast before that), or rejects after `timeoutMs`. */
export function redisReady(redis: Redis | Cluster, timeoutMs = 5000): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off("ready", onReady);
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once("ready", onReady);
  });
}

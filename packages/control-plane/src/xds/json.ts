/**
 * JSON helpers shared by snapshot.ts and routeConfiguration.ts: deterministic stringification and
 * the extraction of the references the ADS server needs for safe ordering (clusters a route or
 * listener may send traffic to, RouteConfiguration names a listener requests over RDS).
 */

export type Obj = Record<string, unknown>;

export function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function field(obj: Obj, ...keys: string[]): unknown {
  for (const key of keys) if (obj[key] !== undefined) return obj[key];
  return undefined;
}

/**
 * JSON with object keys sorted at every level (members whose value is undefined left out). Values
 * JSON cannot hold are kept apart from null and from each other (NaN, ±Infinity, bigints,
 * undefined list items, byte arrays): the result is a cache key for the validation of the value,
 * and the strict decode rejects those where it accepts null.
 */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (value instanceof Uint8Array) return `#bytes[${value.join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`).join(",")}}`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return `#${value}`;
  if (typeof value === "bigint") return `#${value}n`;
  return JSON.stringify(value) ?? `#${typeof value}`;
}

const CLUSTER_KEYS = new Set(["cluster", "cluster_name", "clusterName"]);
const WEIGHTED_KEYS = new Set(["weighted_clusters", "weightedClusters"]);
const RDS_NAME_KEYS = ["route_config_name", "routeConfigName"];

/**
 * Every cluster name the resource may send traffic to, sorted. Errs on the side of "referenced":
 * any string under a `cluster` / `cluster_name` key and every `weighted_clusters.clusters[].name`.
 */
export function collectClusterRefs(resource: unknown): string[] {
  const out = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!isObject(node)) return;
    for (const [key, value] of Object.entries(node)) {
      if (CLUSTER_KEYS.has(key) && typeof value === "string" && value) out.add(value);
      else if (WEIGHTED_KEYS.has(key) && isObject(value) && Array.isArray(value.clusters)) {
        for (const c of value.clusters) if (isObject(c) && typeof c.name === "string" && c.name) out.add(c.name);
        walk(value);
      } else walk(value);
    }
  };
  walk(resource);
  return [...out].sort();
}

export function collectRdsNames(resource: unknown): string[] {
  const out = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!isObject(node)) return;
    for (const [key, value] of Object.entries(node)) {
      if (key === "rds" && isObject(value)) {
        const name = field(value, ...RDS_NAME_KEYS);
        if (typeof name === "string" && name) out.add(name);
      }
      walk(value);
    }
  };
  walk(resource);
  return [...out].sort();
}

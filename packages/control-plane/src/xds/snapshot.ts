/**
 * An xDS snapshot: the complete Envoy configuration of one gateway group, per resource type, each
 * resource already validated and encoded once (strictly, with Envoy's own protos) so that the ADS
 * server only copies bytes.
 *
 *  - buildSnapshot({listeners, routes, clusters, endpoints}) checks every resource with
 *    checkEnvoyResource (strict proto3-JSON decode + PGV rules + Envoy's semantic rules) and throws a
 *    SnapshotError listing EVERY issue of every resource when one is invalid: nothing invalid is
 *    ever handed to the server. Resource names must be unique per type and equal the resource's own
 *    `name` (`cluster_name` for a ClusterLoadAssignment).
 *  - Per resource: `version` = the first 16 hex digits of sha256 over its deterministic bytes
 *    (map keys are sorted before encoding), so an unchanged resource keeps its version across
 *    rebuilds and delta clients receive only what changed. A RouteConfiguration is validated and
 *    encoded piece by piece (routeConfiguration.ts: each route once per frozen route object, the
 *    rest by content) and its version is sha256 over its skeleton (the bytes with each route
 *    replaced by its digest): also a function of the bytes alone, without hashing megabytes.
 *  - Reuse: a frozen resource (frozen = immutable; the translator deep-freezes what it memoizes)
 *    that is the very object of the previous snapshot's entry is taken as is; any other resource
 *    is compared with the previous entry by the hash of its canonical JSON.
 *  - Per type: `versions[typeUrl]` = hash over the sorted (name, version) pairs of that type.
 *  - consistent(snapshot): the cross-resource checks Envoy does not NACK but that stall or break
 *    traffic (an EDS cluster without its ClusterLoadAssignment waits for initial_fetch_timeout; a
 *    listener naming a RouteConfiguration that does not exist never warms; a route to an unknown
 *    cluster answers 503).
 *
 * The references that the server needs for safe ordering (clusters a route or listener uses, the
 * RouteConfiguration names a listener asks for over RDS, the EDS name of a cluster) are extracted
 * once here from the resource JSON (proto field names or lowerCamelCase JSON names alike). The
 * extraction errs on the side of "referenced": any string under a `cluster` / `cluster_name` key
 * and every `weighted_clusters.clusters[].name` counts, which can only keep a removed cluster a
 * little longer, never remove one too early.
 */
import { createHash } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  checkEnvoyResource,
  decodeEnvoyResource,
  ENVOY_TYPE_URLS,
  typeUrlOf,
  type ResourceIssue,
  type ValidateOptions,
} from "../envoy/schema/strict";
import { collectClusterRefs, collectRdsNames, field, isObject, stableStringify, type Obj } from "./json";
import { encodeRouteConfiguration, type EncodedRouteConfiguration } from "./routeConfiguration";

export const XDS_TYPE_URLS = {
  cluster: ENVOY_TYPE_URLS.cluster,
  endpoint: ENVOY_TYPE_URLS.clusterLoadAssignment,
  listener: ENVOY_TYPE_URLS.listener,
  route: ENVOY_TYPE_URLS.routeConfiguration,
} as const;

export type XdsTypeUrl = (typeof XDS_TYPE_URLS)[keyof typeof XDS_TYPE_URLS];

/** The order in which changes are pushed: what a resource refers to always arrives before it. */
export const PUSH_ORDER: readonly XdsTypeUrl[] = [
  XDS_TYPE_URLS.cluster,
  XDS_TYPE_URLS.endpoint,
  XDS_TYPE_URLS.listener,
  XDS_TYPE_URLS.route,
];

/** Short names, used as keys in status output ("Cluster", "ClusterLoadAssignment"...). */
export function kindOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
}

export function isXdsTypeUrl(typeUrl: string): typeUrl is XdsTypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(typeUrl);
}

export interface SnapshotResource {
  readonly name: string;
  readonly typeUrl: XdsTypeUrl;
  /** The resource as given (proto3 JSON), after it passed the strict check. */
  readonly resource: JsonObject;
  /** Its strictly encoded bytes: the value of the Any sent to Envoy. */
  readonly value: Uint8Array;
  /** sha256 of `value`, 16 hex digits (RouteConfiguration: sha256 of its skeleton, see routeConfiguration.ts). */
  readonly version: string;
  /** Routes and listeners: the clusters they may send traffic to. */
  readonly clusterRefs: readonly string[];
  /** Listeners: the RouteConfiguration names they request over RDS. */
  readonly routeRefs: readonly string[];
  /** EDS clusters: the ClusterLoadAssignment name they request (service_name or the cluster name). */
  readonly edsName?: string;
  /** Hash of the canonical input JSON, to reuse an unchanged resource without re-validating it (RouteConfiguration: its version). */
  readonly sourceHash: string;
}

export interface Snapshot {
  readonly resources: Readonly<Record<XdsTypeUrl, ReadonlyMap<string, SnapshotResource>>>;
  readonly versions: Readonly<Record<XdsTypeUrl, string>>;
  /** Hash over the four type versions. */
  readonly version: string;
}

export interface ResourceInput {
  name: string;
  typeUrl: string;
  resource: unknown;
}

export interface SnapshotInput {
  listeners?: readonly ResourceInput[];
  routes?: readonly ResourceInput[];
  clusters?: readonly ResourceInput[];
  endpoints?: readonly ResourceInput[];
}

export interface SnapshotIssue extends ResourceIssue {
  typeUrl: string;
  name: string;
}

export class SnapshotError extends Error {
  constructor(readonly issues: SnapshotIssue[]) {
    super(
      `invalid xDS snapshot (${issues.length} issue${issues.length === 1 ? "" : "s"}): ` +
        issues
          .slice(0, 20)
          .map((i) => `${kindOf(i.typeUrl)} "${i.name}" ${i.path || "(root)"}: ${i.message}`)
          .join("; ") +
        (issues.length > 20 ? ` (and ${issues.length - 20} more)` : ""),
    );
    this.name = "SnapshotError";
  }
}

export interface BuildSnapshotOptions {
  /** Reuse this snapshot's entries for resources whose JSON did not change (skips re-validation). */
  previous?: Snapshot;
  /** Passed to checkEnvoyResource. */
  validate?: ValidateOptions;
}

const INPUT_KEYS: Record<keyof SnapshotInput, XdsTypeUrl> = {
  clusters: XDS_TYPE_URLS.cluster,
  endpoints: XDS_TYPE_URLS.endpoint,
  listeners: XDS_TYPE_URLS.listener,
  routes: XDS_TYPE_URLS.route,
};

export function shortHash(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 16);
}

/** Version of a set of resources: hash over the sorted (name, version) pairs. */
export function versionOfSet(entries: Iterable<{ name: string; version: string }>): string {
  const pairs = [...entries].map((e) => `${e.name}\u0000${e.version}`).sort();
  return shortHash(pairs.join("\n"));
}

export function buildSnapshot(input: SnapshotInput, options: BuildSnapshotOptions = {}): Snapshot {
  const issues: SnapshotIssue[] = [];
  const resources = {} as Record<XdsTypeUrl, Map<string, SnapshotResource>>;
  for (const [key, typeUrl] of Object.entries(INPUT_KEYS) as [keyof SnapshotInput, XdsTypeUrl][]) {
    const map = new Map<string, SnapshotResource>();
    resources[typeUrl] = map;
    const previous = options.previous?.resources[typeUrl];
    (input[key] ?? []).forEach((item, i) => {
      const name = typeof item?.name === "string" ? item.name : "";
      const issue = (path: string, message: string) => issues.push({ typeUrl, name: name || `${key}[${i}]`, path, message });
      if (!name) return issue("", `${key}[${i}] has no name`);
      if (typeof item.typeUrl !== "string" || typeUrlOf(item.typeUrl) !== typeUrl) {
        return issue("", `${key}[${i}] has type URL "${String(item.typeUrl)}"; ${key} must be ${typeUrl}`);
      }
      if (map.has(name)) return issue("", `duplicate ${kindOf(typeUrl)} name "${name}"`);
      if (!isObject(item.resource)) return issue("", "the resource must be a JSON object");
      const ownName = typeUrl === XDS_TYPE_URLS.endpoint ? field(item.resource, "cluster_name", "clusterName") : field(item.resource, "name");
      if (ownName !== name) {
        const fieldName = typeUrl === XDS_TYPE_URLS.endpoint ? "cluster_name" : "name";
        return issue(fieldName, `the resource's ${fieldName} (${JSON.stringify(ownName ?? null)}) differs from its name "${name}"`);
      }
      const reused = previous?.get(name);
      if (reused && reused.resource === item.resource && Object.isFrozen(item.resource)) {
        map.set(name, reused);
        return;
      }
      if (typeUrl === XDS_TYPE_URLS.route) {
        const encoded = encodeRouteConfiguration(item.resource, options.validate);
        if (encoded) {
          if (!encoded.value) {
            for (const problem of encoded.issues) issues.push({ typeUrl, name, ...problem });
            map.set(name, placeholder(name, typeUrl));
            return;
          }
          map.set(name, reused && reused.version === encoded.version ? reused : makeRouteEntry(name, item.resource as JsonObject, encoded));
          return;
        }
      }
      const sourceHash = shortHash(stableStringify(item.resource));
      if (reused && reused.sourceHash === sourceHash) {
        map.set(name, reused);
        return;
      }
      const checked = checkEnvoyResource(typeUrl, item.resource, options.validate);
      if (!checked.bytes) {
        for (const problem of checked.issues) issues.push({ typeUrl, name, ...problem });
        map.set(name, placeholder(name, typeUrl)); // keeps duplicate detection working
        return;
      }
      map.set(name, makeEntry(name, typeUrl, item.resource as JsonObject, checked.bytes, sourceHash));
    });
  }
  if (issues.length) throw new SnapshotError(issues);
  return freeze(resources, options.previous);
}

export function emptySnapshot(): Snapshot {
  return freeze({
    [XDS_TYPE_URLS.cluster]: new Map(),
    [XDS_TYPE_URLS.endpoint]: new Map(),
    [XDS_TYPE_URLS.listener]: new Map(),
    [XDS_TYPE_URLS.route]: new Map(),
  } as Record<XdsTypeUrl, Map<string, SnapshotResource>>);
}

function freeze(resources: Record<XdsTypeUrl, Map<string, SnapshotResource>>, previous?: Snapshot): Snapshot {
  const versions = {} as Record<XdsTypeUrl, string>;
  for (const typeUrl of PUSH_ORDER) {
    // The same entries as the previous snapshot's (the usual case for all types but one): same version.
    versions[typeUrl] =
      previous && sameEntries(resources[typeUrl], previous.resources[typeUrl]) ? previous.versions[typeUrl] : versionOfSet(resources[typeUrl].values());
  }
  return { resources, versions, version: shortHash(PUSH_ORDER.map((t) => versions[t]).join("\n")) };
}

function sameEntries(a: ReadonlyMap<string, SnapshotResource>, b: ReadonlyMap<string, SnapshotResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, entry] of a) if (b.get(name) !== entry) return false;
  return true;
}

function makeRouteEntry(name: string, resource: JsonObject, encoded: EncodedRouteConfiguration): SnapshotResource {
  return Object.freeze({
    name,
    typeUrl: XDS_TYPE_URLS.route,
    resource,
    value: encoded.value!,
    version: encoded.version!,
    clusterRefs: encoded.clusterRefs!,
    routeRefs: [],
    edsName: undefined,
    sourceHash: encoded.version!,
  });
}

function makeEntry(name: string, typeUrl: XdsTypeUrl, resource: JsonObject, value: Uint8Array, sourceHash: string): SnapshotResource {
  const refs = typeUrl === XDS_TYPE_URLS.route || typeUrl === XDS_TYPE_URLS.listener ? collectClusterRefs(resource) : [];
  return Object.freeze({
    name,
    typeUrl,
    resource,
    value,
    version: shortHash(value),
    clusterRefs: refs,
    routeRefs: typeUrl === XDS_TYPE_URLS.listener ? collectRdsNames(resource) : [],
    edsName: typeUrl === XDS_TYPE_URLS.cluster ? edsNameOf(resource, name) : undefined,
    sourceHash,
  });
}

function placeholder(name: string, typeUrl: XdsTypeUrl): SnapshotResource {
  return { name, typeUrl, resource: {}, value: new Uint8Array(), version: "", clusterRefs: [], routeRefs: [], sourceHash: "" };
}

// ---------------------------------------------------------------------------------------------
// Consistency across resources

export interface ConsistencyResult {
  ok: boolean;
  issues: string[];
}

/**
 * EDS names = the ClusterLoadAssignments that EDS clusters use; RDS names = the RouteConfigurations
 * that listeners reference; every cluster a route sends traffic to exists.
 */
export function consistent(snapshot: Snapshot): ConsistencyResult {
  const issues: string[] = [];
  const clusters = snapshot.resources[XDS_TYPE_URLS.cluster];
  const endpoints = snapshot.resources[XDS_TYPE_URLS.endpoint];
  const listeners = snapshot.resources[XDS_TYPE_URLS.listener];
  const routes = snapshot.resources[XDS_TYPE_URLS.route];

  const edsNames = new Map<string, string>();
  for (const c of clusters.values()) if (c.edsName !== undefined) edsNames.set(c.edsName, c.name);
  for (const [eds, cluster] of edsNames) {
    if (!endpoints.has(eds)) issues.push(`EDS cluster "${cluster}" has no ClusterLoadAssignment "${eds}"`);
  }
  for (const name of endpoints.keys()) {
    if (!edsNames.has(name)) issues.push(`ClusterLoadAssignment "${name}" is not used by any EDS cluster`);
  }

  const rdsNames = new Map<string, string>();
  for (const l of listeners.values()) for (const r of l.routeRefs) rdsNames.set(r, l.name);
  for (const [rds, listener] of rdsNames) {
    if (!routes.has(rds)) issues.push(`listener "${listener}" references RouteConfiguration "${rds}", which does not exist`);
  }
  for (const name of routes.keys()) {
    if (!rdsNames.has(name)) issues.push(`RouteConfiguration "${name}" is not referenced by any listener`);
  }

  for (const r of routes.values()) {
    for (const c of r.clusterRefs) {
      if (!clusters.has(c)) issues.push(`RouteConfiguration "${r.name}" sends traffic to cluster "${c}", which does not exist`);
    }
  }
  return { ok: issues.length === 0, issues };
}

// ---------------------------------------------------------------------------------------------
// Envoy JSON of a snapshot (config_dump)

/** The resource in proto field names with "@type", as Envoy's config_dump shows it. */
export function envoyJsonOf(entry: SnapshotResource): JsonObject {
  const json = decodeEnvoyResource(entry.typeUrl, entry.value) as JsonObject;
  return { "@type": entry.typeUrl, ...json };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function edsNameOf(cluster: Obj, name: string): string | undefined {
  const type = cluster.type;
  if (type !== "EDS" && type !== 3) return undefined;
  const config = field(cluster, "eds_cluster_config", "edsClusterConfig");
  const serviceName = isObject(config) ? field(config, "service_name", "serviceName") : undefined;
  return typeof serviceName === "string" && serviceName ? serviceName : name;
}

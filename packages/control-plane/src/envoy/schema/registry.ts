/**
 * The Envoy v3 type registry: `protos/envoy-descriptors.binpb` (a FileDescriptorSet compiled by
 * build-descriptors.ts from the protos vendored in @grpc/grpc-js-xds) loaded into a
 * @bufbuild/protobuf FileRegistry. Loaded once and cached; built on demand when the file is
 * missing (the file is committed, so that only happens in a tree where it was deleted).
 */
import fs from "node:fs";
import path from "node:path";
import { createFileRegistry, fromBinary, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { buildDescriptorSet, DESCRIPTOR_SET_PATH } from "./build-descriptors";

export { DESCRIPTOR_SET_PATH };

export const TYPE_URL_PREFIX = "type.googleapis.com/";

export interface EnvoyRegistryInfo {
  path: string;
  bytes: number;
  files: number;
  /** true when the descriptor set had to be built by this call */
  built: boolean;
  /** time to (build and) load, in milliseconds */
  ms: number;
}

let cached: { registry: FileRegistry; info: EnvoyRegistryInfo } | undefined;

/**
 * Returns the cached registry, loading it on first use. With `path`, loads that descriptor set
 * instead (uncached, for tools and tests). Throws when the file is missing and cannot be built.
 */
export function loadEnvoyRegistry(options: { path?: string } = {}): FileRegistry {
  if (options.path) return readRegistry(path.resolve(options.path), false).registry;
  if (!cached) {
    const override = process.env.APIGW_ENVOY_DESCRIPTORS;
    cached = readRegistry(override ? path.resolve(override) : DESCRIPTOR_SET_PATH, !override);
  }
  return cached.registry;
}

/** Size and timing of the cached registry (loads it when needed). */
export function envoyRegistryInfo(): EnvoyRegistryInfo {
  loadEnvoyRegistry();
  return { ...cached!.info };
}

function readRegistry(file: string, buildWhenMissing: boolean): { registry: FileRegistry; info: EnvoyRegistryInfo } {
  const started = performance.now();
  let built = false;
  if (!fs.existsSync(file)) {
    if (!buildWhenMissing) throw new Error(`Envoy descriptor set ${file} does not exist`);
    buildDescriptorSet({ out: file });
    built = true;
  }
  const bytes = fs.readFileSync(file);
  const set = fromBinary(FileDescriptorSetSchema, bytes);
  const registry = createFileRegistry(set);
  return {
    registry,
    info: { path: file, bytes: bytes.length, files: set.file.length, built, ms: Math.round(performance.now() - started) },
  };
}

/** "type.googleapis.com/x.y.Z" or "x.y.Z" → "x.y.Z" (the part after the last "/"). */
export function typeNameOf(typeUrlOrName: string): string {
  return typeUrlOrName.slice(typeUrlOrName.lastIndexOf("/") + 1);
}

/** "x.y.Z" or any type URL → "type.googleapis.com/x.y.Z". */
export function typeUrlOf(typeUrlOrName: string): string {
  return TYPE_URL_PREFIX + typeNameOf(typeUrlOrName);
}

/** The message descriptor for a type URL or full type name; throws for an unknown type. */
export function envoyMessageSchema(typeUrlOrName: string): DescMessage {
  const name = typeNameOf(typeUrlOrName);
  const desc = loadEnvoyRegistry().getMessage(name);
  if (!desc) throw new Error(`unknown message type "${name}" (not in the Envoy descriptor set)`);
  return desc;
}

/**
 * Builds `protos/envoy-descriptors.binpb`: a google.protobuf.FileDescriptorSet of Envoy's v3 API,
 * compiled offline by `buf build` from the .proto files vendored in the npm package
 * `@grpc/grpc-js-xds` (folder `deps/`: envoy-api, xds, googleapis, protoc-gen-validate).
 *
 * Steps:
 *  1. copy the four proto roots into a temporary workspace (only `validate/` of protoc-gen-validate),
 *     next to a copy of `protos/buf.yaml`;
 *  2. patch the vendored `validate/validate.proto`: Envoy's protos use `StringRules.ignore_empty`
 *     (field 26 upstream) which this older PGV copy lacks; the field is added unless present;
 *  3. select every `envoy/**\/v3/*.proto` file plus every file of the xds/udpa root whose imports
 *     all resolve (a handful import opencensus / opentelemetry / prometheus protos that are not
 *     vendored: they are skipped and listed), so every Envoy v3 extension config that can be put
 *     in an `Any` resolves, not only the types the control plane uses today;
 *  4. `buf build --exclude-source-info -o <tmp> --path ...` (imports are included), then check that
 *     the result loads into a @bufbuild/protobuf registry and holds REQUIRED_MESSAGE_TYPES, and
 *     move it into place atomically.
 *
 * CLI (from the repository root):
 *   node --import tsx packages/control-plane/src/envoy/schema/build-descriptors.ts          # (re)build
 *   node --import tsx packages/control-plane/src/envoy/schema/build-descriptors.ts --check  # exit 1 if stale
 *   ... --out <file>   write somewhere else
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const require = createRequire(import.meta.url);

/** Repository root (this file lives in packages/control-plane/src/envoy/schema/). */
export const REPO_ROOT = fileURLToPath(new URL("../../../../../", import.meta.url));
export const PROTOS_DIR = path.join(REPO_ROOT, "protos");
export const DESCRIPTOR_SET_PATH = path.join(PROTOS_DIR, "envoy-descriptors.binpb");
const BUF_YAML = path.join(PROTOS_DIR, "buf.yaml");

/** Message types the control plane relies on; the build fails when one is missing. */
export const REQUIRED_MESSAGE_TYPES = [
  "envoy.config.listener.v3.Listener",
  "envoy.config.route.v3.RouteConfiguration",
  "envoy.config.route.v3.Route",
  "envoy.config.cluster.v3.Cluster",
  "envoy.config.endpoint.v3.ClusterLoadAssignment",
  "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  "envoy.extensions.filters.http.router.v3.Router",
  "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
  "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
  "envoy.extensions.filters.http.cors.v3.Cors",
  "envoy.extensions.filters.http.cors.v3.CorsPolicy",
  "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
  "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
  "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
  "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
  "envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig",
  "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  "envoy.config.bootstrap.v3.Bootstrap",
  "envoy.service.discovery.v3.DiscoveryRequest",
  "envoy.service.discovery.v3.DiscoveryResponse",
  "envoy.service.discovery.v3.DeltaDiscoveryRequest",
  "envoy.service.discovery.v3.DeltaDiscoveryResponse",
  "envoy.service.auth.v3.CheckRequest",
  "envoy.service.auth.v3.CheckResponse",
  "validate.FieldRules",
] as const;

interface ProtoRoot {
  /** directory name in the workspace (= module path in protos/buf.yaml) */
  name: string;
  /** sub-directories to copy (all when undefined) */
  only?: string[];
  /** which files of this root are build targets (others are only available as imports) */
  target: (relativePath: string) => boolean;
}

const ROOTS: ProtoRoot[] = [
  { name: "envoy-api", target: (f) => f.startsWith("envoy/") && f.includes("/v3/") },
  { name: "xds", target: () => true },
  { name: "googleapis", target: () => false },
  { name: "protoc-gen-validate", only: ["validate"], target: () => false },
];

export interface BuildResult {
  path: string;
  bytes: number;
  /** files in the descriptor set (targets and their imports) */
  files: number;
  /** build targets handed to buf */
  targets: number;
  /** candidate targets left out because an import is not vendored */
  skipped: { file: string; missing: string[] }[];
  /** whether validate.proto needed the ignore_empty patch */
  patchedValidate: boolean;
  grpcJsXdsVersion: string;
  ms: number;
}

export function grpcJsXdsPackage(): { dir: string; version: string } {
  const pkgJson = require.resolve("@grpc/grpc-js-xds/package.json");
  const version = (JSON.parse(fs.readFileSync(pkgJson, "utf8")) as { version: string }).version;
  return { dir: path.dirname(pkgJson), version };
}

function bufBinary(): string {
  const pkgJson = require.resolve("@bufbuild/buf/package.json");
  return path.join(path.dirname(pkgJson), "bin", "buf");
}

/**
 * Add `optional bool ignore_empty = 26;` to `message StringRules` unless it is already there.
 * Throws when the message cannot be found or field number 26 is taken by something else.
 */
export function patchValidateProto(text: string): { text: string; patched: boolean } {
  const start = text.search(/message\s+StringRules\s*\{/);
  if (start < 0) throw new Error("validate.proto: message StringRules not found");
  let depth = 0;
  let end = -1;
  for (let i = text.indexOf("{", start); i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error("validate.proto: unbalanced braces in StringRules");
  const body = text.slice(start, end);
  if (/\bignore_empty\b/.test(body)) return { text, patched: false };
  if (/=\s*26\s*[;[]/.test(body)) throw new Error("validate.proto: StringRules field 26 is already used");
  const insertion =
    "\n  // Added by build-descriptors.ts: upstream protoc-gen-validate has this field and Envoy's\n" +
    "  // protos use it; the copy vendored in @grpc/grpc-js-xds predates it.\n" +
    "  optional bool ignore_empty = 26;\n";
  return { text: text.slice(0, end) + insertion + text.slice(end), patched: true };
}

function listProtoFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listProtoFiles(dir, rel));
    else if (entry.isFile() && entry.name.endsWith(".proto")) out.push(rel);
  }
  return out.sort();
}

const IMPORT_RE = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

/**
 * Chooses the build targets: candidate files whose imports all resolve, transitively, within the
 * workspace (google/protobuf/* are built into buf).
 */
function selectTargets(workspace: string): { targets: string[]; skipped: BuildResult["skipped"] } {
  const located = new Map<string, string>(); // import path -> workspace-relative path
  const candidates: string[] = [];
  for (const root of ROOTS) {
    for (const rel of listProtoFiles(path.join(workspace, root.name))) {
      if (!located.has(rel)) located.set(rel, `${root.name}/${rel}`);
      if (root.target(rel)) candidates.push(rel);
    }
  }
  const missingMemo = new Map<string, string[]>();
  const missingOf = (importPath: string, stack: Set<string>): string[] => {
    const memo = missingMemo.get(importPath);
    if (memo) return memo;
    if (importPath.startsWith("google/protobuf/")) return [];
    const file = located.get(importPath);
    if (!file) return [importPath];
    if (stack.has(importPath)) return []; // cycle (protoc would reject it anyway)
    stack.add(importPath);
    const text = fs.readFileSync(path.join(workspace, file), "utf8");
    const missing = new Set<string>();
    for (const m of text.matchAll(IMPORT_RE)) for (const x of missingOf(m[1]!, stack)) missing.add(x);
    stack.delete(importPath);
    const result = [...missing].sort();
    missingMemo.set(importPath, result);
    return result;
  };
  const targets: string[] = [];
  const skipped: BuildResult["skipped"] = [];
  for (const rel of candidates) {
    const missing = missingOf(rel, new Set());
    if (missing.length === 0) targets.push(located.get(rel)!);
    else skipped.push({ file: rel, missing });
  }
  return { targets, skipped };
}

function copyDir(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, filter: (src) => fs.statSync(src).isDirectory() || src.endsWith(".proto") });
}

/** Parses a descriptor set and checks that it holds the required types; returns the file count. */
export function verifyDescriptorSet(bytes: Uint8Array): number {
  const set = fromBinary(FileDescriptorSetSchema, bytes);
  const registry = createFileRegistry(set);
  const missing = REQUIRED_MESSAGE_TYPES.filter((t) => !registry.getMessage(t));
  if (missing.length) throw new Error(`descriptor set lacks ${missing.join(", ")}`);
  if (!registry.getExtension("validate.rules")) throw new Error("descriptor set lacks the validate.rules extension");
  if (!registry.getMessage("validate.StringRules")?.fields.some((f) => f.name === "ignore_empty")) {
    throw new Error("validate.StringRules.ignore_empty is missing");
  }
  return set.file.length;
}

/** Builds the descriptor set (synchronously: buf takes well under a second). */
export function buildDescriptorSet(options: { out?: string; log?: (line: string) => void } = {}): BuildResult {
  const started = performance.now();
  const out = path.resolve(options.out ?? DESCRIPTOR_SET_PATH);
  const xds = grpcJsXdsPackage();
  const deps = path.join(xds.dir, "deps");
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "envoy-protos-"));
  try {
    for (const root of ROOTS) {
      const src = path.join(deps, root.name);
      if (!fs.existsSync(src)) throw new Error(`${src} is missing (is @grpc/grpc-js-xds installed?)`);
      for (const sub of root.only ?? [""]) copyDir(path.join(src, sub), path.join(workspace, root.name, sub));
    }
    fs.copyFileSync(BUF_YAML, path.join(workspace, "buf.yaml"));

    const validateProto = path.join(workspace, "protoc-gen-validate", "validate", "validate.proto");
    const patch = patchValidateProto(fs.readFileSync(validateProto, "utf8"));
    if (patch.patched) fs.writeFileSync(validateProto, patch.text);

    const { targets, skipped } = selectTargets(workspace);
    const tmpOut = path.join(workspace, "out.binpb");
    const args = ["build", "--exclude-source-info", "-o", tmpOut, ...targets.flatMap((t) => ["--path", t])];
    const run = spawnSync(process.execPath, [bufBinary(), ...args], {
      cwd: workspace,
      encoding: "utf8",
      env: { ...process.env, BUF_CACHE_DIR: path.join(workspace, ".buf-cache") },
      maxBuffer: 64 * 1024 * 1024,
    });
    if (run.error) throw run.error;
    if (run.status !== 0) {
      throw new Error(`buf build failed (exit ${run.status}):\n${(run.stderr || run.stdout).slice(0, 4000)}`);
    }
    const bytes = fs.readFileSync(tmpOut);
    const files = verifyDescriptorSet(bytes);

    fs.mkdirSync(path.dirname(out), { recursive: true });
    const staging = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(staging, bytes);
    fs.renameSync(staging, out);

    const result: BuildResult = {
      path: out,
      bytes: bytes.length,
      files,
      targets: targets.length,
      skipped,
      patchedValidate: patch.patched,
      grpcJsXdsVersion: xds.version,
      ms: Math.round(performance.now() - started),
    };
    options.log?.(
      `wrote ${path.relative(process.cwd(), out) || out}: ${result.bytes} bytes, ${result.files} files ` +
        `(${result.targets} targets, ${skipped.length} skipped) from @grpc/grpc-js-xds@${xds.version} in ${result.ms} ms`,
    );
    for (const s of skipped) options.log?.(`  skipped ${s.file}: imports ${s.missing.join(", ")} (not vendored)`);
    return result;
  } finally {
    fs.rmSync(workspace, { recursive: true, force: true });
  }
}

function main(argv: string[]): number {
  const outIndex = argv.indexOf("--out");
  const out = outIndex >= 0 ? argv[outIndex + 1] : undefined;
  if (outIndex >= 0 && !out) throw new Error("--out needs a path");
  if (argv.includes("--check")) {
    const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "envoy-desc-check-")), "check.binpb");
    try {
      buildDescriptorSet({ out: tmp });
      const target = path.resolve(out ?? DESCRIPTOR_SET_PATH);
      const same = fs.existsSync(target) && Buffer.compare(fs.readFileSync(tmp), fs.readFileSync(target)) === 0;
      console.log(same ? `${target} is up to date` : `${target} is missing or stale: rebuild it`);
      return same ? 0 : 1;
    } finally {
      fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
    }
  }
  buildDescriptorSet({ out, log: (line) => console.log(line) });
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}

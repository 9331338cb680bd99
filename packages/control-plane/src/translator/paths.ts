import type { IrPathMatch, IrPathRewrite } from "./ir";
import { compareStrings } from "./util";

/*
 * Paths: from a context and a WSO2 operation path (`/books/{id}`, `/files/*`) to Envoy matches and
 * rewrites, and the order of routes.
 *
 * Trailing slash: `/books` and `/books/` are the same operation (as the store's route identity
 * says), so every operation is matched in both forms and the upstream receives the form the client
 * sent. A final `*` matches the bare prefix too (`/files/*` answers `/files`, `/files/` and
 * `/files/a/b`).
 *
 * Envoy's URI templates accept variable names of 1-16 letters, digits and `_` starting with a
 * letter, and at most 5 variables; WSO2 paths allow `-`, a leading `_` and 32 characters. Names are
 * renamed per route, consistently for its match and rewrite: invalid characters become `_`, a name
 * not starting with a letter gets a `v` in front, names are cut to 16 characters and a clash gets
 * `_2`, `_3`... The final `*` becomes `{rest=**}` (renamed the same way if an operation already
 * has a `rest`).
 */

export type Segment = { kind: "literal"; text: string } | { kind: "variable"; name: string } | { kind: "rest" };

/** Literal segments of a resolved context (`/` has none). */
export function contextSegments(context: string): Segment[] {
  return context
    .split("/")
    .filter((s) => s !== "")
    .map((text) => ({ kind: "literal", text }));
}

/** Segments of a declared operation path; a trailing slash is dropped (both forms are served). */
export function operationSegments(path: string): Segment[] {
  const parts = path.split("/").slice(1);
  if (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  return parts.map((part, i): Segment => {
    if (part === "*" && i === parts.length - 1) return { kind: "rest" };
    const variable = /^\{(.+)\}$/.exec(part);
    if (variable) return { kind: "variable", name: variable[1]! };
    return { kind: "literal", text: part };
  });
}

/** Route identity within a virtual host: variables anonymous, trailing slash ignored. */
export function pathGroupKey(segments: Segment[]): string {
  return "/" + segments.map((s) => (s.kind === "literal" ? s.text : s.kind === "variable" ? "{}" : "*")).join("/");
}

const RANK = { literal: 0, variable: 1, rest: 2 } as const;

/**
 * Route order: at the first position where two paths differ, a literal comes before a variable,
 * and a variable before the final `*`; a path that ends there comes before one that goes on. So
 * `/books/new` precedes `/books/{id}`, which precedes `/books/*`. Two literals compare by code
 * point (they never match the same request, the order only has to be stable).
 */
export function compareSegments(a: Segment[], b: Segment[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.kind !== y.kind) return RANK[x.kind] - RANK[y.kind];
    if (x.kind === "literal" && y.kind === "literal" && x.text !== y.text) return compareStrings(x.text, y.text);
  }
  return a.length - b.length;
}

/** One of the (at most two) request shapes an operation answers. */
export interface PathForm {
  /** Context + operation segments. */
  segments: Segment[];
  /** How many leading segments are the context. */
  contextLength: number;
  trailingSlash: boolean;
}

/** The forms of an operation: with and without a trailing slash, or, for a final `*`, the bare prefix and the prefix with anything under it. */
export function pathForms(context: Segment[], operation: Segment[]): PathForm[] {
  const all = [...context, ...operation];
  const last = all[all.length - 1];
  if (last?.kind === "rest") {
    return [
      { segments: all.slice(0, -1), contextLength: context.length, trailingSlash: false },
      { segments: all, contextLength: context.length, trailingSlash: false },
    ];
  }
  if (all.length === 0) return [{ segments: all, contextLength: 0, trailingSlash: false }];
  return [
    { segments: all, contextLength: context.length, trailingSlash: false },
    { segments: all, contextLength: context.length, trailingSlash: true },
  ];
}

const MAX_TEMPLATE_LENGTH = 256;
const MAX_TEMPLATE_VARIABLES = 5;
const ENVOY_VARIABLE = /^[a-zA-Z][a-zA-Z0-9_]{0,15}$/;

/** Envoy names for the variables of one operation (declared name → Envoy name, plus the `*`'s). */
export function envoyVariableNames(operation: Segment[]): { variables: Map<string, string>; rest: string } {
  const used = new Set<string>();
  const unique = (wanted: string): string => {
    let base = wanted.replace(/[^A-Za-z0-9_]/g, "_");
    if (!/^[A-Za-z]/.test(base)) base = "v" + base;
    base = base.slice(0, 16);
    let name = base;
    for (let n = 2; used.has(name); n++) name = base.slice(0, 16 - String(n).length - 1) + "_" + n;
    used.add(name);
    return name;
  };
  const variables = new Map<string, string>();
  // Valid names first, so that a renamed one never takes a name the operation itself uses.
  for (const s of operation) if (s.kind === "variable" && ENVOY_VARIABLE.test(s.name)) variables.set(s.name, unique(s.name));
  for (const s of operation) if (s.kind === "variable" && !variables.has(s.name)) variables.set(s.name, unique(s.name));
  return { variables, rest: unique("rest") };
}

export type RenderedPath = { match: IrPathMatch; rewrite?: IrPathRewrite } | { problem: string };

/**
 * The match and rewrite of one form. `prefix` is what replaces the context upstream (the URL's
 * path and basePath, without a trailing slash; may be empty).
 */
export function renderForm(form: PathForm, names: { variables: Map<string, string>; rest: string }, prefix: string): RenderedPath {
  const templated = form.segments.some((s) => s.kind !== "literal");
  const tail = form.trailingSlash ? "/" : "";
  const join = (segments: Segment[], render: (s: Segment) => string) => segments.map((s) => "/" + render(s)).join("");
  const variableCount = form.segments.filter((s) => s.kind !== "literal").length;
  const operationPart = form.segments.slice(form.contextLength);

  if (!templated) {
    const literal = (s: Segment) => (s as { text: string }).text;
    const path = join(form.segments, literal) + tail || "/";
    const upstream = prefix + join(operationPart, literal) + tail || "/";
    return { match: { kind: "exact", path }, ...(upstream !== path ? { rewrite: { kind: "replace", path: upstream } } : {}) };
  }

  if (form.segments.filter((s) => s.kind === "variable").length > MAX_TEMPLATE_VARIABLES) {
    return { problem: `more than ${MAX_TEMPLATE_VARIABLES} path variables (Envoy's URI template limit)` };
  }
  // With 5 variables and a final `*`, the `*` cannot be a sixth variable: it stays an unnamed glob
  // and the rewrite is a regex on the context instead.
  const namedRest = variableCount <= MAX_TEMPLATE_VARIABLES;
  const matchSegment = (s: Segment) =>
    s.kind === "literal" ? s.text : s.kind === "variable" ? `{${names.variables.get(s.name)}}` : namedRest ? `{${names.rest}=**}` : "**";
  const template = join(form.segments, matchSegment) + tail;
  if (template.length > MAX_TEMPLATE_LENGTH) {
    return { problem: `the path template is longer than ${MAX_TEMPLATE_LENGTH} characters (Envoy's URI template limit)` };
  }
  const match: IrPathMatch = { kind: "template", template };

  if (form.contextLength === 0 && prefix === "") return { match };
  const rewriteSegment = (s: Segment) =>
    s.kind === "literal" ? encodeRewriteLiteral(s.text) : s.kind === "variable" ? `{${names.variables.get(s.name)}}` : `{${names.rest}}`;
  const rewriteTemplate = encodeRewriteLiteral(prefix) + join(operationPart, rewriteSegment) + tail;
  if (namedRest && rewriteTemplate.length <= MAX_TEMPLATE_LENGTH) {
    return { match, rewrite: { kind: "template", template: rewriteTemplate } };
  }
  // Strip the context's segments whatever they are (the match already pinned them), put the prefix in front.
  const pattern = form.contextLength === 0 ? "^" : `^(?:/[^/]+){${form.contextLength}}`;
  return { match, rewrite: { kind: "regex", pattern, substitution: escapeRegexSubstitution(prefix) } };
}

/** Percent-encodes what Envoy's rewrite template refuses as literal text (e.g. `*`, `[`). */
export function encodeRewriteLiteral(text: string): string {
  let out = "";
  for (const ch of text) {
    if (/[a-zA-Z0-9\-._~%!$&'()+,;:@=/]/.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, "utf8")) out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function escapeRegexSubstitution(text: string): string {
  return text.replace(/\\/g, "\\\\");
}

/**
 * A trie over path groups (anonymous variables), to find the groups whose paths contain every
 * path of another group (`/books/{}` contains `/books/new`; `/books/*` contains both): their
 * methods also answer that group's paths, so a 405 there lists them in Allow.
 */
export class PathTrie<T> {
  private readonly root = new TrieNode<T>();

  insert(segments: Segment[], value: T): void {
    let node = this.root;
    for (const s of segments) {
      if (s.kind === "rest") {
        node.rest = value;
        return;
      }
      if (s.kind === "literal") {
        let next = node.literals.get(s.text);
        if (!next) node.literals.set(s.text, (next = new TrieNode<T>()));
        node = next;
      } else {
        node = node.variable ??= new TrieNode<T>();
      }
    }
    node.end = value;
  }

  /** Values of every inserted path that matches at least all the requests `segments` matches (itself included). */
  covering(segments: Segment[]): T[] {
    const out: T[] = [];
    const walk = (node: TrieNode<T>, i: number) => {
      if (node.rest !== undefined) out.push(node.rest);
      if (i === segments.length) {
        if (node.end !== undefined) out.push(node.end);
        return;
      }
      const s = segments[i]!;
      if (s.kind === "literal") {
        const literal = node.literals.get(s.text);
        if (literal) walk(literal, i + 1);
        if (node.variable) walk(node.variable, i + 1);
      } else if (s.kind === "variable") {
        if (node.variable) walk(node.variable, i + 1);
      }
      // s.kind === "rest": only a `*` at this position contains it, collected above
    };
    walk(this.root, 0);
    return out;
  }
}

class TrieNode<T> {
  literals = new Map<string, TrieNode<T>>();
  variable?: TrieNode<T>;
  end?: T;
  rest?: T;
}

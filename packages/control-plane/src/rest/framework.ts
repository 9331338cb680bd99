import type { Request, Response, Router } from "express";
import { z } from "zod";
import { formatZodIssues } from "@apigw/shared";
import type { Role } from "../config";
import { ApiError, fieldPath, type FieldError } from "../errors";
import { deny, type AuthenticatedUser } from "./auth";
import { contentErrors } from "./content";
import type { Services } from "./services";

type HttpMethod = "get" | "post" | "put" | "delete";

export interface HandlerContext<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  user: AuthenticatedUser;
  services: Services;
  req: Request;
}

export interface HandlerResult {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ResponseSpec {
  description: string;
  schema?: z.ZodType;
}

/**
 * One route: its contract (parameters, body, responses, roles) and its handler. The same
 * definition validates requests at run time and produces the OpenAPI document, so the
 * documentation cannot drift from the behaviour.
 */
export interface RouteDefinition<P = any, Q = any, B = any> {
  method: HttpMethod;
  /** OpenAPI-style path below the base path, e.g. `/rest-apis/{id}`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  roles: readonly Role[];
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** Body schema to publish when it differs from the validator (e.g. YAML-or-JSON wrappers). */
  bodyRequired?: boolean;
  /** Runs before body validation; used where the order of checks is part of the contract. */
  precheck?: (ctx: HandlerContext<P, Q, unknown>) => Promise<void> | void;
  responses: Record<number, ResponseSpec>;
  handler: (ctx: HandlerContext<P, Q, B>) => Promise<HandlerResult>;
}

export function defineRoute<P, Q, B>(route: RouteDefinition<P, Q, B>): RouteDefinition<P, Q, B> {
  return route;
}

export function zodIssuesToFieldErrors(issues: readonly z.core.$ZodIssue[], prefix = ""): FieldError[] {
  return formatZodIssues(issues).map((issue) => ({ field: fieldPath(issue.path, prefix) || prefix || "body", message: issue.message }));
}

/** Validates params, query and body together, so every failing field is reported at once. */
function parseAll(route: RouteDefinition, req: Request): { params: unknown; query: unknown; body: unknown } {
  const errors: FieldError[] = [];
  const parse = (schema: z.ZodType | undefined, input: unknown, prefix: string) => {
    if (!schema) return input;
    const result = schema.safeParse(input);
    if (result.success) return result.data;
    errors.push(...zodIssuesToFieldErrors(result.error.issues, prefix));
    return undefined;
  };
  const params = parse(route.params, req.params, "");
  const query = parse(route.query, { ...(req.query as object) }, "");
  let body: unknown;
  if (route.body) {
    if (req.body === undefined) {
      if (route.bodyRequired !== false) {
        throw new ApiError(400, "Request body is required", [{ field: "body", message: "is required" }]);
      }
      body = parse(route.body, {}, "");
    } else {
      body = parse(route.body, req.body, "");
    }
  }
  if (errors.length > 0) throw ApiError.validation(errors);
  return { params, query, body };
}

export function mountRoutes(router: Router, routes: readonly RouteDefinition[], services: Services): void {
  for (const route of routes) {
    const expressPath = route.path.replace(/\{([A-Za-z0-9_]+)\}/g, ":$1");
    router[route.method](expressPath, async (req: Request, res: Response) => {
      const user = res.locals.user as AuthenticatedUser;
      if (!route.roles.includes(user.role)) return deny(res, 403, "forbidden");
      res.locals.route = route.path;
      // Before anything reads them (prechecks query the store): NULs, lone surrogates, depth.
      const contentProblems = [...contentErrors(req.params, ""), ...contentErrors({ ...(req.query as object) }, ""), ...contentErrors(req.body, "")];
      if (contentProblems.length > 0) throw ApiError.validation(contentProblems);
      if (route.precheck) {
        await route.precheck({ params: req.params as never, query: req.query as never, body: req.body, user, services, req });
      }
      const { params, query, body } = parseAll(route, req);
      const result = await route.handler({ params, query, body, user, services, req } as HandlerContext<unknown, unknown, unknown>);
      for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
      if (result.body === undefined) res.status(result.status).end();
      else res.status(result.status).json(result.body);
    });
  }
}

/** For 405 answers: which methods a path supports. */
/** Each route's path as a regex, compiled once (405 and 404 answers consult every route). */
const pathPatterns = new WeakMap<RouteDefinition, RegExp>();
function pathPattern(route: RouteDefinition): RegExp {
  let pattern = pathPatterns.get(route);
  if (!pattern) pathPatterns.set(route, (pattern = new RegExp("^" + route.path.replace(/\{[A-Za-z0-9_]+\}/g, "[^/]+") + "/?$")));
  return pattern;
}

export function allowedMethods(routes: readonly RouteDefinition[], path: string): string[] {
  const methods = new Set<string>();
  for (const route of routes) if (pathPattern(route).test(path)) methods.add(route.method.toUpperCase());
  return [...methods].sort();
}

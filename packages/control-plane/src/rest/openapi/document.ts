import { z } from "zod";
import type { RouteDefinition } from "../framework";
import { BASE_PATH } from "../paths";

const errorSchema = {
  type: "object",
  required: ["status", "message"],
  properties: {
    status: { type: "string", enum: ["error"] },
    message: { type: "string" },
    requestId: { type: "string", description: "Present on 500 answers; the detail is in the server log under this id." },
    errors: {
      type: "array",
      items: {
        type: "object",
        required: ["field", "message"],
        properties: { field: { type: "string", example: "spec.context" }, message: { type: "string" } },
      },
    },
  },
};

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { target: "openapi-3.0", io, unrepresentable: "any" }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

function parametersOf(schema: z.ZodType | undefined, location: "path" | "query") {
  if (!schema) return [];
  const js = jsonSchema(schema, "input") as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === "path" || (js.required ?? []).includes(name),
    description: property.description,
    schema: property,
  }));
}

/** The OpenAPI 3 document, built from the same route definitions that validate requests. */
export function buildOpenApiDocument(routes: readonly RouteDefinition[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const responses: Record<string, unknown> = {};
    const statuses = { ...route.responses, 401: { description: "Missing or wrong credentials" }, 403: { description: "The user's role may not call this operation" } } as Record<number, { description: string; schema?: z.ZodType }>;
    if (route.body) {
      statuses[400] ??= { description: "Malformed body or validation failure; every failing field is listed" };
      statuses[413] = { description: "Body larger than the configured limit" };
      statuses[415] = { description: "Content-Type other than JSON or YAML" };
    }
    statuses[500] = { description: "Unexpected error; the body carries a request id" };
    for (const [status, spec] of Object.entries(statuses)) {
      const code = Number(status);
      const content =
        code >= 400
          ? { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
          : spec.schema
            ? { "application/json": { schema: jsonSchema(spec.schema, "output") } }
            : undefined;
      responses[status] = content ? { description: spec.description, content } : { description: spec.description };
    }
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      description: [route.description, `Roles: ${route.roles.join(", ")}.`].filter(Boolean).join("\n\n"),
      tags: [route.tag],
      parameters: [...parametersOf(route.params, "path"), ...parametersOf(route.query, "query")],
      responses,
    };
    if (route.body) {
      const schema = jsonSchema(route.body, "input");
      operation.requestBody = {
        required: route.bodyRequired !== false,
        content: { "application/json": { schema }, "application/yaml": { schema } },
      };
    }
    (paths[route.path] ??= {})[route.method] = operation;
  }
  return {
    openapi: "3.0.3",
    info: {
      title: "apigw management API",
      version: "0.9",
      description:
        "Compatible with WSO2 API Platform's gateway management API v0.9 (rest-apis, api-keys, subscription plans, subscriptions), plus applications, authorizations and plug-ins in the style of Alibaba Cloud API Gateway and Huawei APIG. Bodies may be JSON or YAML.",
    },
    servers: [{ url: BASE_PATH }],
    security: [{ basicAuth: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: { basicAuth: { type: "http", scheme: "basic" } },
      schemas: { Error: errorSchema },
    },
  };
}

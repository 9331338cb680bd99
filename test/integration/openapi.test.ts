import { expect } from "chai";
import { allRoutes } from "../../packages/control-plane/src/rest/routes";
import { call, get } from "../support/client";

describe("OpenAPI document", () => {
  it("is served without credentials and describes every route", async () => {
    const reply = await get("/openapi.json", { as: null });
    expect(reply.status).to.equal(200);
    expect(reply.body.openapi).to.match(/^3\./);
    const documented = Object.entries(reply.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).to.deep.equal(allRoutes.map((r) => `${r.method.toUpperCase()} ${r.path}`).sort());
    expect(new Set(allRoutes.map((r) => r.operationId)).size).to.equal(allRoutes.length);
  });

  it("documents request bodies, parameters and the error shape", async () => {
    const doc = (await get("/openapi.json", { as: null })).body;
    const create = doc.paths["/rest-apis"].post;
    expect(create.requestBody.content).to.have.keys(["application/json", "application/yaml"]);
    expect(create.requestBody.content["application/json"].schema.properties.spec.required).to.include.members(["displayName", "version", "context", "upstream", "operations"]);
    expect(create.responses["400"].content["application/json"].schema.$ref).to.equal("#/components/schemas/Error");
    const list = doc.paths["/rest-apis"].get;
    expect(list.parameters.map((p: { name: string }) => p.name)).to.include.members(["displayName", "version", "context", "status"]);
    expect(doc.components.schemas.Error.required).to.deep.equal(["status", "message"]);
  });

  it("has every documented operation mounted (no documented route answers the catch-all 404)", async () => {
    for (const route of allRoutes) {
      const path = route.path.replace(/\{[^}]+\}/g, "00000000-0000-0000-0000-000000000000");
      const reply = await call(route.method.toUpperCase(), path, { as: "admin" });
      expect(reply.body?.message ?? "", `${route.method} ${route.path}`).to.not.match(/^No resource at/);
      expect(reply.status, `${route.method} ${route.path}`).to.not.equal(405);
      expect(reply.status, `${route.method} ${route.path}`).to.be.below(500);
    }
  });
});

describe("docs/", () => {
  it("holds the current OpenAPI document and REST reference (run `npm run docs:openapi` after changing a route)", async () => {
    const { readFileSync } = await import("node:fs");
    const { buildOpenApiDocument } = await import("../../packages/control-plane/src/rest/openapi/document");
    const { renderMarkdown } = await import("../../packages/control-plane/src/rest/openapi/markdown");
    const doc = buildOpenApiDocument(allRoutes);
    expect(JSON.parse(readFileSync("docs/openapi.json", "utf8"))).to.deep.equal(JSON.parse(JSON.stringify(doc)));
    expect(readFileSync("docs/rest-api.md", "utf8")).to.equal(renderMarkdown(doc));
  });
});

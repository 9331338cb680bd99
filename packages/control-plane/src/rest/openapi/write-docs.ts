import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { allRoutes } from "../routes";
import { buildOpenApiDocument } from "./document";
import { renderMarkdown } from "./markdown";

/** `npm run docs:openapi`: writes docs/openapi.json and docs/rest-api.md from the route definitions. */
const root = resolve(import.meta.dirname, "../../../../..");
const doc = buildOpenApiDocument(allRoutes);
writeFileSync(resolve(root, "docs/openapi.json"), JSON.stringify(doc, null, 2) + "\n");
writeFileSync(resolve(root, "docs/rest-api.md"), renderMarkdown(doc));
process.stdout.write("wrote docs/openapi.json and docs/rest-api.md\n");

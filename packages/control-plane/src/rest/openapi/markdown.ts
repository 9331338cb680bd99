/** Renders the OpenAPI document as the REST reference page (docs/rest-api.md). */
export function renderMarkdown(doc: any): string {
  const lines: string[] = [
    "# Management REST API reference",
    "",
    "Generated from the OpenAPI document (`npm run docs:openapi`); the same definitions validate",
    "requests at run time, so this page and the server's behaviour cannot drift apart. The live",
    "document is served at `GET /api/management/v0.9/openapi.json` and is in `docs/openapi.json`.",
    "",
    "Base path: `/api/management/v0.9`. Authentication: HTTP basic. Bodies: JSON or YAML",
    "(`Content-Type: application/json` or `application/yaml`).",
    "",
    "Every error has the shape `{\"status\":\"error\",\"message\":\"...\",\"errors\":[{\"field\":\"...\",\"message\":\"...\"}]}`",
    "(`errors` on validation failures, listing every failing field; `requestId` on a 500).",
    "While the store (Postgres) cannot be reached, any request that needs it answers `503` with",
    "`Retry-After`: the write was not applied, or (the connection lost at COMMIT) its outcome is",
    "unknown; retrying is safe, every write being one transaction.",
    "",
  ];
  const byTag = new Map<string, string[]>();
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = op.tags?.[0] ?? "Other";
      const section: string[] = byTag.get(tag) ?? [];
      section.push(`### ${method.toUpperCase()} \`${path}\``, "", `**${op.summary}** (\`${op.operationId}\`)`, "");
      if (op.description) section.push(op.description, "");
      const params = (op.parameters ?? []) as any[];
      if (params.length) {
        section.push("| parameter | in | required | type |", "| --- | --- | --- | --- |");
        for (const p of params) {
          const type = p.schema?.enum ? p.schema.enum.join(" \\| ") : (p.schema?.type ?? "");
          section.push(`| \`${p.name}\` | ${p.in} | ${p.required ? "yes" : "no"} | ${type} |`);
        }
        section.push("");
      }
      if (op.requestBody) {
        const schema = op.requestBody.content["application/json"].schema;
        const props = Object.keys(schema.properties ?? {});
        const required = new Set<string>(schema.required ?? []);
        section.push(
          `Body${op.requestBody.required ? "" : " (optional)"}: ${props.length ? props.map((p) => (required.has(p) ? `\`${p}\`*` : `\`${p}\``)).join(", ") : "see the schema"} (\\* required).`,
          "",
        );
      }
      section.push("| status | meaning |", "| --- | --- |");
      for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
        section.push(`| ${status} | ${String(response.description).replace(/\|/g, "\\|")} |`);
      }
      section.push("");
      byTag.set(tag, section);
    }
  }
  for (const [tag, section] of byTag) lines.push(`## ${tag}`, "", ...section);
  return lines.join("\n");
}

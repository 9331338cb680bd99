import express, { type NextFunction, type Request, type Response } from "express";
import YAML from "yaml";
import { ApiError } from "../errors";

const YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"];

/**
 * Reads the body as bytes (capped at `limit`: 413 beyond it), then parses it by Content-Type:
 * JSON or YAML, anything else 415. Parse errors are 400 with the parser's position.
 */
export function bodyParser(limit: string) {
  const raw = express.raw({ type: () => true, limit });
  return [
    raw,
    (req: Request, _res: Response, next: NextFunction) => {
      const buffer = req.body as unknown;
      if (!Buffer.isBuffer(buffer) || buffer.length === 0) {
        req.body = undefined;
        return next();
      }
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
      const text = buffer.toString("utf8");
      if (type === "application/json" || type.endsWith("+json")) {
        try {
          req.body = JSON.parse(text);
        } catch (error) {
          return next(ApiError.badRequest(`Malformed JSON body: ${(error as Error).message}`));
        }
        return next();
      }
      if (YAML_TYPES.includes(type)) {
        try {
          // The core schema has no custom tags; a small alias budget stops "billion laughs" bodies.
          req.body = YAML.parse(text, { schema: "core", maxAliasCount: 50, uniqueKeys: true, prettyErrors: false });
        } catch (error) {
          return next(ApiError.badRequest(`Malformed YAML body: ${(error as Error).message.split("\n")[0]}`));
        }
        return next();
      }
      next(
        new ApiError(
          415,
          type
            ? `Unsupported Content-Type '${type}'; use application/json or application/yaml`
            : "Missing Content-Type; use application/json or application/yaml",
        ),
      );
    },
  ];
}

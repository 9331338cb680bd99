import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { GatewayConfig } from "../../packages/control-plane/src/store/reads/gatewayConfig";
import type { TranslatorOptions } from "../../packages/control-plane/src/translator";

/** The translator's golden cases: `<name>.input.json` (+ optional `.options.json`) → `<name>.output.json`. */
export const GOLDEN_DIR = fileURLToPath(new URL("../golden/translator/", import.meta.url));

export const goldenCases = fs
  .readdirSync(GOLDEN_DIR)
  .filter((f) => f.endsWith(".input.json"))
  .map((f) => f.slice(0, -".input.json".length))
  .sort();

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}

export function caseInput(name: string): { config: GatewayConfig; options: TranslatorOptions } {
  const optionsFile = path.join(GOLDEN_DIR, `${name}.options.json`);
  return {
    config: readJson<GatewayConfig>(path.join(GOLDEN_DIR, `${name}.input.json`)),
    options: fs.existsSync(optionsFile) ? readJson<TranslatorOptions>(optionsFile) : {},
  };
}

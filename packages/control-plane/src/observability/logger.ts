import { pino, type Logger } from "pino";
import { terminalLogStream } from "@apigw/shared";

export type { Logger };

/**
 * Structured logs (JSON lines; pretty lines on a terminal, see terminalLogStream). Anything that could carry a credential is redacted at the logger, so a
 * careless log call cannot leak one.
 */
export function createLogger(level: string, name: string): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: [
        "req.headers.authorization",
        "req.headers.cookie",
        'req.headers["api-key"]',
        'req.headers["subscription-key"]',
        "*.apiKey",
        "*.appSecret",
        "*.appCode",
        "*.subscriptionToken",
        "*.password",
        "*.secret",
      ],
      censor: "[redacted]",
    },
  }, terminalLogStream());
}

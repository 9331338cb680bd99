import { pino, type Logger } from "pino";
import { terminalLogStream } from "@apigw/shared";

/**
 * Structured logs of the ext_authz process. The service never logs credentials itself (at most
 * their last four characters, see headers.ts `lastFour`); the redaction below is a second line of
 * defence against a careless log call that passes request headers.
 */
export function createExtAuthzLogger(level: string): Logger {
  return pino({
    name: "ext-authz",
    level,
    redact: {
      paths: [
        "headers.authorization",
        'headers["api-key"]',
        'headers["subscription-key"]',
        'headers["x-ca-signature"]',
        "*.headers.authorization",
        '*.headers["api-key"]',
        '*.headers["subscription-key"]',
        '*.headers["x-ca-signature"]',
        "*.apiKey",
        "*.appSecret",
        "*.appCode",
        "*.secret",
        "*.signature",
      ],
      censor: "[redacted]",
    },
  }, terminalLogStream());
}

import type { DestinationStream } from "pino";
import pretty from "pino-pretty";

/**
 * Where a pino logger writes: human-readable, coloured lines when stdout is a terminal (a person
 * running `npm start`), else undefined, i.e. pino's default of one JSON object per line (for log
 * collectors, containers, pipes). Redaction happens before either, so both are equally safe.
 */
export function terminalLogStream(stdout: { isTTY?: boolean } = process.stdout): DestinationStream | undefined {
  if (!stdout.isTTY) return undefined;
  return pretty({ colorize: true, sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" });
}

import { BlockList, isIP } from "node:net";
import type { IpControlParams } from "@apigw/shared";

/**
 * The ipControl plug-in, compiled once per projected scope configuration (node:net BlockList for
 * addresses and CIDR blocks, IPv4 and IPv6).
 *
 * Decision for a client address and (when known) the caller's application id:
 *  1. a match in the API's deny list, or in the deny list of the caller's application entry: refused;
 *  2. an allow list that is not empty (the API's, and the application entry's) and does not
 *     contain the address: refused;
 *  3. otherwise allowed.
 * When a list applies but the client address cannot be determined (not an IP literal), the
 * request is refused: the rule fails closed.
 */
export interface CompiledIpControl {
  allow?: BlockList;
  deny?: BlockList;
  applications: Map<string, { allow?: BlockList; deny?: BlockList }>;
  trustForwardedFor?: boolean;
  forwardedForDepth: number;
}

function compileList(entries: readonly string[] | undefined): BlockList | undefined {
  if (!entries || entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf("/");
    const address = normalizeIp(slash === -1 ? entry : entry.slice(0, slash));
    const family = address ? isIP(address) : 0;
    if (!address || family === 0) continue; // validated by the control plane; ignore anything else
    const type = family === 6 ? "ipv6" : "ipv4";
    try {
      if (slash === -1) list.addAddress(address, type);
      else {
        const prefix = Number(entry.slice(slash + 1));
        if (!Number.isInteger(prefix)) continue;
        list.addSubnet(address, prefix, type);
      }
    } catch {
      // A prefix out of range for the family: the control plane refuses those; skip defensively.
    }
  }
  // An allow list whose entries were all unusable still applies (and allows nobody): fail closed.
  return list;
}

export function compileIpControl(params: IpControlParams): CompiledIpControl {
  const applications = new Map<string, { allow?: BlockList; deny?: BlockList }>();
  for (const app of params.applications ?? []) {
    applications.set(app.applicationId, { allow: compileList(app.allow), deny: compileList(app.deny) });
  }
  return {
    allow: compileList(params.allow),
    deny: compileList(params.deny),
    applications,
    trustForwardedFor: params.trustForwardedFor,
    forwardedForDepth: params.forwardedForDepth ?? 1,
  };
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; brackets and an IPv6 zone are dropped; undefined when not an IP. */
export function normalizeIp(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let address = value.trim();
  if (address.startsWith("[") && address.endsWith("]")) address = address.slice(1, -1);
  const zone = address.indexOf("%");
  if (zone !== -1) address = address.slice(0, zone);
  const mapped = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(address);
  if (mapped) address = mapped[1]!;
  return isIP(address) ? address : undefined;
}

/**
 * The client address for ipControl: the peer address Envoy reports, or, when X-Forwarded-For is
 * trusted, the entry `depth` places from the right (1 = the last one appended). With fewer entries
 * than `depth` (or no header) the peer address is used. Undefined when the chosen value is not an IP.
 */
export function clientAddress(
  sourceAddress: string | undefined,
  forwardedFor: string | undefined,
  trust: boolean,
  depth: number,
): string | undefined {
  if (trust && forwardedFor) {
    const entries = forwardedFor.length > 8192 ? [] : forwardedFor.split(",").map((e) => e.trim()).filter(Boolean);
    if (entries.length >= depth) return normalizeIp(entries[entries.length - depth]);
  }
  return normalizeIp(sourceAddress);
}

function contains(list: BlockList, address: string): boolean {
  return list.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
}

/** True when the address may call. */
export function ipAllowed(rule: CompiledIpControl, address: string | undefined, applicationId: string | undefined): boolean {
  const app = applicationId ? rule.applications.get(applicationId) : undefined;
  const lists = [rule.deny, app?.deny, rule.allow, app?.allow];
  if (lists.every((l) => l === undefined)) return true;
  if (!address) return false;
  if (rule.deny && contains(rule.deny, address)) return false;
  if (app?.deny && contains(app.deny, address)) return false;
  if (rule.allow && !contains(rule.allow, address)) return false;
  if (app?.allow && !contains(app.allow, address)) return false;
  return true;
}

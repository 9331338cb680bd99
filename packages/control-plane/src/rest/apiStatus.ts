import { lastApiRevision } from "../store/reads/apiRevision";
import type { GatewayApi } from "../store/reads/gatewayConfig";
import { apiServedBy } from "../translator";
import type { Services } from "./services";

/*
 * What a RestAPI's status says about its life after the store, in the manner of Kubernetes Gateway
 * API conditions (type, status, reason, message, observedRevision):
 *
 *  - Accepted: the stored API builds into a configuration Envoy accepts. False (Invalid) when a
 *    gateway group holds it back (the Envoy check refused it at build time: a rule tightened by an
 *    upgrade, a clash with another API); the message says with what it is held and why.
 *  - Programmed: every connected gateway that serves the API has ACKed the revision of its latest
 *    change. False with reason Undeployed, Invalid (held), Pending (published but not all ACKed yet,
 *    or not yet published), or NoGateways (no connected gateway serves it: nothing is serving it).
 *  - Degraded: True (PartiallyServed) when the gateway serves less than declared: operations left
 *    out, policies not honoured exactly (e.g. an executionCondition, which is not evaluated); each
 *    is named in the message.
 *
 * `gateways.synced` is true only when at least one gateway serves the API and all of them have
 * ACKed its latest revision.
 */

export interface Condition {
  type: "Accepted" | "Programmed" | "Degraded";
  status: "True" | "False";
  reason: string;
  message: string;
  observedRevision: number;
}

export interface ApiStatusReport {
  gateways?: {
    revision: number;
    synced: boolean;
    gateways: { name: string; nodes: number; ackedRevision: number | null }[];
  };
  conditions: Condition[];
}

const MAX_LISTED = 20;

function list(items: string[]): string {
  return items.slice(0, MAX_LISTED).join("; ") + (items.length > MAX_LISTED ? `; and ${items.length - MAX_LISTED} more` : "");
}

export async function apiStatusReport(services: Services, handle: string, labels: Record<string, string>, deployed: boolean): Promise<ApiStatusReport> {
  const revision = await lastApiRevision(services.database.knex, handle);
  const condition = (type: Condition["type"], status: boolean, reason: string, message: string): Condition => ({
    type,
    status: status ? "True" : "False",
    reason,
    message,
    observedRevision: revision,
  });
  const source = services.gateways;
  if (!source) return { conditions: [condition("Accepted", true, "Accepted", "The API is valid and stored")] };

  const gateways = (await source.connectedGateways())
    .filter((g) => apiServedBy({ labels } as GatewayApi, g.name))
    .map((g) => ({ name: g.name, nodes: g.nodes, ackedRevision: g.syncedRevision ?? null }));
  const synced = deployed && gateways.length > 0 && gateways.every((g) => g.ackedRevision !== null && g.ackedRevision >= revision);
  const builds = deployed ? (source.apiStatus?.(handle) ?? []) : [];
  const held = builds.filter((b) => b.held);
  const diagnostics = new Set<string>();
  for (const build of builds) {
    for (const d of build.diagnostics) diagnostics.add([d.stage, d.operation].filter(Boolean).join(" ") + (d.stage || d.operation ? ": " : "") + d.message);
  }

  const accepted = held.length
    ? condition(
        "Accepted",
        false,
        "Invalid",
        `Envoy would refuse the stored API; gateway group(s) ${held.map((b) => `'${b.group}'`).join(", ")} hold it back (${held[0]!.held!.heldAt}): ${list(held[0]!.held!.problems)}`,
      )
    : condition("Accepted", true, "Accepted", "The API is valid and builds into the gateway configuration");

  let programmed: Condition;
  if (!deployed) programmed = condition("Programmed", false, "Undeployed", "The API is undeployed: no gateway serves it");
  else if (held.length) programmed = condition("Programmed", false, "Invalid", "The gateways do not serve the API as stored (see Accepted)");
  else if (gateways.length === 0) programmed = condition("Programmed", false, "NoGateways", "No connected gateway serves this API");
  else if (synced) programmed = condition("Programmed", true, "Programmed", `Every connected gateway serving the API (${gateways.map((g) => g.name).join(", ")}) has ACKed revision ${revision}`);
  else {
    const behind = gateways.filter((g) => g.ackedRevision === null || g.ackedRevision < revision).map((g) => `${g.name} (ACKed ${g.ackedRevision ?? "nothing"})`);
    programmed = condition("Programmed", false, "Pending", `Waiting for gateways to ACK revision ${revision}: ${list(behind)}`);
  }

  const degraded = diagnostics.size
    ? condition("Degraded", true, "PartiallyServed", `The gateway serves less than declared: ${list([...diagnostics])}`)
    : condition("Degraded", false, "AsDeclared", "The gateway serves the API as declared");

  return { gateways: { revision, synced, gateways }, conditions: [accepted, programmed, degraded] };
}

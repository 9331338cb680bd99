import type { Knex } from "knex";

/** The channel on which every committed write is announced. */
export const CHANGE_CHANNEL = "apigw_changes";

// Any constant works; it only has to be the same in every replica.
const WRITE_LOCK_ID = 727_274_001;

export type Entity =
  | "rest_api"
  | "api_key"
  | "subscription_plan"
  | "subscription"
  | "application"
  | "authorization"
  | "plugin"
  | "plugin_binding";

export interface Change {
  entity: Entity;
  id: string;
  op: "create" | "update" | "delete";
  /** APIs whose gateway or credential configuration this change affects. */
  apiIds?: string[];
}

/** What is published on CHANGE_CHANNEL after a commit. */
export interface ChangeNotification {
  revision: number;
  changes: Change[];
  /** Set when the change list was too long for a NOTIFY payload; the consumer should reload everything. */
  truncated?: boolean;
}

export class ChangeRecorder {
  readonly changes: Change[] = [];
  revision?: number;

  record(change: Change): void {
    this.changes.push(change);
  }
}

/**
 * A check run inside every write transaction of a database before it commits, with the changes
 * the transaction recorded: it may read the transaction's own state and throw to roll it all back.
 * The control plane sets one per database (pipeline/admission.ts: what would not reach Envoy is
 * refused); set per knex instance so that every writer is covered without knowing about it.
 */
export type AdmissionCheck = (tx: Knex.Transaction, changes: readonly Change[]) => Promise<void>;
const admissionChecks = new WeakMap<Knex, AdmissionCheck>();

export function setAdmissionCheck(knex: Knex, check: AdmissionCheck | undefined): void {
  if (check) admissionChecks.set(knex, check);
  else admissionChecks.delete(knex);
}

/**
 * Runs `work` in one transaction. Writers are serialised by a transaction-scoped advisory lock,
 * so revisions are assigned in commit order: a reader that sees revision N has seen every change
 * up to N. The revision row and the NOTIFY belong to the same transaction, so a rolled-back
 * request leaves no trace and a committed one is always announced.
 */
export async function writeTransaction<T>(
  knex: Knex,
  work: (tx: Knex.Transaction, changes: ChangeRecorder) => Promise<T>,
): Promise<{ value: T; revision?: number; changes: Change[] }> {
  const recorder = new ChangeRecorder();
  const value = await knex.transaction(async (tx) => {
    await tx.raw("SELECT pg_advisory_xact_lock(?)", [WRITE_LOCK_ID]);
    const result = await work(tx, recorder);
    if (recorder.changes.length > 0) {
      await admissionChecks.get(knex)?.(tx, recorder.changes);
      const [row] = await tx("change_log")
        .insert({ changes: JSON.stringify(recorder.changes) })
        .returning("revision");
      recorder.revision = Number(row.revision);
      const notification: ChangeNotification = { revision: recorder.revision, changes: recorder.changes };
      let payload = JSON.stringify(notification);
      // NOTIFY payloads must stay under 8000 bytes.
      if (Buffer.byteLength(payload) > 7900) {
        payload = JSON.stringify({ revision: recorder.revision, changes: [], truncated: true } satisfies ChangeNotification);
      }
      await tx.raw("SELECT pg_notify(?, ?)", [CHANGE_CHANNEL, payload]);
    }
    return result;
  });
  return { value, revision: recorder.revision, changes: recorder.changes };
}

/** The newest committed revision (0 for an empty store). */
export async function currentRevision(knex: Knex | Knex.Transaction): Promise<number> {
  const row = await knex("change_log").max({ revision: "revision" }).first();
  return Number(row?.revision ?? 0);
}

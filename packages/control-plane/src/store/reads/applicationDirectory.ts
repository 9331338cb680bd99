import type { Knex } from "knex";
import { isUuid } from "../../rest/schemas/common";
import { readSnapshot } from "./snapshot";

/**
 * An application as the credential store's application directory knows it: identifiers only (the
 * AppKeys and the SHA-256 of the AppCode), whether it is enabled, and nothing secret.
 */
export interface DirectoryApplication {
  id: string;
  enabled: boolean;
  /** SHA-256 hex of the AppCode: the only form the store has. */
  appCodeHash: string;
  appKeys: string[];
}

/**
 * One consistent read of the applications of `appIds` (those that still exist; ids that are not
 * UUIDs match nothing), or of every application when `appIds` is not given. Sorted by id.
 */
export async function loadApplicationDirectory(knex: Knex, appIds?: readonly string[]): Promise<DirectoryApplication[]> {
  const ids = appIds?.filter(isUuid).map((id) => id.toLowerCase());
  if (ids && ids.length === 0) return [];
  return readSnapshot(knex, async (tx) => {
    const appQuery = tx("applications").orderBy("id").select("id", "status", "app_code_hash");
    const pairQuery = tx("app_key_pairs").orderBy([{ column: "app_id" }, { column: "app_key" }]).select("app_id", "app_key");
    if (ids) {
      appQuery.whereIn("id", ids);
      pairQuery.whereIn("app_id", ids);
    }
    const apps = (await appQuery) as { id: string; status: string; app_code_hash: string }[];
    const pairs = (await pairQuery) as { app_id: string; app_key: string }[];
    const keysByApp = new Map<string, string[]>();
    for (const pair of pairs) {
      const keys = keysByApp.get(pair.app_id);
      if (keys) keys.push(pair.app_key);
      else keysByApp.set(pair.app_id, [pair.app_key]);
    }
    return apps.map((a) => ({
      id: a.id,
      enabled: a.status === "ENABLED",
      appCodeHash: a.app_code_hash,
      appKeys: keysByApp.get(a.id) ?? [],
    }));
  });
}

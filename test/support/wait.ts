import { currentRevision } from "../../packages/control-plane/src/store/changes";
import { harness } from "./hooks";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 3000, intervalMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Waits until the running control plane's gateway pipeline has published every committed revision. */
export async function published(timeoutMs = 5000): Promise<void> {
  const target = await currentRevision(harness().database.knex);
  await waitFor(`the pipeline to publish revision ${target}`, () => (harness().pipeline.publishedRevision >= target ? true : undefined), timeoutMs);
  await harness().pipeline.settled();
}

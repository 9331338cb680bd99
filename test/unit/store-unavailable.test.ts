import net from "node:net";
import { expect } from "chai";
import knexPkg from "knex";
import pg from "pg";
import { ApiError } from "../../packages/control-plane/src/errors";
import { isStoreUnavailable, retryDelay } from "../../packages/control-plane/src/store/unavailable";

/** A local TCP server that does `onConnection` with every socket (no Postgres involved). */
async function fakeServer(onConnection: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function errorOf(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

/** A pg error as the server sends it (DatabaseError carries the SQLSTATE in `code`). */
const sqlError = (code: string, message = "server error") => Object.assign(new Error(message), { code, severity: "FATAL" });

describe("store: which failures mean 'unavailable' (503)", () => {
  it("recognises what node-postgres and knex raise when the server cannot be reached", async () => {
    // Nothing listens: connection refused.
    const closed = await fakeServer(() => undefined);
    await closed.close();
    const refused = await errorOf(() => new pg.Client({ host: "127.0.0.1", port: closed.port }).connect());
    expect((refused as { code?: string }).code).to.equal("ECONNREFUSED");
    expect(isStoreUnavailable(refused)).to.equal(true);

    // The server hangs up at once (a restart, a proxy cut).
    const hangUp = await fakeServer((socket) => socket.destroy());
    const terminated = await errorOf(() => new pg.Client({ host: "127.0.0.1", port: hangUp.port }).connect());
    expect(isStoreUnavailable(terminated), String(terminated)).to.equal(true);
    await hangUp.close();

    // The server accepts and never answers: pg's connect timeout, and knex's acquire timeout.
    const silent = await fakeServer(() => undefined);
    const connectTimeout = await errorOf(() => new pg.Client({ host: "127.0.0.1", port: silent.port, connectionTimeoutMillis: 50 }).connect());
    expect(isStoreUnavailable(connectTimeout), String(connectTimeout)).to.equal(true);
    const knex = knexPkg.knex({
      client: "pg",
      // The connect timeout lets the attempt end after the acquire gave up, so that destroy() returns.
      connection: { host: "127.0.0.1", port: silent.port, user: "x", database: "x", connectionTimeoutMillis: 300 },
      acquireConnectionTimeout: 100,
      log: { warn: () => undefined, error: () => undefined, debug: () => undefined },
      pool: { min: 0, max: 1 },
    });
    const acquireTimeout = await errorOf(() => knex.raw("SELECT 1"));
    expect((acquireTimeout as Error).name).to.equal("KnexTimeoutError");
    expect(isStoreUnavailable(acquireTimeout)).to.equal(true);
    await knex.destroy().catch(() => undefined);
    await silent.close();
  });

  it("recognises the server's connection-class SQLSTATEs and nothing else", () => {
    for (const code of ["57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08P01"]) {
      expect(isStoreUnavailable(sqlError(code)), code).to.equal(true);
    }
    // A request's own fault, or a bug: not "unavailable".
    for (const code of ["23505", "23503", "22P02", "42P01", "42601", "40P01", "XX000", "57014"]) {
      expect(isStoreUnavailable(sqlError(code)), code).to.equal(false);
    }
    expect(isStoreUnavailable(new ApiError(400, "bad"))).to.equal(false);
    expect(isStoreUnavailable(new TypeError("x is undefined"))).to.equal(false);
    expect(isStoreUnavailable(undefined)).to.equal(false);
    expect(isStoreUnavailable("Connection terminated")).to.equal(false);
  });

  it("looks into wrapped causes and aggregated errors", () => {
    expect(isStoreUnavailable(new Error("write failed", { cause: sqlError("57P01") }))).to.equal(true);
    const refused = Object.assign(new Error("connect ECONNREFUSED ::1:5432"), { code: "ECONNREFUSED" });
    expect(isStoreUnavailable(new AggregateError([refused, refused]))).to.equal(true);
    expect(isStoreUnavailable(new AggregateError([new Error("a"), sqlError("23505")]))).to.equal(false);
    // Deeply nested causes stop somewhere rather than recursing without end.
    let nested: Error = sqlError("57P01");
    for (let i = 0; i < 10; i++) nested = new Error("wrapped", { cause: nested });
    expect(isStoreUnavailable(nested)).to.equal(false);
  });

  it("backs off exponentially with jitter, capped", () => {
    const mid = () => 0.5; // no jitter
    expect([0, 1, 2, 3, 4, 5, 6].map((a) => retryDelay(a, 100, 5000, mid))).to.deep.equal([100, 200, 400, 800, 1600, 3200, 5000]);
    expect(retryDelay(1000, 100, 5000, mid)).to.equal(5000);
    expect(retryDelay(0, 100, 5000, () => 0)).to.equal(80);
    expect(retryDelay(2, 100, 5000, () => 0.999)).to.be.within(400, 480);
    expect(retryDelay(10, 100, 5000, () => 0.999)).to.equal(5000);
  });
});

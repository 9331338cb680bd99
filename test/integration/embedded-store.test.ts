import { expect } from "chai";
import pino from "pino";
import { openDatabase, type Database } from "../../packages/control-plane/src/store/database";

/*
 * The embedded store (PGlite through knex-pglite) behaves as a Postgres server does for what the
 * repositories rely on; these run on PGlite whatever TEST_DATABASE_URL says.
 */
describe("embedded store (PGlite)", () => {
  let db: Database;
  before(async function () {
    this.timeout(120_000); // PGlite starts in seconds, more on a loaded machine
    db = await openDatabase({ dataDir: "memory://", logger: pino({ level: "silent" }) });
    await db.knex.raw("CREATE TABLE t (a int, n int NOT NULL DEFAULT 0)");
    await db.knex("t").insert([{ a: 1 }, { a: 2 }, { a: 2 }]);
  });
  after(async () => {
    await db?.close();
  });

  it("answers the number of rows a delete removed (0 when none), as pg does", async () => {
    expect(await db.knex("t").where({ a: 9 }).delete()).to.equal(0);
    expect(await db.knex("t").where({ a: 1 }).del()).to.equal(1);
    expect(await db.knex.transaction((tx) => tx("t").where({ a: 7 }).delete())).to.equal(0);
  });

  it("answers the number of rows an update or increment changed", async () => {
    expect(await db.knex("t").where({ a: 2 }).update({ n: 5 })).to.equal(2);
    expect(await db.knex("t").where({ a: 2 }).increment("n", 1)).to.equal(2);
    expect(await db.knex("t").where({ a: 8 }).update({ n: 1 })).to.equal(0);
  });
});

// mocha's spec output, then one last line CI reads: "N passed, N failed".
const Mocha = require("mocha");
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const stats = runner.stats;
      // Written after the spec reporter's epilogue so that it is the final line.
      setImmediate(() => {
        process.stdout.write(`${stats.passes} passed, ${stats.failures} failed${stats.pending ? `, ${stats.pending} skipped` : ""}\n`);
      });
    });
  }
}
module.exports = SummaryReporter;

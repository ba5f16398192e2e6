/**
 * The suite's test environment: Node's, plus one duty after each test file, once its own afterAll
 * hooks have run: kill the processes it started and left running (test/support/processes.ts lists
 * them in the file's global). A test that jest timed out never reaches its own cleanup, and its
 * worker would otherwise outlive the run (reparented to init), polling its task queue and loading
 * the machine for every later test.
 */
const { TestEnvironment } = require('jest-environment-node');

class RunbooksEnvironment extends TestEnvironment {
  async teardown() {
    const live = this.global.__runbooksLiveProcesses;
    const left = live ? [...live].filter((c) => c.exitCode === null && c.signalCode === null) : [];
    for (const c of left) c.kill('SIGKILL');
    if (left.length) console.warn(`killed ${left.length} process(es) this test file left running: ${left.map((c) => c.spawnargs.slice(-1)[0]).join(', ')}`);
    await super.teardown();
  }
}

module.exports = RunbooksEnvironment;

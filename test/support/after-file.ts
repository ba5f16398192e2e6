/**
 * After each test file: kill the processes it started and left running. A test that jest timed out
 * never reaches its own cleanup, and its worker would otherwise outlive the run (reparented to init),
 * polling the task queue and loading the machine for every later test.
 */
import { killLeftovers } from './processes';

afterAll(() => {
  const killed = killLeftovers();
  if (killed) console.warn(`killed ${killed} process(es) this test file left running`);
});

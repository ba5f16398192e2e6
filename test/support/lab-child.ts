/**
 * One lab network with one host, in a process of its own (test/lab-concurrent.test.ts): starts it
 * when told "go" on stdin, prints what it got as one JSON line, and stops it when stdin ends.
 *
 * LAB_CHILD_PID makes the process report that pid number, as a process in another container (pid
 * namespace) may: a pid is not a machine-wide name, and labs must not be named or placed by it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { startNetwork } from '../lab/netns';

if (process.env.LAB_CHILD_PID) Object.defineProperty(process, 'pid', { value: Number(process.env.LAB_CHILD_PID) });

const lines = createInterface({ input: process.stdin });
lines.once('line', async () => {
  const dir = mkdtempSync('/tmp/rblab-child-');
  writeFileSync(path.join(dir, 'authorized_keys'), '');
  try {
    const net = startNetwork(dir, path.join(dir, 'authorized_keys'));
    const host = net.addHost({ name: 'a', octet: 2, user: 'nobody', env: {} });
    await net.waitForSsh();
    process.stdout.write(`${JSON.stringify({ id: net.id, subnet: net.subnet, ns: host.ns, address: host.address, hostKey: host.hostKey })}\n`);
    lines.once('close', () => { net.stop(); rmSync(dir, { recursive: true, force: true }); process.exit(0); });
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: String(err instanceof Error ? err.message : err) })}\n`);
    process.exit(1);
  }
});

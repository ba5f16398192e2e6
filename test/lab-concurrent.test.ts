/**
 * Two labs started at the same moment by two processes on one machine get different subnets and
 * names, and both work (issue 24, finding 8: two benchmarks broke each other's lab). The two
 * processes report the same pid number, as processes in two containers can: nothing may be named
 * or placed by pid.
 */
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './support/processes';

interface Started { id: string; subnet: string; ns: string; address: string; hostKey: string; error?: string }

function startChild() {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'test/support/lab-child.ts')], {
    cwd: repoRoot, env: { ...process.env, LAB_CHILD_PID: '4242' }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d) => { out += d; });
  const started = new Promise<Started>((resolve, reject) => {
    child.stdout!.on('data', (d) => { out += d; const line = out.split('\n').find((l) => l.startsWith('{')); if (line) resolve(JSON.parse(line)); });
    child.once('exit', (code) => reject(new Error(`the lab process exited (${code}) before reporting: ${out}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  return { child, started, stop: async () => { child.stdin!.end(); await exited; } };
}

/** The SHA256 fingerprint of the ed25519 key the sshd at `address` offers, as the worker would see it. */
const offeredKey = (address: string) => execFileSync('sh', ['-c', `ssh-keyscan -T 10 -t ed25519 ${address} 2>/dev/null | ssh-keygen -l -E sha256 -f -`], { encoding: 'utf8' }).split(' ')[1];

test('two labs started at once from two processes: different subnets and names, each host its own', async () => {
  const children = [startChild(), startChild()];
  try {
    for (const c of children) c.child.stdin!.write('go\n');
    const [one, two] = await Promise.all(children.map((c) => c.started));
    expect(one.error ?? two.error).toBeUndefined();
    expect(one.subnet).not.toBe(two.subnet);
    expect(one.id).not.toBe(two.id);
    expect(one.ns).not.toBe(two.ns);
    // Both work: each address answers with its own lab's host key.
    expect(offeredKey(one.address)).toBe(one.hostKey);
    expect(offeredKey(two.address)).toBe(two.hostKey);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}, 120_000);

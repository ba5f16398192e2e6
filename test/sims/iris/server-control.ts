/** Starting and stopping an instance's mirror_status.cxw server (status-server.ts). */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

/** Starts the health-check server and returns once it listens. */
export function startStatusServer(home: string): Promise<void> {
  // Its errors go to run/status.log: a server holding our stderr would keep callers (ssh, execFile) waiting.
  mkdirSync(path.join(home, 'run'), { recursive: true });
  const log = openSync(path.join(home, 'run', 'status.log'), 'a');
  // Run as we are run: status-server.ts under tsx, or status-server.js from the bundle bin/iris builds.
  const server = path.join(__dirname, `status-server${path.extname(__filename)}`);
  const child = spawn(process.execPath, [...process.execArgv, server, home], { detached: true, stdio: ['ignore', 'pipe', log] });
  closeSync(log);
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      if (buf.includes('listening')) { child.stdout!.destroy(); child.unref(); resolve(); }
    });
    child.on('exit', (code) => reject(new Error(`the mirror_status.cxw server exited with ${code}; see ${home}/run/status.log`)));
  });
}

/** Stops the health-check server and waits until its process is gone. */
export function stopStatusServer(home: string): void {
  const pidFile = path.join(home, 'run', 'status.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  // Only our server: a server that ended by itself leaves its pid file, and the pid may be another process's by now.
  if (!isOurServer(pid, home)) { rmSync(pidFile, { force: true }); return; }
  try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  while (alive(pid)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  rmSync(pidFile, { force: true });
}

function isOurServer(pid: number, home: string): boolean {
  try { const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); return argv.some((a) => a.includes('status-server')) && argv.includes(home); } catch { return false; }
}

/** A killed process is gone once it is reaped or a zombie (its parent, `iris start`, has exited). */
function alive(pid: number): boolean {
  try { process.kill(pid, 0); } catch { return false; }
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

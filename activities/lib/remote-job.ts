/**
 * Long commands (a base backup) run detached on the host, so a worker that dies does not kill
 * them: a retry of the same activity re-attaches to the running job instead of starting another.
 * Each job has a directory under ~/.runbooks-jobs/<jobId> holding its pid, exit code and log.
 */
import { Context } from '@temporalio/activity';
import { cmd, shq } from './shell';
import type { SshSession } from './ssh';

export type JobState = { state: 'none' } | { state: 'running' } | { state: 'exited'; code: number; log: string } | { state: 'lost'; log: string };

const jobDir = (jobId: string) => `"$HOME"/.runbooks-jobs/${shq(jobId)}`;

export async function jobState(s: SshSession, jobId: string): Promise<JobState> {
  const d = jobDir(jobId);
  const out = await s.run(`if [ ! -d ${d} ]; then echo none; elif [ -f ${d}/exit ]; then echo "exited $(cat ${d}/exit)"; ` +
    `elif kill -0 "$(cat ${d}/pid 2>/dev/null)" 2>/dev/null; then echo running; else echo lost; fi; echo ---; tail -c 4000 ${d}/log 2>/dev/null || true`, { what: 'job status' });
  const [head, log = ''] = out.split('\n---\n');
  const [state, code] = head.trim().split(' ');
  if (state === 'none' || state === 'running') return { state };
  if (state === 'exited') return { state, code: Number(code), log };
  return { state: 'lost', log };
}

/** Starts the job (unless it exists) and waits for it, heartbeating. Returns its exit code and log tail. */
export async function runDetached(s: SshSession, jobId: string, command: string, pollMs = 1000): Promise<{ code: number; log: string; attached: boolean }> {
  const d = jobDir(jobId);
  let state = await jobState(s, jobId);
  const attached = state.state === 'running' || state.state === 'exited';
  if (state.state === 'none') {
    await s.run(`mkdir -p ${d} && cd ${d} && ${cmd('printf', '%s\n', command)} > command && ` +
      `{ setsid nohup sh -c ${shq(`${command}; echo $? > exit.tmp; mv exit.tmp exit`)} > log 2>&1 < /dev/null & echo $! > pid; }`, { what: 'starting a job' });
  }
  for (;;) {
    state = await jobState(s, jobId);
    if (state.state === 'exited') return { code: state.code, log: state.log, attached };
    if (state.state === 'lost') return { code: -1, log: `${state.log}\n(the job's process is gone without an exit code)`, attached };
    Context.current().heartbeat({ jobId });
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export async function forgetJob(s: SshSession, jobId: string): Promise<void> {
  await s.run(`rm -rf ${jobDir(jobId)}`, { what: 'removing a job directory' });
}

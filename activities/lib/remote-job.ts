/**
 * Long commands (a base backup, pg_rewind) run detached on the host, so a worker that dies does
 * not kill them: a retry of the same activity re-attaches to the running job instead of starting
 * another. Each job has a directory under ~/.runbooks-jobs/<jobId> holding its pid (the leader of
 * its own session), exit code and log.
 *
 * Cancellation and timeouts reach the host: when the activity is cancelled (or its attempt times
 * out while the worker lives), the job's whole process group is killed and waited for before the
 * activity gives up, so a compensation never races a job that is still writing.
 */
import { Context } from '@temporalio/activity';
import { cmd, shq } from './shell';
import type { SshSession } from './ssh';

export type JobState =
  | { state: 'none' } | { state: 'running' } | { state: 'stopping' }
  | { state: 'exited'; code: number; log: string } | { state: 'lost'; log: string };

const jobDir = (jobId: string) => `"$HOME"/.runbooks-jobs/${shq(jobId)}`;

export async function jobState(s: SshSession, jobId: string): Promise<JobState> {
  const d = jobDir(jobId);
  const out = await s.run(`if [ ! -d ${d} ]; then echo none; elif [ -f ${d}/exit ]; then echo "exited $(cat ${d}/exit)"; ` +
    `elif kill -0 -- "-$(cat ${d}/pid 2>/dev/null)" 2>/dev/null; then if [ -f ${d}/killing ]; then echo stopping; else echo running; fi; ` +
    `else echo lost; fi; echo ---; tail -c 4000 ${d}/log 2>/dev/null || true`, { what: 'job status' });
  const [head, log = ''] = out.split('\n---\n');
  const [state, code] = head.trim().split(' ');
  if (state === 'none' || state === 'running' || state === 'stopping') return { state };
  if (state === 'exited') return { state, code: Number(code), log };
  return { state: 'lost', log };
}

export interface DetachedOptions {
  pollMs?: number;
  /** Also run on cancellation, after the process group is gone (e.g. `docker rm -f` of the job's container). */
  onKill?: string;
}

/**
 * Starts the job unless it exists: a job that runs (or ran) is adopted, never started twice.
 * `attached` says it was already there.
 */
export async function startJob(s: SshSession, jobId: string, command: string): Promise<{ attached: boolean; state: JobState }> {
  const d = jobDir(jobId);
  const state = await jobState(s, jobId);
  if (state.state !== 'none') return { attached: state.state === 'running' || state.state === 'exited', state };
  await s.run(`mkdir -p ${d} && cd ${d} && ${cmd('printf', '%s\n', command)} > command && ` +
    `{ setsid nohup sh -c ${shq(`${command}; echo $? > exit.tmp; mv exit.tmp exit`)} > log 2>&1 < /dev/null & echo $! > pid; }`, { what: 'starting a job' });
  return { attached: false, state: { state: 'running' } };
}

/** Starts the job (unless it exists) and waits for it, heartbeating. Returns its exit code and log tail. */
export async function runDetached(s: SshSession, jobId: string, command: string, opts: DetachedOptions = {}): Promise<{ code: number; log: string; attached: boolean }> {
  const context = Context.current();
  const { attached } = await startJob(s, jobId, command);
  let state: JobState;
  for (;;) {
    state = await jobState(s, jobId);
    if (state.state === 'exited') return { code: state.code, log: state.log, attached };
    if (state.state === 'lost') return { code: -1, log: `${state.log}\n(the job's process is gone without an exit code)`, attached };
    context.heartbeat({ jobId });
    try {
      await context.sleep(opts.pollMs ?? 1000);
    } catch (err) {
      // Cancelled, or this attempt timed out: stop the remote work before giving up.
      await killJob(s, jobId, opts.onKill);
      throw err;
    }
  }
}

/** Kills the job's process group (TERM, then KILL after 10 s) and waits until every process of it is gone. */
export async function killJob(s: SshSession, jobId: string, onKill?: string): Promise<void> {
  const d = jobDir(jobId);
  await s.run(`[ -d ${d} ] || exit 0; [ -f ${d}/exit ] && exit 0; touch ${d}/killing; pid=$(cat ${d}/pid 2>/dev/null); [ -n "$pid" ] || exit 0; ` +
    `kill -TERM -- "-$pid" 2>/dev/null; i=0; while kill -0 -- "-$pid" 2>/dev/null; do i=$((i+1)); ` +
    `if [ "$i" -eq 100 ]; then kill -KILL -- "-$pid" 2>/dev/null; fi; [ "$i" -le 300 ] || exit 1; sleep 0.1; done; ` +
    `${onKill ? `{ ${onKill}; } >/dev/null 2>&1; ` : ''}echo 137 > ${d}/exit`, { what: `stopping the job ${jobId}`, timeoutMs: 60_000 });
}

export async function forgetJob(s: SshSession, jobId: string): Promise<void> {
  await s.run(`rm -rf ${jobDir(jobId)}`, { what: 'removing a job directory' });
}

/**
 * Starts a job that ended (or whose process is gone) again with its own command, in the same
 * directory: the previous log is kept as log.<n>. Returns how many times it has been restarted.
 */
export async function restartJob(s: SshSession, jobId: string): Promise<number> {
  const d = jobDir(jobId);
  const out = await s.run(`cd ${d} && n=$(( $(cat restarts 2>/dev/null || echo 0) + 1 )) && echo "$n" > restarts && mv -f log "log.$n" && rm -f exit pid killing && ` +
    `{ setsid nohup sh -c "$(cat command); "'echo $? > exit.tmp; mv exit.tmp exit' > log 2>&1 < /dev/null & echo $! > pid; } && echo "$n"`, { what: `restarting the job ${jobId}` });
  return Number(out.trim());
}

/** How many times the job was restarted. */
export async function jobRestarts(s: SshSession, jobId: string): Promise<number> {
  return Number((await s.run(`cat ${jobDir(jobId)}/restarts 2>/dev/null || echo 0`, { what: 'job restarts' })).trim()) || 0;
}

/** The job's log from byte `offset` (at most `max` bytes), and the offset after it. */
export async function readJobLog(s: SshSession, jobId: string, offset: number, max = 1_048_576): Promise<{ text: string; next: number; size: number }> {
  const d = jobDir(jobId);
  const out = await s.run(`f=${d}/log; [ -f "$f" ] || { echo 0; exit 0; }; size=$(wc -c < "$f"); echo "$size"; tail -c +${offset + 1} "$f" | head -c ${max}`, { what: 'reading the job log' });
  const nl = out.indexOf('\n');
  const size = Number(out.slice(0, nl < 0 ? undefined : nl));
  const text = nl < 0 ? '' : out.slice(nl + 1);
  // A log shorter than the offset is a new log (the job was restarted): read it from the start next time.
  if (size < offset) return { text: '', next: 0, size };
  return { text, next: offset + Buffer.byteLength(text), size };
}

/**
 * How the IRIS activities reach an instance: `iris session <instance> -U <namespace>` over SSH,
 * or `docker exec -i <container> iris session ...` for the container deployment.
 *
 * `iris session` exits 0 even when the code fails, and an error ends only the line it is on (the
 * next line still runs). So every script is checked three ways: each line counts itself at its
 * end (a line that failed half-way, or did not parse, is not counted); a failed %Status prints its
 * text and terminates the process with status 1; and the one result line, behind a sentinel with a
 * nonce, is a JSON object built by IRIS's %DynamicObject. Anything else is a failure carrying what
 * the session printed.
 *
 * The code goes to the session on the channel's stdin, as a quoted here-document would: nothing in
 * it is expanded by a shell, and a secret in it never appears in a command line (`ps`).
 */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { whileHeartbeating } from '../lib/heartbeat';
import { cmd } from '../lib/shell';
import type { SshSession, SshTarget } from '../lib/ssh';
import { sshTargetOf, withSsh } from '../lib/ssh-pool';
import type { IrisNode } from '../../contracts/iris/schema';

export const sshTarget = (node: IrisNode): SshTarget => sshTargetOf(node);

/** Runs `fn` with the node's pooled SSH connection, heartbeating meanwhile. */
export function onNode<T>(node: IrisNode, fn: (s: SshSession) => Promise<T>): Promise<T> {
  return whileHeartbeating(() => withSsh(sshTarget(node), fn));
}

/** A command run where the instance's files are: on the host, or inside its container. */
export function onInstance(node: IrisNode, command: string): string {
  if (!node.container) return command;
  return `${node.container.sudo ? 'sudo -n ' : ''}${cmd('docker', 'exec', '-i', node.container.name, 'sh', '-c', command)}`;
}

/** An ObjectScript string literal. Values come from validated input; a control character could end a line of the script. */
export function osString(value: string): string {
  // eslint-disable-next-line no-control-regex
  // The value is not repeated in the message: it may be a password.
  if (/[\u0000-\u001f\u007f]/.test(value)) throw ApplicationFailure.nonRetryable('A value sent to IRIS contains a control character (a line break or the like): fix the input or the secret', 'BadValue');
  return `"${value.replace(/"/g, '""')}"`;
}

/** A line that fails the script with a %Status's text unless `sc` is OK. */
export const checkStatus = (sc: string, what: string) =>
  `set sc=${sc} if 'sc { do o.%Set("error",${osString(`${what}: `)}_$SYSTEM.Status.GetErrorText(sc)) write !,RBSENT,o.%ToJSON(),! do $SYSTEM.Process.Terminate(,1) }`;

/** A line that fails the script with `message` when `cond` holds. */
export const failIf = (cond: string, message: string) =>
  `if ${cond} { do o.%Set("error",${message}) write !,RBSENT,o.%ToJSON(),! do $SYSTEM.Process.Terminate(,1) }`;

export class IrisScriptError extends Error {}

export interface ScriptOptions {
  /** Text to hide from anything the session printed before it reaches an error message (a password in the script). */
  redact?: string[];
  timeoutMs?: number;
}

/**
 * Runs ObjectScript lines in a namespace and returns the JSON object the lines filled (`o`).
 * Throws IrisScriptError with the failed status or the session's own error output.
 */
export async function runScript(node: IrisNode, namespace: string, lines: string[], opts: ScriptOptions = {}): Promise<Record<string, unknown>> {
  const sentinel = `RB-RESULT-${randomBytes(6).toString('hex')}`;
  const script = [
    `set RBSENT=${osString(`${sentinel} `)},rbn=0,o=##class(%DynamicObject).%New()`,
    ...lines.map((l) => `${l} set rbn=rbn+1`),
    failIf(`rbn'=${lines.length}`, `"line "_(rbn+1)_" of the script did not complete"`),
    'write !,RBSENT,o.%ToJSON(),!',
    'halt',
  ].join('\n');
  const session = `${cmd('iris', 'session', node.instance, '-U', namespace)}`;
  const r = await onNode(node, (s) => s.exec(onInstance(node, session), { stdin: `${script}\n`, timeoutMs: opts.timeoutMs ?? 120_000 }));
  const hide = (text: string) => (opts.redact ?? []).filter(Boolean).reduce((t, secret) => t.split(secret).join('<secret>'), text);
  const found = r.stdout.split('\n').map((l) => l.indexOf(sentinel) >= 0 ? l.slice(l.indexOf(sentinel) + sentinel.length + 1) : undefined).filter((l) => l !== undefined);
  let result: Record<string, unknown> | undefined;
  try { result = found.length === 1 ? JSON.parse(found[0]!) : undefined; } catch { result = undefined; }
  const printed = hide(`${r.stdout.split(sentinel).join('RB-RESULT')}${r.stderr}`).replace(/\n?Node: [^\n]*\n/, '').trim().slice(-2000);
  if (result && typeof result.error === 'string') throw new IrisScriptError(`${hide(result.error)}${printed.includes('<') ? `\n${printed}` : ''}`);
  if (r.code !== 0 || !result) {
    throw new IrisScriptError(`iris session on ${node.name} (${namespace}) ${r.code !== 0 ? `exited ${r.code}` : 'gave no result'}: ${printed || '(no output)'}`);
  }
  return result;
}

/**
 * The simulated `iris` command (see README.md):
 *   iris list [instance]
 *   iris start <instance> [quietly]          starts the instance and its mirror_status.cxw server
 *   iris stop <instance> quietly             graceful stop; a primary fails over to its backup
 *   iris restart <instance> [quietly]
 *   iris session <instance> [-U <namespace>] ObjectScript from stdin (also: iris terminal)
 * State lives under $IRIS_SIM_HOME (default /var/lib/iris-sim).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { settle, startInstance, stopInstance, transact } from './instance';
import { EndSession, Interpreter } from './interpreter';
import { startStatusServer, stopStatusServer } from './server-control';
import { Session } from './session';
import { loadState, simHome, type InstanceState } from './state';

const home = simHome();

function fail(msg: string, code = 1): never {
  process.stderr.write(`${msg}\n`);
  process.exit(code);
}

function instanceNamed(name: string | undefined): InstanceState {
  if (!existsSync(path.join(home, 'instance.json'))) fail(`iris: no instance is installed (no ${home}/instance.json)`);
  const s = loadState(home);
  if (!name || name.toUpperCase() !== s.instance.toUpperCase()) fail(`iris: instance '${name ?? ''}' not found`);
  return s;
}

function list(name?: string): void {
  if (name) instanceNamed(name);
  const s = existsSync(path.join(home, 'instance.json')) ? loadState(home) : fail('iris: no instance is installed');
  const t = s.running ? transact(home, (tx) => { settle(tx); return tx.s; }) : s;
  const lines = [
    `Configuration '${t.instance}'   (default)`,
    `\tdirectory:    ${path.dirname(t.mgrDir)}`,
    '\tversionid:    2024.1.0.267.2 (simulator)',
    `\tdatadir:      ${path.dirname(t.mgrDir)}`,
    `\tconf file:    iris.cpf  (SuperServer port = 1972, WebServer = ${webPort(t)})`,
    `\tstatus:       ${t.running ? 'running, since' : 'down, last used'} ${new Date(t.since).toString()}`,
    ...(t.running && t.mirror ? [`\tmirroring: Member Type = Failover; Status = ${t.mirror.role}`] : []),
    `\tstate:        ${t.running ? 'ok' : 'down'}`,
    '\tproduct:      InterSystems HealthShare Health Connect',
  ];
  process.stdout.write(`\n${lines.join('\n')}\n`);
}

/** The health-check port: the configured one, or the one the server chose when configured as 0. */
function webPort(s: InstanceState): number {
  const f = path.join(home, 'run', 'status.port');
  return s.statusPort || (existsSync(f) ? Number(readFileSync(f, 'utf8')) : 0);
}

async function start(name: string): Promise<void> {
  const s = instanceNamed(name);
  if (s.running) { process.stdout.write(`Instance '${s.instance}' is already running.\n`); return; }
  transact(home, startInstance);
  await startStatusServer(home);
  process.stdout.write(`Starting ${s.instance}\nUsing 'iris.cpf' configuration file\nStarting Control Process\n${s.instance} started.\n`);
}

function stop(name: string, args: string[]): void {
  const s = instanceNamed(name);
  if (!args.includes('quietly')) fail('iris stop: the simulator supports only the non-interactive form: iris stop <instance> quietly');
  if (!s.running) { process.stdout.write(`Instance '${s.instance}' is not running.\n`); return; }
  transact(home, (t) => stopInstance(t, { failover: true }));
  stopStatusServer(home);
  process.stdout.write(`Stopping ${s.instance}\n${s.instance} stopped.\n`);
}

function session(name: string, args: string[]): void {
  const s = instanceNamed(name);
  const u = args.indexOf('-U');
  const ns = (u >= 0 ? args[u + 1] : undefined) ?? 'USER';
  if (args.some((a, i) => a !== '-U' && i !== u + 1)) fail(`iris session: unsupported arguments: ${args.join(' ')}`);
  if (!s.running) fail(`Startup of ${s.instance} is not complete or the instance is down: cannot connect`);
  if (!s.namespaces[ns.toUpperCase()]) fail(`<NAMESPACE> ${ns}`);
  let output = `\nNode: ${s.node}, Instance: ${s.instance}\n\n`;
  const sess = new Session(home, ns, (text) => { output += text; });
  sess.tx(() => undefined); // settle before the first line
  const interp = new Interpreter(sess);
  const input = readFileSync(0, 'utf8').split('\n');
  if (input[input.length - 1] === '') input.pop();
  let exitCode = 0;
  try {
    for (const line of input) {
      output += `${sess.namespace()}>`;
      interp.runLine(line.replace(/\r$/, ''));
    }
    output += `${sess.namespace()}>`;
  } catch (e) {
    if (!(e instanceof EndSession)) throw e;
    exitCode = e.exitCode;
  }
  process.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
  process.exitCode = exitCode;
}

async function main(argv: string[]): Promise<void> {
  const [cmd, name, ...rest] = argv;
  switch (cmd) {
    case 'list': case 'all': return list(name);
    case 'start': return start(name);
    case 'stop': return stop(name, rest);
    case 'restart': stop(name, ['quietly']); return start(name);
    case 'session': case 'terminal': return session(name, rest);
    default: fail(`iris: unknown or unsupported command '${argv.join(' ')}' (simulator: list, start, stop, restart, session, terminal)`);
  }
}

if (require.main === module) main(process.argv.slice(2)).catch((e) => fail(`iris: ${e instanceof Error ? e.stack : e}`, 2));

/**
 * HealthShare / Health Connect classes (HS.*, visible in HSLIB and the Foundation namespaces) and
 * Ens.Director (interoperability namespaces).
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { arity, array, num, str } from './args';
import type { ClassDef } from './classes';
import { ERR, NAMESPACE_REGISTRY, createDatabase, findDatabase, writeGlobal, type Tx } from './instance';
import { OK, statusError, truthy, type Value } from './values';

const MIRROR_TASK = 'HS.Util.Mirror.Task';
export const productionOf = (ns: string) => `${ns}PKG.FoundationProduction`;

/** Schedules the mirror monitor launch task (HS.Util.MirrorMonitorAgent) once per namespace. */
function scheduleMirrorTask(t: Tx, ns: string): Value {
  if (!t.isMember) return ERR.notMember();
  const namespace = ns.toUpperCase();
  if (!t.s.namespaces[namespace]) return statusError(5001, `Namespace ${ns} does not exist`);
  if (!t.s.tasks.some((k) => k.taskClass === MIRROR_TASK && k.namespace === namespace)) {
    t.s.tasks.push({ id: Math.max(1000, ...t.s.tasks.map((k) => k.id)) + 1, name: `Mirror Monitor Launch (${namespace})`, taskClass: MIRROR_TASK, namespace, schedule: 'every 1 minute' });
  }
  return OK;
}

/**
 * Foundation namespace install: a database and namespace named ns (interoperability enabled, with
 * production <ns>PKG.FoundationProduction), recorded in HSSYS. With vars("Mirror")=1 the database
 * is created mirrored, which needs this member to be the primary and HSSYS to be mirrored. Uses
 * HS_Services, which must be enabled with a password. An existing namespace is left as it is.
 */
function installFoundation(t: Tx, ns: string, vars: Record<string, Value>): Value {
  const name = ns.toUpperCase();
  if (!/^[A-Z][A-Z0-9]*$/.test(name)) return statusError(5001, `Invalid namespace name ${ns}`);
  if (t.s.namespaces[name]) return OK;
  const mirrored = truthy(vars.Mirror ?? 0);
  const hssys = findDatabase(t.s, 'HSSYS')!;
  if (mirrored) {
    if (!t.isMember) return ERR.notMember();
    if (!t.isPrimary) return ERR.notPrimary('Creating a mirrored namespace');
    if (!hssys.mirror || !hssys.mounted) return statusError(5001, 'HSSYS must be mirrored before a mirrored namespace is created');
  }
  const hs = t.s.users.HS_Services;
  if (!hs?.enabled || !hs.passwordHash) return statusError(5001, 'HS_Services is disabled or has no password: the Foundation install cannot create its credentials');
  if (!hssys.mounted) return ERR.notMounted(hssys.directory);
  createDatabase(t, name, path.join(t.s.mgrDir, name.toLowerCase()), mirrored);
  t.s.namespaces[name] = { database: name, interoperability: true };
  t.s.productions[name] = { autoStart: '', running: false };
  writeGlobal(t, hssys, JSON.stringify([...NAMESPACE_REGISTRY, name]), name);
  return OK;
}

export const HS_CLASSES: Record<string, ClassDef> = {
  'HS.Util.Mirror.Task': {
    where: 'interop',
    classMethods: { Schedule: (s, a) => { arity(a, 1); return s.tx((t) => scheduleMirrorTask(t, str(a, 0))); } },
  },
  'HS.HC.SystemConfig.API': {
    where: 'interop',
    classMethods: {
      ScheduleTask: (s, a) => {
        arity(a, 3);
        if (str(a, 1) !== MIRROR_TASK) return statusError(5351, `Class '${str(a, 1)}' does not exist`);
        return s.tx((t) => scheduleMirrorTask(t, str(a, 2) || str(a, 0)));
      },
    },
  },
  'HS.Util.Installer.Foundation': {
    where: 'interop',
    classMethods: { Install: (s, a) => { arity(a, 2); const vars = array(a, 1); return s.tx((t) => installFoundation(t, str(a, 0), vars)); } },
  },
  'HS.Director': {
    where: 'interop',
    classMethods: {
      StartAll: (s, a) => {
        arity(a, 0);
        return s.tx((t) => {
          if (t.s.mirror && !t.isPrimary) return ERR.notPrimary('Starting productions');
          for (const p of Object.values(t.s.productions)) if (p.autoStart) p.running = true;
          return OK;
        });
      },
    },
  },
  'Ens.Config.Credentials': {
    where: 'interop',
    classMethods: {
      // SetCredential(id, username, password, overwrite=0): the credential productions log in with,
      // kept in the CURRENT namespace. An existing one is replaced only with overwrite=1.
      SetCredential: (s, a) => {
        arity(a, 4);
        const key = `${s.namespace()}/${str(a, 0)}`;
        if (!str(a, 0)) return statusError(5001, 'Credentials ID is required');
        return s.tx((t) => {
          t.s.credentials ??= {};
          if (t.s.credentials[key] && !num(a, 3)) return statusError(5805, `ID key not unique for extent 'Ens.Config.Credentials': ${str(a, 0)}`);
          const salt = randomBytes(8).toString('hex');
          t.s.credentials[key] = { username: str(a, 1), passwordHash: `${salt}$${createHash('sha256').update(salt + str(a, 2)).digest('hex')}` };
          return OK;
        });
      },
    },
  },
  'Ens.Director': {
    where: 'interop',
    classMethods: {
      // Sets the auto-start production of the CURRENT namespace, as IRIS does: switch to the
      // Foundation namespace first; its production class does not exist in HSLIB.
      SetAutoStart: (s, a) => {
        arity(a, 2);
        const ns = s.namespace();
        const prod = str(a, 0);
        return s.tx((t) => {
          if (!t.s.productions[ns] || prod !== productionOf(ns)) return statusError(5351, `Class '${prod}' does not exist`);
          t.s.productions[ns].autoStart = truthy(a[1]?.k === 'value' ? a[1].v : 1) ? prod : '';
          return OK;
        });
      },
    },
  },
};


/** Runbook inputs that point at the lab's hosts, as an operator would write them for real servers. */
import type { z } from 'zod';
import type { pgHost } from '../../contracts/postgres/schema';
import { ADMIN_PASSWORD_SECRET, IN_HOST, REPLICATION_SECRET, SSH_KEY_SECRET, WEBAPP_PORT, type Lab, type LabHost } from './hosts';

export type Profile = 'openelis-docker' | 'pg_ctl';

export function hostInput(h: LabHost, kind: Profile): z.input<typeof pgHost> {
  const common = {
    name: `lab-${h.name}`, address: h.address,
    ssh: { port: 22, user: 'postgres', hostKey: h.hostKey, privateKey: { secret: SSH_KEY_SECRET } },
  };
  if (kind === 'pg_ctl') {
    return { ...common, postgres: { socketDir: IN_HOST.socketDir }, profile: { kind, dataDir: IN_HOST.pgData, logFile: IN_HOST.logFile } };
  }
  // The OpenELIS installer's paths and container form (/backups in the container, tools in the database
  // container's image as its postgres user), but the lab's database container has its data directory at
  // the host's path (see hosts.ts). The webapp stand-in answers on plain HTTP. The lab's SSH user needs no sudo.
  return {
    ...common, postgres: { password: { secret: ADMIN_PASSWORD_SECRET } },
    profile: { kind, containerDataDir: IN_HOST.pgData, sudo: false, healthUrl: `http://127.0.0.1:${WEBAPP_PORT}/api/OpenELIS-Global/health`, healthWithinSeconds: 30 },
  };
}

export function setupInput(lab: Lab, kind: Profile, from: LabHost = lab.a, to: LabHost = lab.b, extra: Record<string, unknown> = {}) {
  return {
    primary: hostInput(from, kind), standby: hostInput(to, kind),
    replication: { user: 'replicator', password: { secret: REPLICATION_SECRET }, slot: `standby_${to.name}` },
    replaceStandbyData: true,
    ...(kind === 'openelis-docker' ? { appDir: { path: IN_HOST.appDir } } : {}),
    verifyWithinSeconds: 30,
    requestedBy: 'alice',
    ...extra,
  };
}

/** What a mirror member is now: its role, a database's mount and mirror flags, HS_Services, the network host name. */
import type { IrisNode } from '../../contracts/iris/schema';
import { osString, runScript } from './session';

export interface DatabaseView {
  name: string;
  /** The directory, with its trailing slash; '' when the instance has no such database. */
  dir: string;
  mounted: boolean;
  readOnly: boolean;
  mirrored: boolean;
  mirrorSet: string;
  activationRequired: boolean;
  catchupPending: boolean;
  downloading: boolean;
  sfn: number;
}

export interface MemberState {
  node: string;
  member: boolean;
  mirrorName: string;
  mirrorStarted: boolean;
  /** This member's role and state as the mirror reports them: Primary / Backup, Active / ... */
  role: string;
  memberStatus: string;
  peerRole: string;
  peerStatus: string;
  databases: Record<string, DatabaseView>;
  /** ^%SYS("HealthShare","NetworkHostName") in HSSYS ('' when HSSYS is not mounted). */
  networkHostName: string;
  hsServices: { enabled: boolean; changePassword: boolean; fingerprint: string };
  /** On a backup: the primary's mirrored databases with no mounted copy here, by their bare names. */
  missing: string[];
}

/** A database that is mirrored in `mirror`, active and caught up (what a healthy backup has). */
export const healthy = (db: DatabaseView | undefined, mirror: string) =>
  !!db && db.mounted && db.mirrored && db.mirrorSet.toUpperCase() === mirror.toUpperCase() && !db.activationRequired && !db.catchupPending && !db.downloading;

const flag = (v: unknown) => v === 1 || v === '1' || v === true;

/**
 * A mirrored database's name as the SYS.Mirror queries give it, bare and upper-case: a row may name
 * it `:mirror:<MIRROR>:<DB>` (MissingMirroredDatabases does, on a live pair; MirroredDatabaseList
 * is reported both ways) or just `<DB>`. A row of another mirror set is not this mirror's (undefined).
 */
export function mirrorDatabaseName(raw: string, mirror: string): string | undefined {
  const m = /^:mirror:([^:]*):(.+)$/i.exec(raw.trim());
  if (!m) return raw.trim().toUpperCase() || undefined;
  return m[1].toUpperCase() === mirror.toUpperCase() ? m[2].toUpperCase() : undefined;
}

/** The names a query listed (comma-separated by the script), as mirrorDatabaseName reads them, once each. */
export const mirrorDatabaseNames = (list: unknown, mirror: string): string[] =>
  [...new Set(String(list ?? '').split(',').map((n) => mirrorDatabaseName(n, mirror)).filter((n): n is string => !!n))];

/** The lines that put database `name`'s state under keys `<key>.*`. */
function databaseLines(name: string, key: string): string[] {
  const set = (prop: string, expr: string) => `o.%Set(${osString(`${key}.${prop}`)},${expr})`;
  return [
    `set dir=$piece(##class(Config.Databases).DatabaseByName(${osString(name)}),"^",3) do ${set('dir', 'dir')}`,
    `if dir'="" { set db=##class(SYS.Database).%OpenId(dir) do ${[
      set('mounted', 'db.Mounted'), set('readOnly', 'db.ReadOnlyMounted'), set('mirrored', 'db.Mirrored'), set('mirrorSet', 'db.MirrorSetName'),
      set('actReq', 'db.MirrorActivationRequired'), set('catchup', 'db.MirrorDBCatchup'), set('download', 'db.MirrorDBDownload'), set('sfn', 'db.SFN'),
    ].join(',')} }`,
  ];
}

function databaseView(r: Record<string, unknown>, name: string, key: string): DatabaseView {
  const g = (p: string) => r[`${key}.${p}`];
  return {
    name, dir: String(g('dir') ?? ''), mounted: flag(g('mounted')), readOnly: flag(g('readOnly')), mirrored: flag(g('mirrored')),
    mirrorSet: String(g('mirrorSet') ?? ''), activationRequired: flag(g('actReq')), catchupPending: flag(g('catchup')),
    downloading: flag(g('download')), sfn: Number(g('sfn') ?? -1),
  };
}

/** One session that reads everything the runbooks decide on. `databases` are names (HSSYS is always read). */
export async function inspectMember(node: IrisNode, mirror: string, databases: string[] = []): Promise<MemberState> {
  const names = [...new Set(['HSSYS', ...databases.map((d) => d.toUpperCase())])];
  const r = await runScript(node, '%SYS', [
    'do o.%Set("member",$SYSTEM.Mirror.IsMember()),o.%Set("mirrorName",$SYSTEM.Mirror.MirrorName())',
    `do o.%Set("started",##class(SYS.Mirror).IsMirrorStarted(${osString(mirror)}))`,
    'if $SYSTEM.Mirror.IsMember() { do ##class(SYS.Mirror).GetFailoverMemberStatus(.this,.other) do o.%Set("role",$lg(this,3)),o.%Set("memberStatus",$lg(this,4)),o.%Set("peerRole",$lg(other,3)),o.%Set("peerStatus",$lg(other,4)) }',
    ...names.flatMap((n, i) => databaseLines(n, `db${i}`)),
    'set hs=##class(SYS.Database).%OpenId($piece(##class(Config.Databases).DatabaseByName("HSSYS"),"^",3))',
    'if hs.Mounted { do o.%Set("networkHostName",$get(^|"HSSYS"|%SYS("HealthShare","NetworkHostName"))) }',
    'kill p do ##class(Security.Users).Get("HS_Services",.p) do o.%Set("hsEnabled",$get(p("Enabled"))),o.%Set("hsChangePassword",$get(p("ChangePassword"))),o.%Set("hsFingerprint",$get(^Runbooks("HS_Services","fingerprint")))',
    `if $SYSTEM.Mirror.IsBackup() { set m="",rs=##class(%ResultSet).%New("SYS.Mirror:MissingMirroredDatabases") do rs.Execute(${osString(mirror)}) while rs.Next() { set m=m_rs.Get("Name")_"," } do o.%Set("missing",m) }`,
  ]);
  return {
    node: node.name, member: flag(r.member), mirrorName: String(r.mirrorName ?? ''), mirrorStarted: flag(r.started),
    role: String(r.role ?? ''), memberStatus: String(r.memberStatus ?? ''), peerRole: String(r.peerRole ?? ''), peerStatus: String(r.peerStatus ?? ''),
    databases: Object.fromEntries(names.map((n, i) => [n, databaseView(r, n, `db${i}`)])),
    networkHostName: String(r.networkHostName ?? ''),
    hsServices: { enabled: flag(r.hsEnabled), changePassword: flag(r.hsChangePassword), fingerprint: String(r.hsFingerprint ?? '') },
    missing: mirrorDatabaseNames(r.missing, mirror),
  };
}

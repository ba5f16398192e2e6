/**
 * The lab's `docker` stand-in runs what the openelis-docker profile sends in the container form
 * Docker gives it (issue 23, finding 10): the image's PostgreSQL, the -u user (uid 999, the official
 * image's postgres), ONLY the -v mounts; what it does not model it refuses with Docker's error.
 */
import { IN_HOST, LAB_IMAGE, type Lab, type LabHost } from './lab/hosts';
import { useLabs } from './lab/suite';

const suite = useLabs('pg-docker');
let lab: Lab;
let h: LabHost;

beforeAll(async () => {
  lab = await suite.newLab();
  h = lab.a;
}, 120_000);

const run = (args: string) => h.sh(`docker run --rm --network host ${args}`);
const asPostgres = `-u postgres -v ${IN_HOST.backupsDir}:/backups -v ${IN_HOST.pgData}:/var/lib/postgresql/data ${LAB_IMAGE}`;

test('-u postgres runs as uid 999, and the host files of the data directory belong to 999 in the container', () => {
  const r = run(`${asPostgres} sh -c 'id -u; id -un; stat -c %u /var/lib/postgresql/data'`);
  expect(r).toMatchObject({ code: 0 });
  expect(r.stdout.trim().split('\n')).toEqual(['999', 'postgres', '999']);
});

test('-v mounts are there, and host paths that are not mounted are not', () => {
  h.sh(`echo 'from the host' > ${IN_HOST.backupsDir}/probe.txt`);
  const r = run(`${asPostgres} sh -c 'cat /backups/probe.txt; test -e ${IN_HOST.appDir}/secrets && echo host-visible || echo host-hidden; test -f /var/lib/postgresql/data/PG_VERSION && echo data'`);
  expect(r.stdout.trim().split('\n')).toEqual(['from the host', 'host-hidden', 'data']);
  // What the container writes into a mount lands on the host, owned by the host's user behind 999.
  expect(run(`${asPostgres} sh -c 'echo written > /backups/from-container.txt'`).code).toBe(0);
  expect(h.sh(`cat ${IN_HOST.backupsDir}/from-container.txt; stat -c %U ${IN_HOST.backupsDir}/from-container.txt`).stdout.trim().split('\n')).toEqual(['written', 'postgres']);
  // :ro is read-only.
  const ro = run(`-u postgres -v ${IN_HOST.backupsDir}:/backups:ro ${LAB_IMAGE} sh -c 'echo x > /backups/ro.txt'`);
  expect(ro.code).not.toBe(0);
});

test("the image's PostgreSQL runs; an image the lab has not got is refused by name", () => {
  expect(run(`${asPostgres} pg_basebackup --version`).stdout).toMatch(/pg_basebackup \(PostgreSQL\) 15\./);
  const missing = run(`-u postgres postgres:14.4 pg_basebackup --version`);
  expect(missing.code).toBe(125);
  expect(missing.stderr).toMatch(/Unable to find image 'postgres:14.4' locally/);
  // The database container reports its image, which the profile's tools use by default.
  expect(h.sh(`docker inspect -f '{{.Config.Image}}' openelisglobal-database`).stdout.trim()).toBe(LAB_IMAGE);
});

test('a user the image has not got, root, a volume or flag not modelled: refused, nothing run', () => {
  expect(run(`-u tomcat ${LAB_IMAGE} touch /tmp/x`)).toMatchObject({ code: 126, stderr: expect.stringMatching(/unable to find user tomcat/) });
  expect(run(`${LAB_IMAGE} id`)).toMatchObject({ code: 125, stderr: expect.stringMatching(/default user \(root\) is not modelled/) });
  expect(run(`-u postgres -v named-volume:/data ${LAB_IMAGE} id`)).toMatchObject({ code: 125, stderr: expect.stringMatching(/invalid volume specification/) });
  expect(run(`-u postgres -v /no/such/dir:/data ${LAB_IMAGE} id`)).toMatchObject({ code: 125, stderr: expect.stringMatching(/bind source path does not exist/) });
  expect(h.sh(`docker run --rm --network bridge -u postgres ${LAB_IMAGE} id`)).toMatchObject({ code: 125, stderr: expect.stringMatching(/--network bridge is not modelled/) });
  expect(run(`--privileged -u postgres ${LAB_IMAGE} id`)).toMatchObject({ code: 125, stderr: expect.stringMatching(/unknown flag: --privileged/) });
});

test('the database container itself runs in the container form: as 999, /backups mounted', async () => {
  const [{ user }] = await h.sql<{ user: string }>('SELECT current_user AS user');
  expect(user).toBe('postgres');
  h.sh(`echo 'visible' > ${IN_HOST.backupsDir}/db-probe.txt`);
  // The server reads /backups through the database container's mount (as primary_conninfo's passfile does).
  const [{ content }] = await h.sql<{ content: string }>(`SELECT pg_read_file('/backups/db-probe.txt') AS content`);
  expect(content).toBe('visible\n');
  const pid = h.sh(`head -1 ${IN_HOST.pgData}/postmaster.pid`).stdout.trim();
  // The postmaster is uid 999 in its container, the lab's postgres user on the host.
  const hostUid = h.sh('id -u').stdout.trim();
  expect(h.sh(`cat /proc/${pid}/uid_map`).stdout.trim().split(/\s+/)).toEqual(['999', hostUid, '1']);
});

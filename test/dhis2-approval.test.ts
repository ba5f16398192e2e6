/**
 * Org-unit changes that need a human's approval, end to end: real Temporal, real PostgreSQL change
 * capture, DHIS2 simulators for the source and two targets, the real approval gateway over HTTP.
 * t1 needs approval for code and shortName; t2 needs none. The approver works where they already
 * work: the ticket in t1's messaging, the draft in t1's dataStore, the signed link.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { signApproval, signInbox, verifyApproval } from '../activities/lib/approval-token';
import { startGateway, type Gateway } from '../workers/approvals';
import { syncProgressQuery, type SyncProgress } from '../contracts/dhis2/messages';
import { syncWorkflowId } from '../contracts/dhis2/resources';
import type { Dhis2Sim } from './sims/dhis2';
import { eventually, newUid, sourceImport, startDhis2Lab, targetPeople, type Dhis2Lab } from './lab/dhis2';
import { startWorker, testClient, uniqueQueue, type Proc } from './support/processes';
import { readableHistory } from './support/runs';

const secret = 'dhis2-approval-test-secret-0123456789abcdef';
let lab: Dhis2Lab;
let client: Client;
let worker: Proc;
let gateway: Gateway;
const queue = uniqueQueue('dhis2a');
const t1Users: Record<string, string> = {};
const district = newUid('D');
const ou = (id: string, name: string, extra: object = {}) => ({ id, name, shortName: name.slice(0, 50), openingDate: '2020-01-01', parent: { id: district }, ...extra });
/** M5zQapPyTZI (admin) is in t1's feedback recipients group (the simulator's default: its first user). */
const t1Approval = { approvers: ['alice', 'bob'], quorum: 1, timeout: '1h', assignee: 'M5zQapPyTZI' };
/** Changes t1's approval settings (the worker re-reads the file; the next gate uses them). */
const setT1Approval = (approval: object) => lab.writeConfig((c) => { c.targets.find((t: { name: string }) => t.name === 't1').approval = approval; });
const workerEnv = () => ({ ...lab.workerEnv, APPROVAL_SECRET: secret, APPROVAL_BASE_URL: gateway.url });

beforeAll(async () => {
  lab = await startDhis2Lab([]);
  const t1 = await lab.addTarget('t1', { config: { fieldsRequireApproval: ['organisationunit.code', 'organisationunit.shortname'], approval: t1Approval } });
  // People with a login on t1 who are not superusers: two approvers, and someone else.
  for (const username of ['alice', 'bob', 'mallory']) t1Users[username] = await t1.addUser({ username, password: `pw-${username}` });
  await lab.addTarget('t2', { auth: 'token' });
  client = await testClient();
  gateway = await startGateway({ client, secret, port: 0 });
  worker = await startWorker(queue, workerEnv());
  await client.workflow.execute('orgUnitSyncSetup', { taskQueue: queue, workflowId: uniqueQueue('setup'), args: [lab.setupInput()] });
  await lab.startListener(queue);
  // The district exists everywhere before the tests: t1 approves its creation once.
  await sourceImport(lab, 'organisationUnit', [{ id: district, name: 'Kailahun', shortName: 'Kailahun', openingDate: '1990-01-01' }]);
  const ticket = await ticketFor(lab.targets.t1, district);
  await decide(linkIn(ticket, 'alice'), 'approve');
  await eventually('t1 has the district', () => lab.targets.t1.get('organisationUnit', district), (r) => Boolean(r));
}, 180_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await gateway?.close();
  await client?.connection.close();
  await lab?.stop();
});

interface Ticket { id: string; subject: string; status: string; assignee?: { id: string }; messageType?: string; users: Array<{ id: string }>; messages: Array<{ text: string }>;
  /** Each approver's latest link, from the private message sent to them alone (never from the ticket). */
  links?: Record<string, string> }

const usernameOf = (id: string) => [{ username: 'admin', id: 'M5zQapPyTZI' }, ...targetPeople].find((u) => u.id === id)?.username ?? id;
const linksInText = (text: string) => [...text.matchAll(/https?:\/\/\S+\/approve\?t=\S+/g)].map((m) => m[0]);

/** The approval ticket of a resource in a target's messaging, once it has `messages` messages at least, with the links sent privately for it. */
async function ticketFor(sim: Dhis2Sim, uid: string, messages = 1, nth = 0): Promise<Ticket> {
  const tickets = await eventually(`an approval ticket for ${uid}`, async () => (await sim.messages() as Ticket[])
    .filter((t) => t.subject.includes('Approval needed') && t.subject.includes(uid)), (ts) => (ts[nth]?.messages.length ?? 0) >= messages);
  // The links went out before the ticket (or its reply): each approver's private message, one recipient each.
  const links: Record<string, string> = {};
  for (const c of (await sim.messages() as Ticket[]).filter((t) => t.messageType === 'PRIVATE' && t.subject.includes('Your approval link') && t.subject.includes(uid))) {
    expect(c.users).toHaveLength(1);
    links[usernameOf(c.users![0].id)] = linksInText(c.messages[0].text)[0];
  }
  return { ...tickets[nth], links };
}
const latestTicket = async (sim: Dhis2Sim, uid: string): Promise<Ticket> =>
  (await sim.messages() as Ticket[]).filter((t) => t.subject.includes('Approval needed') && t.subject.includes(uid)).at(-1)!;

/** The signed link sent to `approver` for a ticket's change (the last one given, when the gate opened again). */
function linkIn(ticket: Ticket, approver: string): string {
  const text = ticket.messages.map((m) => m.text).join('\n');
  expect(linksInText(text)).toEqual([]);
  const found = ticket.links?.[approver];
  if (!found) throw new Error(`no private link for ${approver} with ticket ${ticket.subject} (sent to: ${Object.keys(ticket.links ?? {}).join(', ')})`);
  return found;
}

/** What `username` can read of a target's messaging through its API, as any DHIS2 user could. */
async function readableBy(sim: Dhis2Sim, username: string): Promise<Ticket[]> {
  const auth = { authorization: `Basic ${Buffer.from(`${username}:district`).toString('base64')}` };
  const res = await fetch(`${sim.baseUrl}/api/messageConversations?fields=id,subject,messages&paging=false`, { headers: auth });
  expect(res.status).toBe(200);
  return (await res.json() as { messageConversations: Ticket[] }).messageConversations;
}
const tokenOf = (link: string) => new URL(link).searchParams.get('t')!;
const show = (link: string) => fetch(link);
/** The version of the draft a page shows: what its form approves. */
const fingerprintIn = (html: string) => /name="fp" value="([0-9a-f]+)"/.exec(html)?.[1];
/** What an approver's browser does: open the link (the page shows the draft and carries its version), then press a button. */
async function decide(link: string, decision: 'approve' | 'reject', reason = ''): Promise<{ status: number; text: string }> {
  return press(link, decision, reason, fingerprintIn(await (await show(link)).text()));
}
/** Presses a button on a page opened earlier, which showed version `fp`. */
async function press(link: string, decision: 'approve' | 'reject', reason = '', fp?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: tokenOf(link), decision, reason, ...(fp ? { fp } : {}) }) });
  return { status: res.status, text: await res.text() };
}

const draftUrl = (sim: Dhis2Sim, uid: string) => `${sim.baseUrl}/api/dataStore/org-unit-sync/organisationUnit-${uid}`;
const admin = { authorization: `Basic ${Buffer.from('admin:district').toString('base64')}` };
const readDraft = async (sim: Dhis2Sim, uid: string) => {
  const res = await fetch(draftUrl(sim, uid), { headers: admin });
  return res.status === 200 ? res.json() as Promise<any> : undefined;
};
/** A reviewer edits the draft in the target's dataStore (the Data Store Manager app does this PUT). */
const editDraft = async (sim: Dhis2Sim, uid: string, edit: (d: any) => any) => {
  const draft = await readDraft(sim, uid);
  const res = await fetch(draftUrl(sim, uid), { method: 'PUT', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify(edit(draft)) });
  expect(res.status).toBe(200);
};
const syncOf = (target: string, uid: string) => client.workflow.getHandle(syncWorkflowId(target, 'organisationUnit', uid));
const progressOf = (target: string, uid: string): Promise<SyncProgress> => syncOf(target, uid).query(syncProgressQuery);
const waitingGate = async (target: string, uid: string) => {
  const p = await eventually(`${uid} waiting for approval on ${target}`, () => progressOf(target, uid), (x) => x.status === 'waiting_for_approval' && Boolean(x.awaiting?.ticket));
  return p.approvals.find((g) => g.gate === p.awaiting!.gate)!;
};

test('an approval ticket goes to the feedback recipients and the sync user only, and is assigned to approval.assignee', async () => {
  const ticket = await ticketFor(lab.targets.t1, district);
  expect(ticket.users.map((u) => u.id).sort()).toEqual(['M5zQapPyTZI', 'carolUserId']);
  expect(ticket.assignee).toEqual({ id: 'M5zQapPyTZI' });
});

test('a new org unit reaches t2 at once; t1 gets a draft and a ticket; the approver edits the draft, GET shows, POST approves, and t1 gets the edited version', async () => {
  const unit = newUid('N');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Daru CHC', { code: 'OU_DARU' })]);
  await eventually('t2 has it', () => lab.targets.t2.get('organisationUnit', unit), (r) => r?.name === 'Daru CHC');

  const gate = await waitingGate('t1', unit);
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
  expect(gate).toMatchObject({ approvers: ['alice', 'bob'], quorum: 1, state: 'open' });
  const draft = await readDraft(lab.targets.t1, unit);
  expect(draft).toMatchObject({ operation: 'create', organisationUnits: [{ id: unit, name: 'Daru CHC', code: 'OU_DARU' }] });

  const ticket = await ticketFor(lab.targets.t1, unit);
  expect(ticket.status).toBe('OPEN');
  const text = ticket.messages[0].text;
  expect(text).toContain(`${lab.targets.t1.baseUrl}/dhis-web-datastore/index.html#/edit/org-unit-sync/organisationUnit-${unit}`);
  expect(text).toMatch(/\* code: \(none\) -> OU_DARU/);
  const alice = linkIn(ticket, 'alice');
  const bob = linkIn(ticket, 'bob');
  expect(new URL(alice).origin).toBe(gateway.url);
  // Each link is bound to its approver, to this run and to this opening of the gate.
  const claim = verifyApproval(tokenOf(alice), secret);
  expect(claim.ok && claim.claim).toMatchObject({ approver: 'alice', workflowId: syncWorkflowId('t1', 'organisationUnit', unit), gate: gate.gate, nonce: gate.nonce });
  expect(verifyApproval(tokenOf(bob), secret)).toMatchObject({ ok: true, claim: { approver: 'bob' } });
  // The links never enter the run's history.
  const history = await readableHistory(syncOf('t1', unit));
  expect(history).not.toContain(tokenOf(alice));

  const before = fingerprintIn(await (await show(alice)).text());
  await editDraft(lab.targets.t1, unit, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], name: 'Daru Community Health Centre' }] }));
  // The page shows the draft as the reviewer left it: the whole import, its diff against t1 now, and its new version.
  const page = await show(alice);
  expect(page.status).toBe(200);
  const html = await page.text();
  const edited = fingerprintIn(html);
  expect(edited).toMatch(/^[0-9a-f]{32}$/);
  expect(edited).not.toBe(before);
  expect(html).toContain(`Version ${edited!.slice(0, 12)} of the draft`);
  expect(html).toContain('t1 will receive exactly this (create):');
  expect(html).toContain('&quot;name&quot;: &quot;Daru Community Health Centre&quot;');
  expect(html).toMatch(/\* code: \(none\) -&gt; OU_DARU/);
  expect(html).toMatch(/ {2}name: \(none\) -&gt; Daru Community Health Centre/);
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();

  const decided = await press(alice, 'approve', '', edited);
  expect(decided.status).toBe(200);
  expect(decided.text).toContain(`You approved version ${edited!.slice(0, 12)}`);
  const applied = await eventually('t1 has the edited version', () => lab.targets.t1.get('organisationUnit', unit), (r) => Boolean(r));
  expect(applied).toMatchObject({ name: 'Daru Community Health Centre', code: 'OU_DARU' });
  const closed = await eventually('the ticket solved', () => latestTicket(lab.targets.t1, unit), (t) => t.status === 'SOLVED');
  expect(closed.messages.at(-1)!.text).toMatch(/Approved by alice\. Applied on t1: the draft as edited by the reviewer/);
  expect(await readDraft(lab.targets.t1, unit)).toBeUndefined();
  // A second click on the used link decides nothing.
  expect((await decide(alice, 'approve')).status).toBe(409);
}, 120_000);

test('an update that touches only name reaches t1 without approval; a pending approval for one unit does not hold up another', async () => {
  const [held, free] = [newUid('H'), newUid('F')];
  await sourceImport(lab, 'organisationUnit', [ou(free, 'Pendembu')]);
  await decide(linkIn(await ticketFor(lab.targets.t1, free), 'bob'), 'approve');
  await eventually('t1 has the free unit', () => lab.targets.t1.get('organisationUnit', free), (r) => Boolean(r));

  await sourceImport(lab, 'organisationUnit', [ou(held, 'Buedu')]);
  await waitingGate('t1', held);
  await sourceImport(lab, 'organisationUnit', [{ ...ou(free, 'Pendembu Town'), shortName: 'Pendembu' }]);
  await eventually('the rename reached t1 while the other unit waits', () => lab.targets.t1.get('organisationUnit', free), (r) => r?.name === 'Pendembu Town');
  expect((await progressOf('t1', held)).status).toBe('waiting_for_approval');
  // The rename needed no approval: no second ticket for it.
  expect((await lab.targets.t1.messages() as Ticket[]).filter((t) => t.subject.includes('Approval needed') && t.subject.includes(free))).toHaveLength(1);
}, 120_000);

test('a rejection applies nothing and closes the ticket with the reason; a reject without a reason is refused', async () => {
  const unit = newUid('J');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Koindu', { code: 'OU_KOINDU' })]);
  const ticket = await ticketFor(lab.targets.t1, unit);
  const link = linkIn(ticket, 'bob');
  expect((await decide(link, 'reject')).status).toBe(400);
  const rejected = await decide(link, 'reject', 'code clashes with the national register');
  expect(rejected.status).toBe(200);
  const closed = await eventually('the ticket invalid', () => latestTicket(lab.targets.t1, unit), (t) => t.status === 'INVALID');
  expect(closed.messages.at(-1)!.text).toContain('rejected by bob: code clashes with the national register');
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
  expect(await readDraft(lab.targets.t1, unit)).toBeUndefined();
  const p = await eventually('the sync idle', () => progressOf('t1', unit), (x) => x.status === 'idle');
  expect(p.recent.map((r) => r.action)).toContain('rejected');
}, 120_000);

test('a second change while the first waits updates the draft and tells the ticket; after a reviewer edit it only tells', async () => {
  const unit = newUid('S');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Segbwema', { code: 'OU_SEG_1' })]);
  await waitingGate('t1', unit);
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Segbwema', { code: 'OU_SEG_2' })]);
  await eventually('the draft follows the source', () => readDraft(lab.targets.t1, unit), (d) => d?.organisationUnits?.[0]?.code === 'OU_SEG_2');
  const told = await ticketFor(lab.targets.t1, unit, 2);
  expect(told.messages[1].text).toMatch(/The source changed again.*The draft was updated/s);
  const gate = await waitingGate('t1', unit);
  expect(gate.details?.join('\n')).toContain('OU_SEG_2');

  await editDraft(lab.targets.t1, unit, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], code: 'OU_SEG_REVIEWED' }] }));
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Segbwema', { code: 'OU_SEG_3' })]);
  const again = await ticketFor(lab.targets.t1, unit, 3);
  expect(again.messages[2].text).toMatch(/source changed since you edited the draft.*NOT updated/s);
  expect((await readDraft(lab.targets.t1, unit)).organisationUnits[0].code).toBe('OU_SEG_REVIEWED');

  await decide(linkIn(again, 'alice'), 'approve');
  await eventually('t1 has the reviewed code', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_SEG_REVIEWED');
}, 120_000);

test('the approver\'s inbox lists a waiting org-unit change with a link that decides it', async () => {
  const unit = newUid('I');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Ngiehun', { code: 'OU_NGI' })]);
  const gate = await waitingGate('t1', unit);
  const inbox = `${gateway.url}/?t=${signInbox({ approver: 'bob', exp: Math.floor(Date.now() / 1000) + 600 }, secret)}`;
  const id = syncWorkflowId('t1', 'organisationUnit', unit);
  const html = await eventually('the inbox lists the change', async () => (await fetch(inbox)).text(), (t) => t.includes(id));
  expect(html).toContain(`<strong>${gate.gate}</strong>: create organisationUnit &#39;Ngiehun&#39;`);
  const decideLink = /<a href="([^"]+)">Decide<\/a>/.exec(html.slice(html.indexOf(id)))![1].replace(/&amp;/g, '&');
  expect((await decide(decideLink, 'approve')).status).toBe(200);
  await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_NGI');
}, 120_000);

test('forged, wrong-gate and replayed links send nothing; an edited draft that changes the id is refused and the change waits with new links', async () => {
  const unit = newUid('V');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Mano', { code: 'OU_MANO' })]);
  const gate = await waitingGate('t1', unit);
  const ticket = await ticketFor(lab.targets.t1, unit);
  const link = linkIn(ticket, 'alice');
  const claim = verifyApproval(tokenOf(link), secret);
  if (!claim.ok) throw new Error(claim.reason);
  const signals = async () => (await syncOf('t1', unit).fetchHistory()).events!.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'approve').length;
  const before = await signals();

  const forged = `${tokenOf(link).slice(0, -4)}AAAA`;
  expect((await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: forged, decision: 'approve' }) })).status).toBe(403);
  const otherOpening = signApproval({ ...claim.claim, nonce: 'an-earlier-opening', linkId: 'x1' }, secret);
  const wrong = await fetch(`${gateway.url}/approve`, { method: 'POST', body: new URLSearchParams({ t: otherOpening, decision: 'approve' }) });
  expect(wrong.status).toBe(409);
  expect(await wrong.text()).toContain('another opening');
  expect(await signals()).toBe(before);

  // The reviewer's edit points the draft at another org unit: approving does not apply it.
  await editDraft(lab.targets.t1, unit, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], id: district }] }));
  expect((await decide(link, 'approve')).status).toBe(200);
  const refused = await ticketFor(lab.targets.t1, unit, 2);
  expect(refused.messages[1].text).toMatch(/Approved by alice, but the draft cannot be applied: the draft changes the resource id/);
  const reopened = await waitingGate('t1', unit);
  expect(reopened.gate).not.toBe(gate.gate);
  expect((await lab.targets.t1.get('organisationUnit', district)).name).toBe('Kailahun');
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
  // The used link stays used; the new link decides once the draft is fixed.
  expect((await decide(link, 'approve')).status).toBe(409);
  await editDraft(lab.targets.t1, unit, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], id: unit }] }));
  await decide(linkIn(refused, 'bob'), 'approve');
  await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_MANO');
}, 120_000);

test('four-eyes and quorum: the source author cannot approve their own change; two distinct approvals apply it', async () => {
  // The source's writes in this lab are made by "admin".
  setT1Approval({ approvers: ['admin', 'alice', 'bob'], quorum: 2, fourEyes: true, timeout: '1h' });
  try {
    const unit = newUid('Q');
    await sourceImport(lab, 'organisationUnit', [ou(unit, 'Kpandebu', { code: 'OU_KPA' })]);
    const gate = await waitingGate('t1', unit);
    expect(gate).toMatchObject({ quorum: 2, fourEyes: true, requestedBy: 'admin' });
    // The UI's Summary panel says what the run is; its event view, what the request activity did.
    expect(await (await syncOf('t1', unit).describe()).staticSummary()).toBe(`Org-unit sync: organisationUnit ${unit} to t1`);
    const asked = (await syncOf('t1', unit).fetchHistory()).events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'openApprovalTicket');
    expect(defaultPayloadConverter.fromPayload(asked!.userMetadata!.summary as Payload)).toBe('Send admin, alice, bob their links privately; open the ticket on t1');
    const ticket = await ticketFor(lab.targets.t1, unit);
    expect(ticket.messages[0].text).toContain('four-eyes: admin may not approve');
    expect(ticket.messages[0].text).toContain('Asked to decide: admin, alice, bob. admin, alice, bob got a private message with their own link');

    // A reader of the ticket who is not asked (carol) finds no link in anything she can read; each
    // approver finds exactly one, their own: nobody can count as two people.
    const readable = async (who: string) => (await readableBy(lab.targets.t1, who)).filter((c) => c.subject.includes(unit));
    expect((await readable('carol')).map((c) => c.subject)).toEqual([ticket.subject]);
    expect((await readable('carol')).flatMap((c) => c.messages.flatMap((m) => linksInText(m.text)))).toEqual([]);
    // (admin is also this lab's sync account, the messages' sender: a service account nobody should sign in as.)
    for (const who of ['alice', 'bob']) {
      const links = (await readable(who)).flatMap((c) => c.messages.flatMap((m) => linksInText(m.text)));
      expect(links.map((l) => verifyApproval(tokenOf(l), secret)).map((v) => v.ok && v.claim.approver)).toEqual([who]);
    }
    // alice's one link, used twice, counts once.
    const alicesLink = linkIn(ticket, 'alice');

    const own = await decide(linkIn(ticket, 'admin'), 'approve');
    expect(own.status).toBe(409);
    expect(own.text).toContain('four-eyes: admin asked for this change');
    const first = await decide(alicesLink, 'approve');
    expect(first.text).toContain('Approvals: 1 of 2');
    expect((await decide(alicesLink, 'approve')).status).toBe(409);
    expect((await waitingGate('t1', unit)).approvedBy).toEqual(['alice']);
    expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
    await decide(linkIn(ticket, 'bob'), 'approve');
    await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_KPA');
    const solved = await eventually('the ticket solved', () => latestTicket(lab.targets.t1, unit), (t) => t.status === 'SOLVED');
    expect(solved.messages.at(-1)!.text).toContain('Approved by alice, bob');
  } finally {
    setT1Approval(t1Approval);
  }
}, 120_000);

test('four-eyes covers every author: an approver who changes the unit on the source while it waits may not approve the new version', async () => {
  setT1Approval({ approvers: ['admin', 'alice', 'bob'], quorum: 1, fourEyes: true, timeout: '1h' });
  try {
    const unit = newUid('E');
    await sourceImport(lab, 'organisationUnit', [ou(unit, 'Gbinti', { code: 'OU_GBI' })]);
    const ticket = await ticketFor(lab.targets.t1, unit);
    const first = (await waitingGate('t1', unit)).fingerprint;
    // alice, an approver, changes the gated code on the source: the draft follows, and it holds her change now.
    await sourceImport(lab, 'organisationUnit', [ou(unit, 'Gbinti', { code: 'OU_GBI_ALICE' })], 'alice');
    const gate = await eventually('the gate shows the new version', () => waitingGate('t1', unit), (g) => g.fingerprint !== first);
    expect(gate.alsoBy).toEqual(['alice']);
    const own = await decide(linkIn(await ticketFor(lab.targets.t1, unit), 'alice'), 'approve');
    expect(own.status).toBe(409);
    expect(own.text).toContain('four-eyes: alice changed what this gate decides and may not approve it');
    expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
    expect((await decide(linkIn(ticket, 'bob'), 'approve')).status).toBe(200);
    await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_GBI_ALICE');
  } finally {
    setT1Approval(t1Approval);
  }
}, 120_000);

test('the target down when the approval arrives: the apply retries until it is back', async () => {
  const unit = newUid('W');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Bunumbu', { code: 'OU_BUN' })]);
  const ticket = await ticketFor(lab.targets.t1, unit);
  await lab.targets.t1.down();
  try {
    await decide(linkIn(ticket, 'alice'), 'approve');
    await eventually('the approval recorded', () => progressOf('t1', unit), (p) => p.approvals.some((g) => g.state === 'approved'));
  } finally {
    await lab.targets.t1.up();
  }
  await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_BUN');
}, 120_000);

test('the worker killed while a gate waits, the approval given with no worker running: applied when a worker returns', async () => {
  const unit = newUid('K');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Nyandehun', { code: 'OU_NYA' })]);
  const ticket = await ticketFor(lab.targets.t1, unit);
  await waitingGate('t1', unit);
  // Bob opened the page while the worker ran; he presses Approve after it died.
  const seen = fingerprintIn(await (await show(linkIn(ticket, 'bob'))).text());
  expect(seen).toBeDefined();
  await worker.kill('SIGKILL');
  const sent = await press(linkIn(ticket, 'bob'), 'approve', '', seen);
  // No worker can confirm: the gateway says the decision was sent and counts when the run resumes.
  expect(sent.status).toBe(202);
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
  worker = await startWorker(queue, workerEnv());
  await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_NYA');
  await eventually('the ticket solved', () => latestTicket(lab.targets.t1, unit), (t) => t.status === 'SOLVED');
}, 120_000);

test('a draft deleted by hand: the approval is refused with that reason and nothing is applied', async () => {
  const unit = newUid('X');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Mobai', { code: 'OU_MOBAI' })]);
  const ticket = await ticketFor(lab.targets.t1, unit);
  const res = await fetch(draftUrl(lab.targets.t1, unit), { method: 'DELETE', headers: admin });
  expect(res.status).toBe(200);
  await decide(linkIn(ticket, 'alice'), 'approve');
  const closed = await eventually('the ticket invalid', () => latestTicket(lab.targets.t1, unit), (t) => t.status === 'INVALID');
  expect(closed.messages.at(-1)!.text).toContain('the draft was deleted in the target');
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();
}, 120_000);

test('no decision within the timeout: the configured outcome (park), told in the ticket; retry asks again', async () => {
  setT1Approval({ ...t1Approval, timeout: '3s', onTimeout: 'park' });
  const unit = newUid('T');
  try {
    await sourceImport(lab, 'organisationUnit', [ou(unit, 'Baiwala', { code: 'OU_BAI' })]);
    const parked = await eventually('parked on timeout', () => progressOf('t1', unit), (p) => p.status === 'parked');
    expect(parked.parked?.error).toMatch(/no decision within 3s/);
    const ticket = await eventually('the ticket pending', () => latestTicket(lab.targets.t1, unit), (t) => t?.status === 'PENDING');
    expect(ticket.messages.at(-1)!.text).toMatch(/No decision within 3s: the change is PARKED/);
  } finally {
    setT1Approval(t1Approval);
  }
  await syncOf('t1', unit).signal('retry', { by: 'ops-anna' });
  const second = await ticketFor(lab.targets.t1, unit, 1, 1);
  await decide(linkIn(second, 'alice'), 'approve');
  await eventually('t1 has it', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_BAI');
}, 120_000);

test('the draft edited between the page and the click: 409 with the new version, nothing counted (links and plain signals alike); the version approved then is the one applied', async () => {
  const unit = newUid('B');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Kenema', { code: 'OU_KEN' })]);
  const gate = await waitingGate('t1', unit);
  const alice = linkIn(await ticketFor(lab.targets.t1, unit), 'alice');
  const seen = fingerprintIn(await (await show(alice)).text());
  // Someone with a login on t1 changes the code while alice reads the page.
  await editDraft(lab.targets.t1, unit, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], code: 'OU_EVIL' }] }));
  const stale = await press(alice, 'approve', '', seen);
  expect(stale.status).toBe(409);
  expect(stale.text).toContain('The draft changed since you opened this page');
  expect(stale.text).toContain('&quot;code&quot;: &quot;OU_EVIL&quot;');
  const now = fingerprintIn(stale.text);
  expect(now).toMatch(/^[0-9a-f]{32}$/);
  expect(now).not.toBe(seen);
  let p = await progressOf('t1', unit);
  expect(p.approvals.find((g) => g.gate === gate.gate)).toMatchObject({ state: 'open', approvedBy: [], fingerprint: now });
  expect(p.decisions.filter((d) => d.outcome === 'accepted')).toEqual([]);

  // A plain signal (the UI's Signal dialog, `temporal workflow signal`) is held to the same rule.
  await syncOf('t1', unit).signal('approve', { gate: gate.gate, by: 'bob' });
  await syncOf('t1', unit).signal('approve', { gate: gate.gate, by: 'bob', fingerprint: seen });
  p = await eventually('both signals recorded', () => progressOf('t1', unit), (x) => x.decisions.filter((d) => d.by === 'bob').length === 2);
  expect(p.decisions.filter((d) => d.by === 'bob')).toEqual([
    expect.objectContaining({ outcome: 'ignored', note: expect.stringMatching(/^this gate approves one exact version: send its fingerprint/) }),
    expect.objectContaining({ outcome: 'ignored', note: expect.stringMatching(/^the draft changed since you opened this page/) }),
  ]);
  expect(p.approvals.find((g) => g.gate === gate.gate)).toMatchObject({ state: 'open', approvedBy: [] });
  expect(await lab.targets.t1.get('organisationUnit', unit)).toBeUndefined();

  // alice read the new version on the 409 page and approves exactly it, with the same link (her stale click decided nothing).
  const ok = await press(alice, 'approve', '', now);
  expect(ok.status).toBe(200);
  await eventually('t1 has the version alice approved', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_EVIL');
}, 120_000);

test('an edit after the approval, while the apply waits for the parent, is not applied: the gate asks again for the new version', async () => {
  const [parent, child] = [newUid('P'), newUid('C')];
  await sourceImport(lab, 'organisationUnit', [ou(parent, 'Gorama'), { ...ou(child, 'Gorama CHP', { code: 'OU_GOR' }), parent: { id: parent } }]);
  const childTicket = await ticketFor(lab.targets.t1, child);
  const parentTicket = await ticketFor(lab.targets.t1, parent);
  const first = await waitingGate('t1', child);
  expect((await decide(linkIn(childTicket, 'alice'), 'approve')).status).toBe(200);
  await eventually('the approved child waits for its parent', () => progressOf('t1', child), (p) => p.status === 'waiting_for_reference');
  await editDraft(lab.targets.t1, child, (d) => ({ ...d, organisationUnits: [{ ...d.organisationUnits[0], code: 'OU_GOR_EDITED' }] }));
  expect((await decide(linkIn(parentTicket, 'bob'), 'approve')).status).toBe(200);
  await eventually('t1 has the parent', () => lab.targets.t1.get('organisationUnit', parent), (r) => Boolean(r));

  // The child's sync is woken, finds a version nobody approved, applies nothing and asks again.
  const asked = await eventually('the child asks again (or, wrongly, is applied)', async () => ({
    applied: await lab.targets.t1.get('organisationUnit', child), ticket: await ticketFor(lab.targets.t1, child),
  }), (x) => Boolean(x.applied) || x.ticket.messages.some((m) => m.text.includes('the draft changed after that approval')));
  expect(asked.applied).toBeUndefined();
  const again = await waitingGate('t1', child);
  expect(again.gate).not.toBe(first.gate);
  expect(again.fingerprint).not.toBe(first.fingerprint);
  expect(again.details?.join('\n')).toContain('"code": "OU_GOR_EDITED"');
  const retold = await ticketFor(lab.targets.t1, child, 2);
  const second = await decide(linkIn(retold, 'bob'), 'approve');
  expect([second.status, second.text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 600)]).toEqual([200, expect.stringContaining('Approved')]);
  await eventually('t1 has the version approved the second time', () => lab.targets.t1.get('organisationUnit', child), (r) => r?.code === 'OU_GOR_EDITED');
}, 150_000);

test('the draft is shared with the approvers only: another user of t1 can neither change nor read it; an approver edits it and approves that version', async () => {
  const unit = newUid('R');
  await sourceImport(lab, 'organisationUnit', [ou(unit, 'Tongo', { code: 'OU_TONGO' })]);
  await waitingGate('t1', unit);
  const as = (user: string) => ({ authorization: `Basic ${Buffer.from(`${user}:pw-${user}`).toString('base64')}`, 'content-type': 'application/json' });
  const key = `organisationUnit-${unit}`;

  const forged = await fetch(draftUrl(lab.targets.t1, unit), { method: 'PUT', headers: as('mallory'), body: JSON.stringify({ operation: 'create', organisationUnits: [{ id: unit, code: 'OU_EVIL' }] }) });
  expect(forged.status).toBe(403);
  expect(await forged.json()).toMatchObject({ httpStatusCode: 403, status: 'ERROR', message: `Access denied for key '${key}' in namespace 'org-unit-sync'` });
  const peek = await fetch(draftUrl(lab.targets.t1, unit), { headers: as('mallory') });
  expect(peek.status).toBe(403);
  expect(await peek.json()).toMatchObject({ errorCode: 'E1006' });
  const meta = await (await fetch(`${draftUrl(lab.targets.t1, unit)}/metaData`, { headers: admin })).json() as { sharing: { public: string; users: Record<string, { access: string }> } };
  expect(meta.sharing.public).toBe('--------');
  expect(meta.sharing.users).toEqual({ [t1Users.alice]: { id: t1Users.alice, access: 'rw------' }, [t1Users.bob]: { id: t1Users.bob, access: 'rw------' } });

  // alice, an approver, may review and edit it; what she then approves is her version.
  const draft = await readDraft(lab.targets.t1, unit);
  const edit = await fetch(draftUrl(lab.targets.t1, unit), { method: 'PUT', headers: as('alice'), body: JSON.stringify({ ...draft, organisationUnits: [{ ...draft.organisationUnits[0], code: 'OU_TONGO_FIELD' }] }) });
  expect(edit.status).toBe(200);
  expect((await decide(linkIn(await ticketFor(lab.targets.t1, unit), 'alice'), 'approve')).status).toBe(200);
  await eventually('t1 has alice\'s version', () => lab.targets.t1.get('organisationUnit', unit), (r) => r?.code === 'OU_TONGO_FIELD');
}, 120_000);

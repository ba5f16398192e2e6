/**
 * The Temporal Web UI as an operator uses it, in a real chromium: start.sh brings up the dev
 * server with its UI and the worker; orgUnitSyncSetup is started from the UI's Start Workflow
 * form with its example input PASTED into the Data editor, watched through its current details
 * and the run list, and approved from the UI's Signal dialog. The lab is a real PostgreSQL with
 * wal_level=replica and DHIS2's tables, so the real run has to stop at its restart gate.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { progressQuery, type Progress } from '../contracts/messages';
import { startLocalPostgres, type LocalPostgres } from './lab/local-postgres';
import { Dhis2Sim } from './sims/dhis2';
import { launchBrowser, screenshot } from './support/browser';
import { freePort } from './support/global-setup';
import { eventually, repoRoot } from './support/processes';
import { alive, descendants } from './support/process-tree';
import { currentDetails, waitForGate, waitForProgress } from './support/runs';

const GATE = 'restart-for-logical-wal';
const DATABASE = 'dhis2_ui';
const captureTables = ['organisationunit', 'orgunitgroup', 'orgunitgroupset', 'orgunitgroupmembers', 'orgunitgroupsetmembers'];
const stepTitles = [
  'Check the source database', 'wal_level = logical', 'Wait for a restart of PostgreSQL', 'The listener\'s replication role',
  'REPLICA IDENTITY FULL on the five tables', 'The publication', 'The logical replication slot', 'Log in as the listener',
];

let pg: LocalPostgres;
let secretsDir: string;
let stateDir: string;
let startSh: ChildProcess;
let startShExited: Promise<number | null>;
let startShOutput = '';
let uiUrl: string;
let client: Client;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const suffix = Date.now().toString(36);
const dryRunId = `ui-dry-run-${suffix}`;
const realRunId = `ui-real-run-${suffix}`;

/** The example file as a user has it, with only where the database is changed to the lab's. */
function exampleInput(dryRun: boolean): string {
  const input = JSON.parse(readFileSync(path.join(repoRoot, 'examples/orgUnitSyncSetup.json'), 'utf8'));
  Object.assign(input.database, { host: pg.host, port: pg.port, database: DATABASE });
  input.dryRun = dryRun;
  return JSON.stringify(input, null, 2);
}

/** A real paste (a ClipboardEvent carrying the text), as Ctrl-V delivers it: no auto-closed brackets, no re-indentation. */
async function paste(editor: Locator, text: string): Promise<void> {
  await editor.click();
  await editor.evaluate((el, t) => {
    const { DataTransfer, ClipboardEvent } = globalThis as any; // browser globals (the tests compile without the DOM lib)
    const data = new DataTransfer();
    data.setData('text/plain', t);
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, text);
}

/** Where the page is and what went wrong in it, for a failure to explain itself. */
const pageProblems: string[] = [];
async function pageState(): Promise<string> {
  const text = await page.locator('body').innerText().catch((err) => `(no body: ${String(err)})`);
  return `page ${page.url()} shows:\n${text.slice(0, 2000)}\nproblems in the page:\n${pageProblems.slice(-20).join('\n')}`;
}

/**
 * Opens a page of the UI and waits for `ready`. Once, in the first dozen runs, the Start Workflow
 * page never rendered its form after a goto (machine under heavy load): then it is loaded once
 * more, and the warning says what the page showed.
 */
async function openPage(url: string, ready: Locator): Promise<void> {
  await page.goto(url);
  try {
    await ready.waitFor({ timeout: 20_000 });
  } catch (err) {
    console.warn(`${(err as Error).message}\n${await pageState()}\nLoading it once more.`);
    await page.goto(url);
    await ready.waitFor().catch(async (again) => { throw new Error(`${(again as Error).message}\n${await pageState()}`); });
  }
}

/** What a CodeMirror editor holds, line by line as it renders them. */
const editorText = (editor: Locator) => editor.evaluate((el) => Array.from(el.querySelectorAll('.cm-line'), (l) => (l as { textContent: string }).textContent).join('\n'));

const sql = <T = Record<string, unknown>>(text: string, params: unknown[] = []) => pg.sql<T>(text, params, DATABASE);

/** What the runbook changes on the database, read directly: the proof that a dry-run changed nothing. */
async function databaseState() {
  const [auto] = await sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_file_settings WHERE name = 'wal_level' AND sourcefile LIKE '%postgresql.auto.conf'");
  const [wal] = await sql<{ wal_level: string }>('SHOW wal_level');
  return {
    walLevel: wal.wal_level,
    walLevelInAutoConf: auto.n,
    roles: (await sql<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname = 'runbooks_cdc'")).map((r) => r.rolname),
    publications: (await sql<{ pubname: string }>('SELECT pubname FROM pg_publication')).map((r) => r.pubname),
    slots: (await sql<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots')).map((r) => r.slot_name),
    fullIdentity: (await sql<{ relname: string }>("SELECT relname FROM pg_class WHERE relname = ANY($1) AND relreplident = 'f' ORDER BY 1", [captureTables])).map((r) => r.relname),
  };
}

/** Fills the Start Workflow form as a person does and starts the run; returns on the run's own page. */
async function startFromUi(workflowId: string, input: string, shot: string): Promise<void> {
  await openPage(`${uiUrl}/namespaces/default/workflows/start-workflow`, page.locator('#workflowId'));
  await page.fill('#workflowId', workflowId);
  await page.fill('#taskQueue', 'runbooks');
  await page.fill('#workflowType', 'orgUnitSyncSetup');
  const editor = page.locator('.cm-content').first();
  await paste(editor, input);
  // The editor holds exactly what was pasted: not one bracket added, not one quote doubled.
  expect(await editorText(editor)).toBe(input);
  await page.locator('input[type=radio][value="json/plain"]').check();
  await page.getByText('Task Queue is Active').waitFor();
  await screenshot(page, shot);
  await page.click('[data-testid=start-workflow-button]');
  await page.getByRole('link', { name: 'Workflow started successfully' }).click();
  await page.waitForURL(new RegExp(`/workflows/${workflowId}/`));
}

const statusBadge = (status: string) => page.locator('header').getByText(status, { exact: true }).first();

/** The workflow list: refreshes until `ready` holds for its rows (the list does not refresh by itself). */
async function listRows(ready: (rows: string[]) => boolean, what: string): Promise<string[]> {
  const rows = page.locator('[data-testid=workflows-summary-configurable-table-row]');
  let last: string[] = [];
  try {
    return await eventually(async () => {
      await page.locator('table').first().waitFor();
      last = await rows.allInnerTexts();
      if (ready(last)) return last;
      // The refresh button beside the title: the list does not follow runs by itself.
      await page.click('div:has(> h1[data-cy=workflows-title]) + button');
      return undefined;
    }, what, 30_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the list shows:\n${last.join('\n')}`);
  }
}

beforeAll(async () => {
  pg = await startLocalPostgres({ walLevel: 'replica' });
  await pg.createDatabase(DATABASE);
  // The DHIS2 simulator creates DHIS2's tables on its database; the runbook needs nothing else of it.
  const sim = await Dhis2Sim.start({ name: 'source', db: { host: pg.host, port: pg.port, user: 'postgres', password: pg.password, database: DATABASE } });
  await sim.stop();

  secretsDir = mkdtempSync(path.join(os.tmpdir(), 'ui-secrets-'));
  writeFileSync(path.join(secretsDir, 'dhis2-db-admin'), pg.password, { mode: 0o600 });
  writeFileSync(path.join(secretsDir, 'dhis2-cdc'), `cdc-${Math.random().toString(36).slice(2)}`, { mode: 0o600 });

  stateDir = mkdtempSync(path.join(os.tmpdir(), 'ui-start-sh-'));
  const [port, uiPort, approvalPort] = [await freePort(), await freePort(), await freePort()];
  const env: Record<string, string | undefined> = {
    ...process.env, RUNBOOKS_STATE_DIR: stateDir, TEMPORAL_PORT: String(port), TEMPORAL_UI_PORT: String(uiPort), APPROVAL_PORT: String(approvalPort),
    RUNBOOKS_SECRETS_DIR: secretsDir,
  };
  for (const key of ['TEMPORAL_ADDRESS', 'RUNBOOKS_TASK_QUEUE', 'ORGUNIT_SYNC_CONFIG']) delete env[key];
  startSh = spawn(path.join(repoRoot, 'scripts/start.sh'), [], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  startSh.stdout!.on('data', (d) => { startShOutput += d; });
  startSh.stderr!.on('data', (d) => { startShOutput += d; });
  startShExited = new Promise((resolve) => startSh.once('exit', (code) => resolve(code)));
  [browser] = await Promise.all([
    launchBrowser(),
    eventually(async () => startShOutput.includes('[start] ready'), 'start.sh to be ready', 120_000)
      .catch((err) => { throw new Error(`${(err as Error).message}; output:\n${startShOutput}`); }),
  ]);
  uiUrl = `http://127.0.0.1:${uiPort}`;
  expect(startShOutput).toContain(`Web UI         ${uiUrl}`);
  client = new Client({ connection: await Connection.connect({ address: `127.0.0.1:${port}` }), namespace: 'default' });
  context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: uiUrl });
  page = await context.newPage();
  page.on('pageerror', (err) => pageProblems.push(`error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') pageProblems.push(`console: ${msg.text()}`); });
  page.on('requestfailed', (req) => pageProblems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));
}, 170_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await client?.connection.close().catch(() => undefined);
  if (startSh?.pid) {
    const family = descendants(startSh.pid);
    startSh.kill('SIGINT');
    const code = await startShExited;
    await eventually(async () => family.every((pid) => !alive(pid)), 'every process started by start.sh to exit', 40_000);
    expect(code).toBe(0);
  }
  pg?.stop();
  for (const dir of [secretsDir, stateDir]) if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

test('a dry-run started from the Start Workflow form with the example pasted completes with the plan, and changes nothing', async () => {
  const before = await databaseState();
  expect(before).toMatchObject({ walLevel: 'replica', walLevelInAutoConf: 0, roles: [], publications: [], slots: [], fullIdentity: [] });

  await startFromUi(dryRunId, exampleInput(true), 'ui-start-form');
  await statusBadge('Completed').waitFor({ timeout: 60_000 });

  // The result as the UI shows it (its copy button copies the panel's content) is the plan.
  const resultPanel = page.locator('div:has(> h2:text-is("Result"))').first();
  await resultPanel.getByText('"runbook": "orgUnitSyncSetup"').waitFor();
  await resultPanel.getByText('"dryRun": true').waitFor();
  await resultPanel.getByRole('button').first().click();
  const shown = JSON.parse(await page.evaluate(() => (globalThis as any).navigator.clipboard.readText() as Promise<string>));
  const plan = await client.workflow.getHandle(dryRunId).result();
  expect(shown).toEqual(plan);
  expect(plan).toMatchObject({ runbook: 'orgUnitSyncSetup', dryRun: true });
  expect(plan.steps.map((s: { title: string }) => s.title)).toEqual(stepTitles);
  const actions = plan.steps.flatMap((s: { actions: string[] }) => s.actions);
  expect(actions).toEqual(expect.arrayContaining([
    "would run: ALTER SYSTEM SET wal_level = 'logical'",
    expect.stringMatching(/^would wait for approval "restart-for-logical-wal"/),
    expect.stringMatching(/^would run: CREATE ROLE "runbooks_cdc" WITH LOGIN REPLICATION/),
    "would run: SELECT pg_create_logical_replication_slot('runbooks_orgunit_sync', 'pgoutput')",
  ]));
  expect(plan.approvals).toEqual([expect.objectContaining({ gate: GATE })]);
  await screenshot(page, 'ui-run-completed');

  expect(await databaseState()).toEqual(before);
}, 90_000);

test('a real run waits at the restart gate: its current details show the checklist readably, the list shows and filters it', async () => {
  await startFromUi(realRunId, exampleInput(false), 'ui-start-form-real');
  const handle = client.workflow.getHandle(realRunId);
  await waitForGate(handle, GATE);
  // ALTER SYSTEM was run, and takes effect only at a restart.
  expect(await databaseState()).toMatchObject({ walLevel: 'replica', walLevelInAutoConf: 1, slots: [] });

  // Current details: the Markdown checklist rendered by the UI (in its iframe), one step per line.
  // The page reads the run's metadata when it loads: one loaded before the first workflow task
  // finished has no User Metadata tab until it is loaded again.
  const runUrl = page.url();
  const metadataTab = page.locator('[data-testid=user-metadata-tab]:visible');
  await eventually(async () => {
    if (await metadataTab.waitFor({ timeout: 5_000 }).then(() => true, () => false)) return true;
    await page.goto(runUrl);
    return undefined;
  }, 'the run page with its User Metadata tab', 60_000);
  await metadataTab.click();
  await page.getByRole('heading', { name: 'Current Details' }).waitFor();
  const details = page.frameLocator('iframe[title=output]');
  // The steps done are folded into one line: the frame is of fixed height.
  await details.locator('li').nth(stepTitles.length - 2).waitFor();
  const items = details.locator('li');
  const texts = (await items.allInnerTexts()).map((t) => t.trim());
  expect(texts).toEqual([
    '[x] 2 steps done (last: wal_level = logical)', '[>] Wait for a restart of PostgreSQL (running)',
    '[ ] The listener’s replication role', '[ ] REPLICA IDENTITY FULL on the five tables', '[ ] The publication',
    '[ ] The logical replication slot', '[ ] Log in as the listener',
  ]);
  // Each on its own line: one below the other, none sharing a line with the next.
  const boxes = await items.evaluateAll((lis) => lis.map((li) => { const r = li.getBoundingClientRect(); return { top: r.top, bottom: r.bottom }; }));
  for (let i = 1; i < boxes.length; i++) expect(boxes[i].top).toBeGreaterThanOrEqual(boxes[i - 1].bottom - 1);
  await details.locator('strong', { hasText: 'Wait for a restart of PostgreSQL' }).waitFor();
  const gateParagraph = details.locator('p', { has: details.locator('code', { hasText: GATE }) });
  const gateText = await gateParagraph.innerText();
  for (const part of [`Waiting for approval ${GATE}`, 'wal_level on 127.0.0.1 is “replica”', 'Restart it, then approve to continue', '0/1', 'until ']) expect(gateText).toContain(part);
  // One time format: readable UTC, never a raw ISO string.
  expect(gateText).toMatch(/until \d{4}-\d\d-\d\d \d\d:\d\d UTC\)/);
  expect(await currentDetails(handle)).toContain(`Waiting for approval \`${GATE}\``);
  // The UI shows current details in an iframe of a fixed height: the gate's name must be inside it, not below it.
  const frameHeight = await page.locator('iframe[title=output]').evaluate((f) => (f as unknown as { clientHeight: number }).clientHeight);
  const gateName = await details.locator('code', { hasText: GATE }).boundingBox();
  const frameBox = await page.locator('iframe[title=output]').boundingBox();
  expect(gateName!.y + gateName!.height - frameBox!.y).toBeLessThanOrEqual(frameHeight);
  // ... and so must the whole checklist, to its last line (it was cut in half).
  const lastLine = await items.last().boundingBox();
  expect(lastLine!.y + lastLine!.height - frameBox!.y).toBeLessThanOrEqual(frameHeight);
  await screenshot(page, 'ui-current-details');

  // The list with the runbook's search attributes as columns.
  await openPage(`${uiUrl}/namespaces/default/workflows`, page.locator('[data-testid=workflows-summary-table-configuration-button]'));
  await page.click('[data-testid=workflows-summary-table-configuration-button]');
  for (const column of ['Run ID', 'Start', 'End']) await page.click(`[data-testid="orderable-list-item-${column}-remove-button"]`);
  for (const column of ['RunbookName', 'RunbookStatus', 'RunbookStep']) await page.click(`[data-testid="orderable-list-item-${column}-add-button"]`);
  await page.click('[data-testid=drawer-close-button]');
  await page.locator('#workflows-table-configuration-drawer').waitFor({ state: 'hidden' });
  const headers = await page.locator('thead th').allInnerTexts();
  expect(headers.map((h) => h.trim())).toEqual(expect.arrayContaining(['RunbookName', 'RunbookStatus', 'RunbookStep']));
  const all = await listRows((rows) => rows.some((r) => r.includes(realRunId) && r.includes('waiting_for_approval')) && rows.some((r) => r.includes(dryRunId)), 'both runs in the list');
  expect(all.find((r) => r.includes(realRunId))!.split('\t').map((c) => c.trim())).toEqual(expect.arrayContaining(['orgUnitSyncSetup', 'waiting_for_approval', 'restart']));
  expect(all.find((r) => r.includes(dryRunId))!.split('\t').map((c) => c.trim())).toEqual(expect.arrayContaining(['orgUnitSyncSetup', 'planned']));
  await screenshot(page, 'ui-list-columns');
  await page.click('[data-testid=toggle-manual-query]');

  // The operator's query for runs waiting for a human finds this one, and not the finished dry-run.
  await page.fill('[data-testid=manual-search-input]', 'RunbookStatus = "waiting_for_approval"');
  await page.click('[data-testid=manual-search-button]');
  await page.waitForURL(/query=/);
  const waiting = await listRows((rows) => rows.length === 1 && rows[0].includes(realRunId), 'exactly the waiting run after filtering');
  expect(waiting.join('\n')).not.toContain(dryRunId);
  await screenshot(page, 'ui-list-filter');
}, 90_000);

test('after the restart, approve sent from the UI\'s Signal dialog resumes the run, which completes', async () => {
  const handle: WorkflowHandle = client.workflow.getHandle(realRunId);
  pg.restart();
  expect((await databaseState()).walLevel).toBe('logical');

  await openPage(`${uiUrl}/namespaces/default/workflows/${realRunId}`, statusBadge('Running'));
  await page.getByRole('button', { name: 'More Actions' }).click();
  await page.click('[data-testid=signal-button]:visible');
  const dialog = page.locator('[data-testid=signal-confirmation-modal]:visible');
  await dialog.locator('[data-testid=signal-select-button]').click();
  await dialog.getByRole('option', { name: /^approve/ }).click();
  const decision = JSON.stringify({ gate: GATE, by: 'bob', reason: 'restarted' }, null, 2);
  const editor = dialog.locator('.cm-content');
  await paste(editor, decision);
  expect(await editorText(editor)).toBe(decision);
  await screenshot(page, 'ui-signal-dialog');
  await dialog.locator('[data-testid=confirm-modal-button]').click();
  await dialog.waitFor({ state: 'hidden' });

  // The page follows the run by itself until it completes.
  await statusBadge('Completed').waitFor({ timeout: 60_000 });
  const result = await handle.result();
  expect(result).toMatchObject({ database: `${pg.host}:${pg.port}/${DATABASE}`, slot: 'runbooks_orgunit_sync', publication: 'runbooks_orgunit_sync', systemId: expect.any(String) });
  const progress: Progress = await waitForProgress(handle, 'the run to be completed', (p) => p.status === 'completed');
  expect(progress.decisions).toEqual([expect.objectContaining({ gate: GATE, decision: 'approve', by: 'bob', via: 'ui', outcome: 'accepted' })]);
  expect(progress.approvals).toEqual([expect.objectContaining({ gate: GATE, state: 'approved', approvedBy: ['bob'] })]);
  expect(progress.steps.every((s) => s.state === 'done')).toBe(true);
  expect(await databaseState()).toMatchObject({ walLevel: 'logical', roles: ['runbooks_cdc'], publications: ['runbooks_orgunit_sync'], slots: ['runbooks_orgunit_sync'], fullIdentity: [...captureTables].sort() });
  await page.locator('div:has(> h2:text-is("Result"))').first().getByText('"systemId"').waitFor();
  await screenshot(page, 'ui-run-resumed');
  expect(await handle.query(progressQuery)).toMatchObject({ status: 'completed' });
}, 90_000);

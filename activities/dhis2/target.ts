/**
 * One DHIS2 target as the sync and the approvals see it: its resources, the draft a gated change
 * waits in (its dataStore), the ticket that asks for approval (its messaging), and the
 * notifications to its recipients. Each activity opens the target once (`openTarget`) and hands
 * it on, so a pass reads the configuration once and every call names the same target.
 */
import { endpointOf, uidPattern, type ResourceType } from '../../contracts/dhis2/resources';
import { answerLimits, call, importErrors, refused, snippet, type Dhis2Server, type ImportError } from './api';
import { currentSyncConfig, targetNamed, type SyncConfig, type SyncTarget } from './config';
import type { Resource } from './mapping';
import { asFailure, codeProblem, deletedCode, findByCode, NotSyncable, notSyncable, toSource, toTarget } from './codes';

/** What the sync activities are asked about: one resource on one target. */
export interface SyncRequest {
  target: string;
  type: ResourceType;
  uid: string;
  /** A gate is open for this resource: bring its draft up to date instead of applying anything. */
  held?: { draftHash: string };
}

export interface MissingReference { type: ResourceType; uid: string; property?: string }

/** What a change does to a resource on a target (and what a draft asks for). */
export type GatedOperation = 'create' | 'update' | 'delete';

export type Written = { ok: true } | { ok: false; errors: ImportError[]; message: string };

export type TicketStatus = 'OPEN' | 'PENDING' | 'INVALID' | 'SOLVED';

const sourceServer = (config: SyncConfig): Dhis2Server => ({ name: 'source', baseUrl: config.source.baseUrl, auth: config.source.auth, concurrency: 16 });
const targetServer = (t: SyncTarget): Dhis2Server => ({ name: t.name, baseUrl: t.baseUrl, auth: t.auth, concurrency: t.concurrency });

export const draftNamespace = 'org-unit-sync';
/** One draft per resource on a target: a retry and every later change of the same resource reuse it. */
export const draftKey = (type: ResourceType, uid: string): string => `${type}-${uid}`;
const draftPath = (type: ResourceType, uid: string) => `dataStore/${draftNamespace}/${draftKey(type, uid)}`;

/** The target named in the worker's configuration (read now: it may have changed since the last activity). */
export function openTarget(name: string): Dhis2Target {
  const config = currentSyncConfig();
  return new Dhis2Target(config, targetNamed(config, name));
}

/** GET /api/<type>/<uid>?fields=*: the resource, or undefined when the server does not have it. */
export async function fetchResource(server: Dhis2Server, type: ResourceType, uid: string): Promise<Resource | undefined> {
  const res = await call<Resource>(server, 'GET', `${endpointOf[type]}/${uid}`, { query: { fields: '*' }, maxBytes: answerLimits.resource });
  if (res.status === 404) return undefined;
  if (res.status !== 200 || typeof res.body !== 'object' || res.body === null || res.body.id !== uid) {
    throw refused(server, `answered GET ${endpointOf[type]}/${uid} with HTTP ${res.status} and not the ${type}: ${snippet(res.text)}`);
  }
  return res.body;
}

const metadataQuery = { importStrategy: 'CREATE_AND_UPDATE', identifier: 'UID', atomicMode: 'ALL', skipSharing: 'true', userOverrideMode: 'CURRENT' };
const klassTypes: Record<string, ResourceType> = { OrganisationUnit: 'organisationUnit', OrganisationUnitGroup: 'organisationUnitGroup', OrganisationUnitGroupSet: 'organisationUnitGroupSet' };

/**
 * A reference as DHIS2 names it in E5002 (PreheatIdentifier.getIdentifiersWithName in dhis2-core's
 * ReferencesCheck): "[<identifier>] (<Klass>)", or "<display name> [<identifier>] (<Klass>)". A name
 * may hold brackets too, so the identifier is the last [...] right before the class.
 */
const decoratedReference = /\[([^[\]]*)\] \(([A-Za-z]+)\)$/;

/** The reference an E5002 names: errorProperties[0] (decorated), or the message's {0} when a server leaves the properties out. */
function referenceOf(e: ImportError): { identifier: string; type: ResourceType } | undefined {
  const named = e.properties?.length ? e.properties[0] : /^Invalid reference (.+) on object .+ for association `[^`]+`\.?$/s.exec(e.message)?.[1];
  const m = named ? decoratedReference.exec(named) : null;
  const type = m ? klassTypes[m[2]] : undefined;
  return m && type ? { identifier: m[1], type } : undefined;
}

/**
 * E5002 "Invalid reference [uid] (Klass) on object Name [uid] (Klass) for association `parent`": which
 * synced resources the target lacks. Undefined unless every error is such a reference to a resource we
 * sync (a missing attribute, user or user group is not something a sync can bring).
 */
export function missingReferences(errors: ImportError[]): MissingReference[] | undefined {
  if (!errors.length || errors.some((e) => e.code !== 'E5002')) return undefined;
  const out: MissingReference[] = [];
  for (const e of errors) {
    const ref = referenceOf(e);
    if (!ref || !uidPattern.test(ref.identifier)) return undefined;
    if (!out.some((m) => m.uid === ref.identifier && m.type === ref.type)) out.push({ type: ref.type, uid: ref.identifier, property: e.property });
  }
  // Each missing reference starts a sync workflow: a target cannot make us start thousands.
  return out.slice(0, 20);
}

export class Dhis2Target {
  readonly server: Dhis2Server;
  readonly source: Dhis2Server;

  constructor(readonly config: SyncConfig, readonly settings: SyncTarget) {
    this.server = targetServer(settings);
    this.source = sourceServer(config);
  }

  get name(): string { return this.settings.name; }

  /** Where a reviewer reads and edits the draft (the target's Data Store Manager app). */
  reviewLink(key: string): string {
    return `${this.settings.baseUrl}/dhis-web-datastore/index.html#/edit/${draftNamespace}/${key}`;
  }

  /** The target matches objects by code (idScheme CODE): see ./codes.ts. */
  get byCode(): boolean { return this.settings.idScheme === 'CODE'; }

  /**
   * The resource as the source holds it and as this target holds it now (undefined where absent),
   * both named by the source's uids. On a CODE target this throws NotSyncable when the target's copy
   * cannot be found (the source object has no code, or its deletion left no record).
   */
  async bothSides(type: ResourceType, uid: string): Promise<[Resource | undefined, Resource | undefined]> {
    if (!this.byCode) return Promise.all([fetchResource(this.source, type, uid), fetchResource(this.server, type, uid)]);
    const source = await fetchResource(this.source, type, uid);
    const held = await this.heldByCode(type, uid, source);
    return [source, held && await toSource(this.source, this.server, type, held, uid)];
  }

  /** This target's copy of the source's resource `uid`, named by source uids (on a CODE target: the object with its code). */
  async read(type: ResourceType, uid: string): Promise<Resource | undefined> {
    if (!this.byCode) return fetchResource(this.server, type, uid);
    try {
      return (await this.bothSides(type, uid))[1];
    } catch (err) {
      throw err instanceof NotSyncable ? asFailure(err) : err;
    }
  }

  /** On a CODE target: the target's object (its own uids) with the code the source's resource has, or had when it was deleted. */
  private async heldByCode(type: ResourceType, uid: string, source: Resource | undefined): Promise<Resource | undefined> {
    let code: string | null | undefined;
    if (source) {
      const problem = codeProblem(source.code);
      if (problem) throw notSyncable(type, uid, this.name, problem);
      code = source.code as string;
    } else {
      code = await deletedCode(this.source, type, uid);
      if (code === undefined) {
        throw new NotSyncable(`${type} ${uid} is not on the source, and the source has no record of deleting it (GET /api/deletedObjects): target ${this.name} matches objects by code (idScheme CODE), so its copy there cannot be found. Delete it on the target by hand if it is there, then drop this change.`);
      }
      // Deleted without a code (or one no filter can ask for): it was never synced to a CODE target.
      if (code === null || codeProblem(code)) return undefined;
    }
    return findByCode(this.server, type, code);
  }

  /** POST /api/metadata with one resource; the report is checked (a 200 can still say ERROR). */
  async importResource(type: ResourceType, given: Resource): Promise<Written> {
    let resource = given;
    if (this.byCode) {
      const [translated] = await toTarget(this.source, this.server, this.name, type, [given]);
      if (translated.problem) return { ok: false, errors: [{ code: 'NotSyncable', message: translated.problem, uid: given.id }], message: translated.problem };
      if (translated.missing) return { ok: false, errors: translated.missing, message: translated.missing.map((e) => `${e.code} ${e.message}`).join('; ') };
      resource = translated.resource!;
    }
    const res = await call<{ status?: string; message?: string }>(this.server, 'POST', 'metadata', { query: metadataQuery, json: { [endpointOf[type]]: [resource] }, timeoutMs: 120_000, maxBytes: answerLimits.report });
    const status = typeof res.body === 'object' && res.body ? res.body.status : undefined;
    if (res.status === 200 && (status === 'OK' || status === 'SUCCESS')) return { ok: true };
    if (res.status === 200 || res.status === 409) {
      const errors = importErrors(res.body);
      return { ok: false, errors, message: `import of ${type} ${resource.id} answered HTTP ${res.status} status ${status ?? '?'}: ${errors.map((e) => `${e.code} ${e.message}`).join('; ') || snippet(res.text)}` };
    }
    throw refused(this.server, `answered POST /api/metadata with HTTP ${res.status}: ${snippet(res.text)}`);
  }

  async deleteResource(type: ResourceType, sourceUid: string): Promise<Written> {
    let uid = sourceUid;
    if (this.byCode) {
      let held: Resource | undefined;
      try {
        held = await this.heldByCode(type, sourceUid, await fetchResource(this.source, type, sourceUid));
      } catch (err) {
        if (err instanceof NotSyncable) return { ok: false, errors: [{ code: 'NotSyncable', message: err.message, uid: sourceUid }], message: err.message };
        throw err;
      }
      if (!held) return { ok: true };
      uid = held.id;
    }
    const res = await call(this.server, 'DELETE', `${endpointOf[type]}/${uid}`, { maxBytes: answerLimits.report });
    if (res.status === 200 || res.status === 204 || res.status === 404) return { ok: true };
    if (res.status === 409) {
      // DHIS2 answers a vetoed delete with a WebMessage carrying errorCode E4030, not an import report.
      const top = res.body as { errorCode?: unknown; message?: unknown } | undefined;
      const errors = importErrors(res.body);
      if (!errors.length && typeof top?.errorCode === 'string') {
        errors.push({ code: top.errorCode.slice(0, 20), message: typeof top.message === 'string' ? top.message.slice(0, 500) : 'no message', uid });
      }
      return { ok: false, errors, message: `delete of ${type} ${uid} answered HTTP 409: ${errors.map((e) => `${e.code} ${e.message}`).join('; ') || snippet(res.text)}` };
    }
    throw refused(this.server, `answered DELETE ${endpointOf[type]}/${uid} with HTTP ${res.status}: ${snippet(res.text)}`);
  }

  /** The stored draft, or undefined when there is none (deleted by hand, or never written). */
  async readDraft(type: ResourceType, uid: string): Promise<{ value: unknown } | undefined> {
    const res = await call(this.server, 'GET', draftPath(type, uid), { maxBytes: answerLimits.resource });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw refused(this.server, `answered GET /api/${draftPath(type, uid)} with HTTP ${res.status}: ${snippet(res.text)}`);
    return { value: res.body };
  }

  async writeDraft(type: ResourceType, uid: string, draft: unknown): Promise<void> {
    const res = await call(this.server, 'PUT', draftPath(type, uid), { json: draft });
    if (res.status === 404) {
      // DHIS2 before 2.40 does not create a key with PUT.
      const created = await call(this.server, 'POST', draftPath(type, uid), { json: draft });
      if (created.status !== 201 && created.status !== 200) throw refused(this.server, `did not store the draft (HTTP ${created.status}): ${snippet(created.text)}`);
    } else if (res.status !== 200 && res.status !== 201) {
      throw refused(this.server, `did not store the draft ${draftPath(type, uid)} (HTTP ${res.status}): ${snippet(res.text)}`);
    }
  }

  async deleteDraft(type: ResourceType, uid: string): Promise<void> {
    const res = await call(this.server, 'DELETE', draftPath(type, uid));
    if (res.status !== 200 && res.status !== 204 && res.status !== 404) throw refused(this.server, `did not delete the draft (HTTP ${res.status}): ${snippet(res.text)}`);
  }

  /** A message to the target's configured recipients (best effort: the sync itself already happened). */
  async notify(subject: string, text: string): Promise<void> {
    const { users, userGroups } = this.settings.notify;
    if (!users.length && !userGroups.length) return;
    const res = await call(this.server, 'POST', 'messageConversations', {
      json: { subject: subject.slice(0, 255), text, users: users.map((id) => ({ id })), userGroups: userGroups.map((id) => ({ id })) },
    });
    if (res.status !== 201 && res.status !== 200) throw refused(this.server, `did not take the notification (HTTP ${res.status}): ${snippet(res.text)}`);
  }

  /** Opens a ticket in the target's feedback inbox (the API answers without the ticket's id: find it by its subject). */
  async openTicket(subject: string, text: string): Promise<void> {
    const res = await call(this.server, 'POST', 'messageConversations/feedback', { query: { subject }, text });
    if (res.status !== 201 && res.status !== 200) throw refused(this.server, `did not open the approval ticket (HTTP ${res.status}): ${snippet(res.text)}`);
  }

  /** The ticket whose subject carries `[ref <ref>]`. */
  async findTicket(ref: string): Promise<string | undefined> {
    const res = await call<{ messageConversations?: Array<{ id?: unknown; subject?: unknown }> }>(this.server, 'GET', 'messageConversations', {
      query: { filter: `subject:like:[ref ${ref}]`, fields: 'id,subject', paging: 'false' }, maxBytes: answerLimits.report,
    });
    if (res.status !== 200) throw refused(this.server, `answered GET /api/messageConversations with HTTP ${res.status}: ${snippet(res.text)}`);
    const found = (res.body?.messageConversations ?? []).find((c) => typeof c.id === 'string' && uidPattern.test(c.id) && typeof c.subject === 'string' && c.subject.includes(`[ref ${ref}]`));
    return found?.id as string | undefined;
  }

  /** Assigns the ticket (POST /api/messageConversations/{uid}/assign): DHIS2 refuses (409) a user outside its feedback recipients group. */
  async assignTicket(ticket: string, userId: string): Promise<void> {
    const res = await call(this.server, 'POST', `messageConversations/${encodeURIComponent(ticket)}/assign`, { query: { userId } });
    if (res.status === 409) throw refused(this.server, `will not assign ticket ${ticket} to user ${userId}: ${snippet(res.text)} (add the user to the group of the feedbackRecipients setting, or change approval.assignee)`);
    if (res.status !== 200) throw refused(this.server, `did not assign ticket ${ticket} to user ${userId} (HTTP ${res.status}): ${snippet(res.text)}`);
  }

  async reply(ticket: string, text: string): Promise<void> {
    const res = await call(this.server, 'POST', `messageConversations/${encodeURIComponent(ticket)}`, { text });
    if (res.status === 404) throw refused(this.server, `no longer has the ticket ${ticket} (deleted by hand?)`);
    if (res.status !== 201 && res.status !== 200) throw refused(this.server, `did not take the reply to ticket ${ticket} (HTTP ${res.status}): ${snippet(res.text)}`);
  }

  async setTicketStatus(ticket: string, status: TicketStatus): Promise<void> {
    const res = await call(this.server, 'POST', `messageConversations/${encodeURIComponent(ticket)}/status`, { query: { messageConversationStatus: status } });
    if (res.status !== 200 && res.status !== 204) throw refused(this.server, `did not set ticket ${ticket} to ${status} (HTTP ${res.status}): ${snippet(res.text)}`);
  }
}

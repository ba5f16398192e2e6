/** FHIR R4 over HTTP as Firely Server answers it: OperationOutcome errors, headers, bundles, the CapabilityStatement. */
import type { Entry, Resource } from './entries';
import { fhirInstant } from './entries';

export const FHIR_JSON = 'application/fhir+json; fhirVersion=4.0; charset=utf-8';

/** The R4 resource types the simulator serves; any other type is a 404, as on a server that does not support it. */
export const RESOURCE_TYPES = [
  'AllergyIntolerance', 'Appointment', 'AuditEvent', 'Basic', 'Binary', 'CarePlan', 'CareTeam', 'Claim', 'Communication',
  'Composition', 'Condition', 'Consent', 'Coverage', 'Device', 'DiagnosticReport', 'DocumentReference', 'Encounter',
  'EpisodeOfCare', 'Goal', 'Group', 'HealthcareService', 'ImagingStudy', 'Immunization', 'Location', 'Medication',
  'MedicationAdministration', 'MedicationDispense', 'MedicationRequest', 'MedicationStatement', 'Observation',
  'Organization', 'Patient', 'Practitioner', 'PractitionerRole', 'Procedure', 'Provenance', 'Questionnaire',
  'QuestionnaireResponse', 'RelatedPerson', 'ServiceRequest', 'Specimen', 'Task',
];

export const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

export interface Reply { status: number; body?: unknown; headers?: Record<string, string> }

export type IssueCode = 'invalid' | 'not-found' | 'deleted' | 'not-supported' | 'conflict' | 'processing' | 'lock-error' | 'exception' | 'security' | 'informational';

export function operationOutcome(severity: 'error' | 'warning' | 'information', code: IssueCode, diagnostics: string) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

/** Thrown by a handler; the server answers it with an OperationOutcome of that status. */
export class FhirError extends Error {
  constructor(readonly status: number, readonly code: IssueCode, message: string) {
    super(message);
  }
  toReply(): Reply {
    return { status: this.status, body: operationOutcome('error', this.code, this.message) };
  }
}

export const invalid = (message: string) => new FhirError(400, 'invalid', message);
/** What the simulator answers for anything it does not implement: an error, never a lenient success. */
export const notImplemented = (what: string) => new FhirError(400, 'not-supported', `${what} is not implemented by the Firely Server simulator`);

export const etag = (e: Entry) => `W/"${e.ver}"`;

/** The headers of a response that carries one version of a resource. */
export function versionHeaders(base: string, e: Entry): Record<string, string> {
  return { ETag: etag(e), 'Last-Modified': e.lu.toUTCString(), Location: `${base}/${e.type}/${e.res_id}/_history/${e.ver}` };
}

const METHOD_OF = { created: 'POST', updated: 'PUT', deleted: 'DELETE' } as const;
const STATUS_OF = { created: '201', updated: '200', deleted: '204' } as const;

export function historyBundle(base: string, list: Entry[], applyDiffer: (r: Resource) => Resource) {
  return {
    resourceType: 'Bundle',
    type: 'history',
    total: list.length,
    entry: list.map((e) => ({
      fullUrl: `${base}/${e.type}/${e.res_id}`,
      ...(e.res ? { resource: applyDiffer(e.res) } : {}),
      request: { method: METHOD_OF[e.change], url: e.change === 'created' ? e.type : `${e.type}/${e.res_id}` },
      response: { status: STATUS_OF[e.change], etag: etag(e), lastModified: fhirInstant(e.lu) },
    })),
  };
}

export function capabilityStatement(base: string, name: string, version: string) {
  const interactions = ['read', 'vread', 'update', 'delete', 'history-instance', 'create', 'search-type'].map((code) => ({ code }));
  const searchParam = [
    { name: '_id', type: 'token' }, { name: '_tag', type: 'token' }, { name: '_lastUpdated', type: 'date' },
  ];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: fhirInstant(new Date()),
    kind: 'instance',
    software: { name: 'Firely Server', version },
    implementation: { description: `Firely Server simulator '${name}'`, url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{
      mode: 'server',
      resource: RESOURCE_TYPES.map((type) => ({ type, interaction: interactions, versioning: 'versioned', readHistory: true, updateCreate: true, searchParam })),
      operation: [{ name: 'liveness', definition: 'http://fire.ly/fhir/OperationDefinition/liveness' }, { name: 'readiness', definition: 'http://fire.ly/fhir/OperationDefinition/readiness' }],
    }],
  };
}

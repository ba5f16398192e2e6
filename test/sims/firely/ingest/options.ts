/**
 * Firely Server Ingest's command line, as its documentation lists it. The simulator implements the
 * MongoDB source (zero-downtime migration), the `None` source (provisioning only) and an empty
 * Filesystem source (the old provisioning recipe), with a MongoDB target. Everything else the real
 * tool accepts is recognised and refused with "not implemented by the simulator".
 */
import { boolOption, enumOption, intOption, parseOptions, UsageError } from '../args';

export const UPDATE_POLICIES = ['true', 'false', 'errorOnConflict', 'onlyIfNewer'] as const;
export type UpdatePolicy = (typeof UPDATE_POLICIES)[number];
export const POLICY_NAMES: Record<UpdatePolicy, string> = { true: 'true', false: 'false', errorOnConflict: 'ErrorOnConflict', onlyIfNewer: 'OnlyIfNewer' };

export interface IngestOptions {
  license: string;
  limit: number;
  fhirVersion: 'R3' | 'R4';
  updateExisting: UpdatePolicy;
  haltOnError: boolean;
  journalDir?: string;
  sourceType: 'Filesystem' | 'MongoDb' | 'SqlServer' | 'None';
  sourceDir?: string;
  source?: { url: string; collection: string; continuous: boolean };
  provisionTarget: boolean;
  target: { url: string; collection: string; batch: number };
  /** --extraParameters: an .ndjson file of custom SearchParameters to index at load time (firely-server-ingest.rst, "Custom Search Parameters"). */
  extraParameters?: string;
}

/** Accepted because the real tool has them; they tune parallelism and buffers, which the simulator does not model. */
const TUNING = ['--mongoPar', '--mongoExistQryPar', '--readBuffer', '--metaPar', '--metaBuffer', '--typePar', '--typeBuffer',
  '--absRelPar', '--absRelBuffer', '--indexPar', '--indexBuffer'];
const REFUSED = ['--settings', '--connectionstring', '--sqlPar', '--sqlBatch', '--sqlTimeout', '--sqlExistQryPar', '--urlConvBases', '--urlConvElems'];
const KNOWN = ['--license', '--limit', '--fhir-version', '--update-existing-resources', '--haltOnError', '--useRecoveryJournal', '--sourceType',
  '--source', '--srcMongoConnectionString', '--srcMongoCollection', '--srcMongoRunningMode', '--dbType', '--provisionTargetDatabase',
  '--mongoConnectionstring', '--mongoCollection', '--mongoBatch', '--extraParameters', '--OpenTelemetryOptions/EnableMetrics', '--OpenTelemetryOptions/Endpoint',
  ...TUNING, ...REFUSED];
const ALIASES = { '-l': '--limit', '-f': '--fhir-version', '-s': '--source', '-c': '--connectionstring' };

export const notImplemented = (what: string) => new UsageError(`${what} is not implemented by the Firely Server Ingest simulator.`);

/** Firely's connection strings name the database: mongodb://host:port/vonkdata. */
function mongoUrl(url: string, option: string): string {
  if (!/^mongodb(\+srv)?:\/\/[^/]+\/[^/?]+/.test(url)) throw new UsageError(`${option}: '${url}' must be a MongoDB connection string with the database name (mongodb://host:port/vonkdata).`);
  return url;
}

export function parseIngestOptions(argv: string[]): IngestOptions {
  const o = parseOptions(argv, KNOWN, ALIASES, ['--haltOnError', '--provisionTargetDatabase', '--OpenTelemetryOptions/EnableMetrics']);
  const need = (name: string, why = '') => {
    const v = o.get(name);
    if (!v) throw new UsageError(`Option '${name}' is required${why}.`);
    return v;
  };
  for (const name of REFUSED) if (o.has(name)) throw notImplemented(`The option ${name}`);
  for (const name of TUNING) intOption(o, name, 0, -1);
  if (boolOption(o, '--OpenTelemetryOptions/EnableMetrics', false)) throw notImplemented('OpenTelemetry metrics');

  const fhirVersion = enumOption(o, '--fhir-version', ['R3', 'R4'] as const, need('--fhir-version') as 'R4');
  if (fhirVersion === 'R3') throw notImplemented('--fhir-version R3');
  const sourceType = enumOption(o, '--sourceType', ['Filesystem', 'MongoDb', 'SqlServer', 'None'] as const, 'Filesystem');
  if (sourceType === 'SqlServer') throw notImplemented('--sourceType SqlServer');
  const dbType = enumOption(o, '--dbType', ['SQL', 'MongoDb'] as const, 'SQL');
  if (dbType === 'SQL') throw notImplemented('--dbType SQL (the default; pass --dbType MongoDb)');
  const provisionTarget = boolOption(o, '--provisionTargetDatabase', false);
  if (sourceType === 'None' && !provisionTarget) throw new UsageError(`--sourceType None only provisions the target database: add --provisionTargetDatabase true.`);

  return {
    license: need('--license'),
    limit: intOption(o, '--limit', -1, -1),
    fhirVersion,
    updateExisting: enumOption(o, '--update-existing-resources', UPDATE_POLICIES, 'true'),
    haltOnError: boolOption(o, '--haltOnError', false),
    journalDir: o.get('--useRecoveryJournal'),
    sourceType,
    sourceDir: sourceType === 'Filesystem' ? need('--source', " when --sourceType is Filesystem") : undefined,
    source: sourceType === 'MongoDb'
      ? { url: mongoUrl(need('--srcMongoConnectionString', ' when --sourceType is MongoDb'), '--srcMongoConnectionString'), collection: o.get('--srcMongoCollection') ?? 'vonkentries',
        continuous: enumOption(o, '--srcMongoRunningMode', ['AdHoc', 'Continuous'] as const, 'AdHoc') === 'Continuous' }
      : undefined,
    provisionTarget,
    target: { url: mongoUrl(need('--mongoConnectionstring'), '--mongoConnectionstring'), collection: o.get('--mongoCollection') ?? 'vonkentries', batch: intOption(o, '--mongoBatch', 500, 1) },
    extraParameters: o.get('--extraParameters'),
  };
}

export const USAGE = `Usage:
  fsi [options]

Options (implemented by the simulator):
  --license <license>                           Firely Server license file (required)
  -f, --fhir-version <R4>                       FHIR version of the input (required)
  -l, --limit <limit>                           Limit the number of resources to import [default: -1]
  --update-existing-resources <true|false|errorOnConflict|onlyIfNewer>   [default: true]
  --haltOnError <true|false>                    [default: false]
  --useRecoveryJournal <directory>              Recovery journal directory
  --sourceType <Filesystem|MongoDb|None>        [default: Filesystem; Filesystem only with an empty --source]
  --srcMongoConnectionString <url>              Source database (with its name: mongodb://host:port/vonkdata)
  --srcMongoCollection <name>                   [default: vonkentries]
  --srcMongoRunningMode <AdHoc|Continuous>      [default: AdHoc]
  --dbType <MongoDb>                            Target database type (SQL is not implemented)
  --provisionTargetDatabase <true|false>        [default: false]
  --mongoConnectionstring <url>                 Target database (with its name)
  --mongoCollection <name>                      [default: vonkentries]
  --mongoBatch <n>                              Resources per batch [default: 500]
  --version                                     Show version information
  -?, -h, --help                                Show help and usage information
`;

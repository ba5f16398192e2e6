/**
 * The log line format every process uses (workers/log.ts) and the metrics port variables: a bad
 * value names the variable and what to write; a line never carries a secret or a link token.
 */
import { formatLine, logFormat, redact } from '../workers/log';
import { metricsPort } from '../workers/metrics';

test('RUNBOOKS_LOG_FORMAT: json by default, text on request, anything else refused naming the variable', () => {
  expect(logFormat(undefined)).toBe('json');
  expect(logFormat('text')).toBe('text');
  expect(() => logFormat('yaml')).toThrow('RUNBOOKS_LOG_FORMAT is "yaml": write json (one JSON object per line) or text');
});

test('a line names the run the same way whatever the SDK called it: workflowId, runId, runbook, step', () => {
  const time = new Date('2026-12-07T10:00:00Z');
  const activity = { workflowId: 'w-1', workflowRunId: 'r-1', workflowType: 'promotePostgresStandby', step: 'promote', activityType: 'promote', attempt: 2 };
  expect(JSON.parse(formatLine('json', 'INFO', 'Activity started', activity, time))).toEqual({
    time: '2026-12-07T10:00:00.000Z', level: 'INFO', message: 'Activity started', workflowId: 'w-1', runId: 'r-1', runbook: 'promotePostgresStandby', step: 'promote', activityType: 'promote', attempt: 2,
  });
  expect(formatLine('text', 'WARN', 'Slow', { workflowId: 'w-1', note: 'two words' }, time)).toBe('2026-12-07T10:00:00.000Z WARN  Slow  workflowId=w-1 note="two words"\n');
});

test('secret values from the environment and link tokens never reach a line', () => {
  const secret = 'pw-Zx81kQ93hdf';
  process.env.RUNBOOKS_SECRET_TEST_LOG_REDACTION = secret;
  jest.isolateModules(() => {
    const { formatLine: fresh } = jest.requireActual('../workers/log') as typeof import('../workers/log');
    const line = fresh('json', 'ERROR', `login failed with ${secret}`, { url: 'https://gw.example/approve?t=eyJhbGciOi.abcdefghijklmnopqrstuv', auth: 'Bearer abcdefgh12345' });
    expect(line).not.toContain(secret);
    expect(line).not.toContain('abcdefghijklmnopqrstuv');
    expect(line).not.toContain('abcdefgh12345');
    expect(JSON.parse(line)).toMatchObject({ message: 'login failed with <redacted>', url: 'https://gw.example/approve?t=<redacted>', auth: 'Bearer <redacted>' });
  });
  delete process.env.RUNBOOKS_SECRET_TEST_LOG_REDACTION;
  expect(redact('nothing secret here')).toBe('nothing secret here');
});

test('metrics ports: unset is off, a port is taken, anything else refused naming the variable', () => {
  expect(metricsPort('worker', {})).toBeUndefined();
  expect(metricsPort('listener', { RUNBOOKS_LISTENER_METRICS_PORT: '9465' })).toBe(9465);
  expect(() => metricsPort('gateway', { RUNBOOKS_GATEWAY_METRICS_PORT: '99999' })).toThrow('RUNBOOKS_GATEWAY_METRICS_PORT is "99999": write a TCP port, 1 to 65535');
  expect(() => metricsPort('worker', { RUNBOOKS_WORKER_METRICS_PORT: '9464; rm' })).toThrow('RUNBOOKS_WORKER_METRICS_PORT is "9464; rm"');
});

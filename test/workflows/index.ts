/** The workflows of the test worker: every real runbook plus the test subjects. */
export * from '../../workflows';
export * from './platform';
export * from './gated';
export * from './floor';
export * from './hostile';

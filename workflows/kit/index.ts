export * from './messages';
export * from './runbook';
export * from './approval';
export * from './input';
export * from './activities';
export * from './search-attributes';

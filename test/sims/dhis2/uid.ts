/** DHIS2 uids: a letter, then 10 letters or digits (CodeGenerator in DHIS2). */
import { randomInt } from 'node:crypto';

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const ALPHANUMERIC = `0123456789${LETTERS}`;

export function generateUid(): string {
  let uid = LETTERS[randomInt(LETTERS.length)];
  for (let i = 0; i < 10; i++) uid += ALPHANUMERIC[randomInt(ALPHANUMERIC.length)];
  return uid;
}

export const isValidUid = (value: unknown): value is string => typeof value === 'string' && /^[A-Za-z][A-Za-z0-9]{10}$/.test(value);

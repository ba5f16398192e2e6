/** Damages a copied IRIS.DAT the way a bad transfer would: one byte in the middle flipped, size kept. */
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';

export function corruptFile(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    const at = Math.floor(statSync(file).size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally { closeSync(fd); }
}

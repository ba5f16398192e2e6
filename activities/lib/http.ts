/**
 * Reading HTTP bodies from peers nobody trusts (answers to the worker, forms to the approval
 * gateway): every body is read up to a limit the call chooses (what its answer needs, never more),
 * and JSON is parsed only when its shape is bounded too — a few MB of `[{},{},…]` would otherwise
 * cost twenty times that in heap.
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** 262144 -> "256 KiB", for messages. */
export function sizeOf(bytes: number): string {
  return bytes >= MiB && bytes % MiB === 0 ? `${bytes / MiB} MiB` : bytes >= KiB && bytes % KiB === 0 ? `${bytes / KiB} KiB` : `${bytes} bytes`;
}

/** An answer, or its JSON, past what the call accepts: the message names the limit and what was cut. */
export class AnswerTooLarge extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AnswerTooLarge';
  }
}

/**
 * The body as text, or AnswerTooLarge once it passes `limit` bytes: the rest is not read (leaving
 * the loop destroys the stream). `onChunk` sees each chunk's size before it is kept (a budget shared
 * by many calls may refuse it by throwing).
 */
export async function readLimited(body: AsyncIterable<Buffer>, limit: number, onChunk?: (bytes: number) => void): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new AnswerTooLarge(`answer larger than ${sizeOf(limit)}, the most this call accepts (cut there: the rest was not read)`);
    onChunk?.(chunk.length);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Deeper than any answer we read (DHIS2 and FHIR resources nest a handful of levels). */
const maxDepth = 64;
/**
 * At most one object or array per 16 bytes of what the call accepts: real answers have far fewer
 * (`{"id":"ImspTQPwCqd"}` is 20 bytes, a coordinate pair ~18), and with it a parsed answer costs at
 * most ~8× its size in heap instead of ~22× for `{},{},…` (measured on Node 20).
 */
const bytesPerContainer = 16;

/**
 * JSON.parse for an answer read with readLimited(…, `limit`): refused with AnswerTooLarge, before
 * anything is built, when it nests deeper than 64 or holds more objects and arrays than `limit`
 * allows. Invalid JSON throws JSON.parse's SyntaxError, as JSON.parse does.
 */
export function parseLimited(text: string, limit: number): unknown {
  const maxContainers = Math.max(64, Math.floor(limit / bytesPerContainer));
  let depth = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (++depth > maxDepth) throw new AnswerTooLarge(`JSON nested deeper than ${maxDepth} levels, the most an answer may be (not parsed)`);
      if (++containers > maxContainers) {
        throw new AnswerTooLarge(`JSON with more than ${maxContainers} objects and arrays, the most an answer of at most ${sizeOf(limit)} may hold (not parsed)`);
      }
    } else if (c === 0x7d || c === 0x5d) { // } ]
      depth--;
    }
  }
  return JSON.parse(text);
}

/**
 * Bytes of answers held by many calls at once, at most `total`: each call takes what it reads and
 * gives it back once parsed. A call that would pass the total is refused (its caller retries
 * later), so the worker's memory for these answers is bounded whatever the number of peers.
 */
export class ByteBudget {
  private held = 0;

  constructor(readonly total: number) {}

  /** A lease for one call: `take` as chunks arrive (throws past the total), `release` once done. */
  lease(onFull: (held: number) => Error): { take(bytes: number): void; release(): void } {
    let taken = 0;
    return {
      take: (bytes) => {
        if (this.held + bytes > this.total) throw onFull(this.held);
        this.held += bytes;
        taken += bytes;
      },
      release: () => {
        this.held -= taken;
        taken = 0;
      },
    };
  }
}

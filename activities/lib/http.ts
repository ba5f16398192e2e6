/** Reading HTTP bodies from peers nobody trusts: answers to the worker, forms to the approval gateway. */

/** A body past the reader's limit. */
export class TooLarge extends Error {
  constructor(limit: number) {
    super(`answer larger than ${limit} bytes`);
  }
}

/** The body as text, or TooLarge once it passes `limit` bytes (a hostile peer must not fill the worker's or the gateway's memory). */
export async function readLimited(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new TooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

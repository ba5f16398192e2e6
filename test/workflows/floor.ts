/**
 * The Temporal floor of the org-unit sync benchmark: an entity workflow that, for each signal,
 * makes one pass with a local activity that does nothing: what Temporal alone costs per change.
 * It ends after the pass that follows its `expected`-th signal.
 */
import { condition, defineQuery, defineSignal, proxyLocalActivities, setHandler } from '@temporalio/workflow';

export const floorPokeSignal = defineSignal<[]>('floorPoke');
const local = proxyLocalActivities<{ floorNoop(): Promise<void> }>({ startToCloseTimeout: '10 seconds' });

export async function signalFloor(expected: number): Promise<void> {
  let received = 0;
  let pending = false;
  setHandler(floorPokeSignal, () => { received += 1; pending = true; });
  for (;;) {
    await condition(() => pending);
    pending = false;
    const seen = received;
    await local.floorNoop();
    if (seen >= expected) return;
  }
}

export const echoSignal = defineSignal<[]>('echo');
export const echoReadyQuery = defineQuery<boolean>('ready');

/** The floor of the approval benchmark: a run that ends as soon as it is signalled (a raw signal round trip). */
export async function signalEcho(): Promise<void> {
  let poked = false;
  setHandler(echoSignal, () => { poked = true; });
  setHandler(echoReadyQuery, () => true);
  await condition(() => poked);
}

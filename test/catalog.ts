/** The CLI's catalog in tests (RUNBOOKS_CATALOG): the real runbooks plus the test subjects. */
import { catalog as real, type CatalogEntry } from '../contracts/catalog';
import { echoInput, gatedInput, journaledInput } from './workflows/schemas';

export const catalog: CatalogEntry[] = [
  ...real,
  { name: 'echoWorkflow', title: 'Echo (test)', schema: echoInput, example: 'test/fixtures/echo.json' },
  { name: 'journaledWorkflow', title: 'Three journaled activities (test)', schema: journaledInput, example: 'test/fixtures/journaled.json' },
  { name: 'gatedRunbook', title: 'Test runbook with a gate', schema: gatedInput, example: 'test/fixtures/gated.json' },
];

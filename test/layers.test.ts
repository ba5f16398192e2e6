/**
 * The house's floors (../shared/DESIGN.md): data flows one way, so each floor imports only what is
 * below it. contracts/ is the ground floor; workflows see activities only as types; activities and
 * workers never reach up into workflows or scripts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const root = path.resolve(__dirname, '..');
type Floor = 'contracts' | 'workflows' | 'activities' | 'workers' | 'scripts';
/** Where an import can lead: a floor, or the tests' labs and simulators (which only the benchmarks borrow). */
type Place = Floor | 'test';

/** What each floor may import: always (values and types), and as types only. */
const allowed: Record<Floor, { values: Place[]; types: Place[] }> = {
  contracts: { values: ['contracts'], types: [] },
  workflows: { values: ['contracts', 'workflows'], types: ['activities'] },
  activities: { values: ['contracts', 'activities'], types: [] },
  workers: { values: ['contracts', 'activities', 'workers'], types: [] },
  scripts: { values: ['contracts', 'activities', 'workers', 'scripts', 'test'], types: ['workflows'] },
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

interface Import { from: string; to: string; typeOnly: boolean; line: number }

/** Every relative import of a file (import, export … from, require(), import()), and whether it brings types only. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: Import[] = [];
  const add = (spec: ts.Expression | undefined, typeOnly: boolean, node: ts.Node) => {
    if (!spec || !ts.isStringLiteral(spec) || !spec.text.startsWith('.')) return;
    const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
    found.push({ from: file, to: path.resolve(path.dirname(file), spec.text), typeOnly, line });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, typeOnly, node);
    } else if (ts.isExportDeclaration(node)) {
      const named = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : undefined;
      add(node.moduleSpecifier, node.isTypeOnly || (!!named && named.length > 0 && named.every((e) => e.isTypeOnly)), node);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) add(node.arguments[0], false, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal as ts.Expression, true, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const placeOf = (file: string): Place | undefined => {
  const top = path.relative(root, file).split(path.sep)[0];
  return ([...Object.keys(allowed), 'test'] as Place[]).find((f) => f === top);
};

test('every floor imports only the floors below it', () => {
  const floors = Object.keys(allowed) as Floor[];
  const upward: string[] = [];
  let counted = 0;
  for (const floor of floors) {
    for (const file of sourceFiles(path.join(root, floor))) {
      for (const imp of importsOf(file)) {
        counted++;
        const to = placeOf(imp.to);
        if (!to) {
          upward.push(`${path.relative(root, file)}:${imp.line} imports ${path.relative(root, imp.to)}, outside the floors`);
          continue;
        }
        const rule = allowed[floor];
        if (rule.values.includes(to) || (imp.typeOnly && rule.types.includes(to))) continue;
        upward.push(`${path.relative(root, file)}:${imp.line} imports ${imp.typeOnly ? 'types from ' : ''}${path.relative(root, imp.to)} (${floor} may not import ${to})`);
      }
    }
  }
  expect(counted).toBeGreaterThan(200);
  expect(upward).toEqual([]);
});

test('the check sees value imports, type-only imports, re-exports and require() for what they are', () => {
  const file = path.join(root, 'activities/example.ts');
  const found = importsOf(file, [
    "import type { A } from '../workflows/a';",
    "import { type B, type C } from '../workflows/b';",
    "import { d, type E } from '../workflows/d';",
    "export { f } from '../workflows/f';",
    "const g = require('../workflows/g');",
    "import h from 'zod';",
  ].join('\n'));
  expect(found.map((i) => [path.relative(root, i.to), i.typeOnly])).toEqual([
    ['workflows/a', true], ['workflows/b', true], ['workflows/d', false], ['workflows/f', false], ['workflows/g', false],
  ]);
});

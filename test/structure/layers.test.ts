// The layer order of src/ (src/index.ts): every import points down. A module may import modules of
// its own layer and of lower layers only; the base layers (stream, xen, transport) are independent.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '../../src');

/** Rank of each layer: an import must go to the same layer or to a lower rank. */
const RANK: Record<string, number> = {
  constants: -1,
  stream: 0,
  xen: 0,
  transport: 0,
  netbuf: 1,
  engine: 1,
  toolstack: 2,
  disk: 3,
  checkpoint: 4,
  api: 5,
  index: 6,
  cli: 6,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/**
 * The layer of a file under src/: its first directory, or the file's own name at the top. The Xen
 * constants (xen/constants.ts) are below every layer: any module may import them, they import nothing.
 */
export function layerOf(file: string): string {
  const parts = relative(SRC, file).split(sep);
  if (parts.join('/') === 'xen/constants.ts') return 'constants';
  return parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!;
}

/** Every relative module specifier of a file: static imports, re-exports and dynamic imports. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      out.push((node.moduleSpecifier as ts.StringLiteral).text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteral(arg)) out.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

/** Imports that climb: from a layer to a higher one, or between two different layers of one rank. */
export function upwardImports(files: { file: string; imports: string[] }[]): string[] {
  const bad: string[] = [];
  for (const { file, imports } of files) {
    const from = layerOf(file);
    for (const target of imports) {
      const to = layerOf(target);
      if (to === from) continue;
      const [rf, rt] = [RANK[from], RANK[to]];
      if (rf === undefined || rt === undefined || rt >= rf) {
        bad.push(`${relative(SRC, file)} (${from}) imports ${relative(SRC, target)} (${to})`);
      }
    }
  }
  return bad;
}

describe('layers', () => {
  const files = sourceFiles(SRC).map((file) => ({ file, imports: importsOf(file) }));

  it('every file of src/ belongs to a known layer', () => {
    const unknown = files.map((f) => layerOf(f.file)).filter((l) => RANK[l] === undefined);
    expect(unknown).toEqual([]);
  });

  it('every import points down', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(upwardImports(files)).toEqual([]);
  });

  it('finds an upward import, a dynamic one and one between base layers', () => {
    const f = (p: string) => join(SRC, p);
    const bad = upwardImports([
      {
        file: f('checkpoint/remus.ts'),
        imports: importsOf(f('checkpoint/remus.ts'), "import { openXen } from '../api.js';"),
      },
      {
        file: f('engine/x.ts'),
        imports: importsOf(f('engine/x.ts'), "const m = await import('../toolstack/save.js');"),
      },
      {
        file: f('stream/x.ts'),
        imports: importsOf(f('stream/x.ts'), "export { a } from '../transport/io.js';"),
      },
      { file: f('api.ts'), imports: importsOf(f('api.ts'), "import { x } from './toolstack/host.js';") },
      {
        file: f('stream/y.ts'),
        imports: importsOf(f('stream/y.ts'), "import { PAGE_SIZE } from '../xen/constants.js';"),
      },
      {
        file: f('xen/constants.ts'),
        imports: importsOf(f('xen/constants.ts'), "import { x } from './types.js';"),
      },
    ]);
    expect(bad).toEqual([
      'checkpoint/remus.ts (checkpoint) imports api.ts (api)',
      'engine/x.ts (engine) imports toolstack/save.ts (toolstack)',
      'stream/x.ts (stream) imports transport/io.ts (transport)',
      'xen/constants.ts (constants) imports xen/types.ts (xen)',
    ]);
  });
});

#!/usr/bin/env node
// Measures the length (in lines) of every function in src/ and the size of every file, with the
// TypeScript compiler API. Prints the largest ones; with --max N, exits 1 when a function is longer
// than N lines, except the ones listed with --allow NAME (repeatable, "file:name").
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const args = process.argv.slice(2);
const root = new URL('..', import.meta.url).pathname;
let max = 0;
let top = 15;
const allow = new Set();
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--max') max = Number(args[++i]);
  else if (args[i] === '--top') top = Number(args[++i]);
  else if (args[i] === '--allow') allow.add(args[++i]);
  else if (args[i] === '--json') continue;
  else throw new Error(`unknown argument ${args[i]}`);
}
const json = args.includes('--json');

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

function nameOf(node) {
  if (node.name && ts.isIdentifier(node.name)) return node.name.text;
  if (node.name && ts.isStringLiteral(node.name)) return node.name.text;
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const p = node.parent;
  if (p && ts.isVariableDeclaration(p) && ts.isIdentifier(p.name)) return p.name.text;
  if (p && (ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) && p.name && ts.isIdentifier(p.name)) {
    return p.name.text;
  }
  return '<anonymous>';
}

const fns = [];
const sizes = [];
for (const file of files(join(root, 'src'))) {
  const text = readFileSync(file, 'utf8');
  const rel = relative(root, file);
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  sizes.push({ file: rel, lines: sf.getLineAndCharacterOfPosition(text.length).line });
  const visit = (node, outer) => {
    let name = outer;
    if (ts.isFunctionLike(node) && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const own = nameOf(node);
      name = outer && own === '<anonymous>' ? `${outer}/<anonymous>` : outer ? `${outer}.${own}` : own;
      fns.push({ file: rel, name, line: start + 1, lines: end - start + 1 });
    } else if (ts.isClassDeclaration(node) && node.name) {
      name = node.name.text;
    }
    ts.forEachChild(node, (c) => visit(c, name));
  };
  visit(sf, '');
}
fns.sort((a, b) => b.lines - a.lines);
sizes.sort((a, b) => b.lines - a.lines);
if (json) {
  console.log(JSON.stringify({ functions: fns.slice(0, top), files: sizes.slice(0, top) }, null, 2));
} else {
  console.log('largest functions (lines):');
  for (const f of fns.slice(0, top))
    console.log(`  ${String(f.lines).padStart(4)}  ${f.file}:${f.line}  ${f.name}`);
  console.log('largest files (lines):');
  for (const f of sizes.slice(0, top)) console.log(`  ${String(f.lines).padStart(4)}  ${f.file}`);
}
if (max > 0) {
  const over = fns.filter((f) => f.lines > max && !allow.has(`${f.file}:${f.name}`));
  for (const f of over) console.error(`${f.file}:${f.line}: ${f.name} is ${f.lines} lines (> ${max})`);
  if (over.length > 0) process.exit(1);
}

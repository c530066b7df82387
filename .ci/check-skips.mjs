// After `vitest run --reporter=json`: fail when a test skipped that must run on this machine. The
// tests allowed to skip, and why, are listed in test/allowed-skips.json; everything else that did
// not run is named here and fails CI.
import { readFileSync } from 'node:fs';

const [report, allowFile = 'test/allowed-skips.json'] = process.argv.slice(2);
const r = JSON.parse(readFileSync(report, 'utf8'));
const allowed = JSON.parse(readFileSync(allowFile, 'utf8')).allowed.map((a) => ({
  ...a,
  re: new RegExp(a.test),
}));
const skipped = [];
for (const file of r.testResults ?? [])
  for (const t of file.assertionResults ?? [])
    if (t.status === 'skipped' || t.status === 'pending' || t.status === 'todo')
      skipped.push(`${file.name.replace(process.cwd() + '/', '')} > ${t.fullName}`);
const bad = skipped.filter((s) => !allowed.some((a) => a.re.test(s)));
for (const s of skipped) console.log(`${bad.includes(s) ? 'NOT ALLOWED' : 'allowed'} skip: ${s}`);
console.log(
  `check-skips: ${r.numTotalTests} tests, ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped.length} skipped (${bad.length} not allowed)`,
);
if (r.numTotalTests === 0) {
  console.error('check-skips: no test ran');
  process.exit(1);
}
if (bad.length) {
  console.error('check-skips: tests that must run on this machine skipped (see test/allowed-skips.json)');
  process.exit(1);
}

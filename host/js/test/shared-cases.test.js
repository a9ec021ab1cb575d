// Runs the shared cases (tests/cases/*.json at the repository root, the
// format is in tests/cases/README.md) against the Node host: one test per
// case, one suite per file. The Rust host runs the very same files.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { createHost } from '../src/host.js';
import { runCase } from './case-format.js';

const CASES = new URL('../../../tests/cases/', import.meta.url);

const files = readdirSync(CASES)
  .filter((f) => f.endsWith('.json'))
  .sort();

let host;
before(async () => {
  host = await createHost();
});
after(async () => {
  await host?.shutdown();
});

test('the case files are there', () => {
  assert.ok(files.length > 0, `no case file in ${CASES.pathname}`);
});

for (const file of files) {
  const spec = JSON.parse(readFileSync(new URL(file, CASES), 'utf8'));
  describe(`${file}: ${spec.description}`, () => {
    for (const kase of spec.cases) {
      test(kase.name, () => runCase(host, kase, file));
    }
  });
}

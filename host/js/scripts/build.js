// Transpiles the guest component with jco into gen/, from the very .wasm
// the Rust host embeds, and records the source's SHA-256 so that
// src/host.js can refuse a stale gen/. Without an argument, the Rust
// binary (built by cargo) writes its embedded guest to target/wasm/ first
// (`sandbox-process export-wasm target/wasm`).
//
//   node scripts/build.js [path/to/sandbox_process_guest.wasm]

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const repo = resolve(pkg, '../..');
const out = join(pkg, 'gen');

if (process.argv[2] === undefined) {
  // Built the way `cargo test` builds it (dev-dependencies' features
  // unified), so that after the README's test command this is no rebuild.
  const built = spawnSync('cargo', ['test', '--quiet', '--workspace', '--no-run'], {
    cwd: repo,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const targetDir = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
  const exported =
    built.status === 0 &&
    spawnSync(join(targetDir, 'debug/sandbox-process'), ['export-wasm', join(repo, 'target/wasm')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }).status === 0;
  if (!exported) {
    console.error('error: building sandbox-process or `sandbox-process export-wasm target/wasm` failed (see above)');
    process.exit(1);
  }
}
const wasm = resolve(process.argv[2] ?? join(repo, 'target/wasm/sandbox_process_guest.wasm'));
if (!existsSync(wasm)) {
  console.error(`error: ${relative(process.cwd(), wasm)} does not exist.`);
  process.exit(1);
}

// jco's CLI, run by this Node: the version is the one package-lock.json pins.
// (jco's `exports` hide its package.json from require.resolve.)
const jcoPackage = join(pkg, 'node_modules/@bytecodealliance/jco/package.json');
if (!existsSync(jcoPackage)) {
  console.error('error: @bytecodealliance/jco is not installed; run `npm ci` in host/js first.');
  process.exit(1);
}
const jcoBin = join(dirname(jcoPackage), JSON.parse(readFileSync(jcoPackage, 'utf8')).bin.jco);

rmSync(out, { recursive: true, force: true });
const args = [
  jcoBin,
  'transpile',
  wasm,
  '--out-dir',
  out,
  '--name',
  'guest',
  // The importer passes the guest's one import (the process capability)
  // to `instantiate`, so that each host brings its own capability object.
  '--instantiation',
  'async',
  '--quiet',
];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (result.status !== 0) {
  console.error(`error: jco transpile failed (${result.status ?? result.signal})`);
  process.exit(1);
}

const bytes = readFileSync(wasm);
const stamp = {
  source: relative(repo, wasm),
  sha256: createHash('sha256').update(bytes).digest('hex'),
  bytes: bytes.length,
  jco: JSON.parse(readFileSync(jcoPackage, 'utf8')).version,
};
writeFileSync(join(out, 'source.json'), JSON.stringify(stamp, null, 2) + '\n');
console.log(`transpiled ${stamp.source} (${stamp.bytes} bytes, sha256 ${stamp.sha256.slice(0, 12)}…) into gen/`);

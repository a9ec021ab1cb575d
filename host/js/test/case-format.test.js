// The shared-case format's own rules, so that a runner bug can't make every
// case pass: the pattern matcher and the body encodings.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bodyOf, checkStep, mismatch, substitute } from './case-format.js';

test('objects match on the pattern keys; extra keys are fine, missing ones are not', () => {
  assert.equal(mismatch({ a: 1 }, { a: 1, b: 2 }), null);
  assert.match(mismatch({ a: 1, c: 3 }, { a: 1 }), /\$\.c: missing/);
  assert.match(mismatch({ a: { b: 1 } }, { a: { b: 2 } }), /\$\.a\.b/);
  assert.notEqual(mismatch({}, []), null);
  assert.notEqual(mismatch({}, null), null);
});

test('arrays match element-wise with the same length', () => {
  assert.equal(mismatch([1, '<any>'], [1, 'x']), null);
  assert.notEqual(mismatch([1], [1, 2]), null);
  assert.notEqual(mismatch([], {}), null);
  assert.notEqual(mismatch(['a', 'b'], ['b', 'a']), null);
});

test('"<any>" and "<number>"; everything else by equality', () => {
  assert.equal(mismatch('<any>', null), null);
  assert.equal(mismatch({ a: '<any>' }, { a: [1] }), null);
  assert.equal(mismatch('<number>', 0), null);
  assert.notEqual(mismatch('<number>', '1'), null);
  assert.notEqual(mismatch('<number>', null), null);
  assert.equal(mismatch(null, null), null);
  assert.notEqual(mismatch(null, 0), null);
  assert.notEqual(mismatch(false, null), null);
  assert.notEqual(mismatch('1', 1), null);
});

test('bodies: body compact JSON, raw as UTF-8, raw_hex as bytes', () => {
  const text = (b) => new TextDecoder().decode(b);
  assert.equal(text(bodyOf({ body: { command: 'echo', args: ['a b'] } })), '{"command":"echo","args":["a b"]}');
  assert.equal(text(bodyOf({ body: null })), 'null');
  assert.equal(text(bodyOf({ raw: '{"x": é' })), '{"x": é');
  assert.equal(bodyOf({ raw: '' }).length, 0);
  assert.deepEqual([...bodyOf({ raw_hex: '7bff7d' })], [0x7b, 0xff, 0x7d]);
});

test('steps outside the format are refused', () => {
  checkStep({ call: 'get', ref: '1', expect: { status: 200 } });
  checkStep({ call: 'await_exit', ref: '$pid' });
  assert.throws(() => checkStep({ call: 'gett', ref: '1', expect: { status: 200 } }), /unknown call/);
  assert.throws(() => checkStep({ call: 'get', ref: '1', expct: { status: 200 } }), /takes no/);
  assert.throws(() => checkStep({ call: 'get', ref: '1', expect: { status: 200, json_contains: {} } }), /unknown expect key/);
  assert.throws(() => checkStep({ call: 'get', expect: { status: 200 } }), /needs a string "ref"/);
  assert.throws(() => checkStep({ call: 'start', body: {}, raw: '', expect: { status: 400 } }), /exactly one/);
  assert.throws(() => checkStep({ call: 'health', expect: {} }), /status/);
  assert.throws(() => bodyOf({ raw_hex: 'zz' }), /not hex/);
});

test('placeholders are replaced in every string; unknown, unclosed or valueless ones are refused', () => {
  const values = { HOME: '/home/ada', USER: null };
  assert.deepEqual(substitute({ status: 200, json: { lines: ['HOME={{HOME}}:{{HOME}}', 1, null] } }, values), {
    status: 200,
    json: { lines: ['HOME=/home/ada:/home/ada', 1, null] },
  });
  assert.equal(substitute('no placeholder', values), 'no placeholder');
  assert.throws(() => substitute(['{{home}}'], values), /unknown placeholder \{\{home\}\}/);
  assert.throws(() => substitute('{{HOME', values), /unclosed placeholder/);
  assert.throws(() => substitute({ a: '{{USER}}' }, values), /\{\{USER\}\} has no value/);
});

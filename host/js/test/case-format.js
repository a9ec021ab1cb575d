// The shared case format (tests/cases/README.md), as the Node runner
// reads it: bodies, the JSON pattern matcher, the checks of an `expect`,
// and the steps of one case against a Host.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

/** How long an `await_exit` step waits, as the format says. */
export const AWAIT_EXIT_MS = 10_000;

/** The body of a step as bytes: `raw`, `raw_hex`, or `body` serialized compactly. */
export function bodyOf(step) {
  if ('raw' in step) return new TextEncoder().encode(step.raw);
  if ('raw_hex' in step) {
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(step.raw_hex)) throw new Error(`raw_hex is not hex: ${step.raw_hex}`);
    return new Uint8Array(Buffer.from(step.raw_hex, 'hex'));
  }
  if ('body' in step) return new TextEncoder().encode(JSON.stringify(step.body));
  throw new Error('the step has no body, raw or raw_hex');
}

/**
 * Whether `value` matches `pattern`: an object matches when every key of
 * the pattern is there and matches; an array element-wise with the same
 * length; "<any>" anything; "<number>" any number; else equality.
 * Returns a description of the first mismatch, or null.
 */
export function mismatch(pattern, value, path = '$') {
  if (pattern === '<any>') return null;
  if (pattern === '<number>') return typeof value === 'number' ? null : `${path}: expected a number, got ${JSON.stringify(value)}`;
  if (Array.isArray(pattern)) {
    if (!Array.isArray(value)) return `${path}: expected an array, got ${JSON.stringify(value)}`;
    if (value.length !== pattern.length) return `${path}: expected ${pattern.length} elements, got ${value.length}: ${JSON.stringify(value)}`;
    for (let i = 0; i < pattern.length; i++) {
      const m = mismatch(pattern[i], value[i], `${path}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (pattern !== null && typeof pattern === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return `${path}: expected an object, got ${JSON.stringify(value)}`;
    for (const key of Object.keys(pattern)) {
      if (!Object.hasOwn(value, key)) return `${path}.${key}: missing`;
      const m = mismatch(pattern[key], value[key], `${path}.${key}`);
      if (m) return m;
    }
    return null;
  }
  return pattern === value ? null : `${path}: expected ${JSON.stringify(pattern)}, got ${JSON.stringify(value)}`;
}

let placeholderValues = null;

/**
 * The placeholders' values (the format's README), found without the
 * host's code: the user database through `getent`, not os.userInfo(); this
 * process's PATH. null for a name the machine gives no value (no entry).
 */
export function placeholders() {
  if (placeholderValues) return placeholderValues;
  const uid = process.geteuid();
  let fields = [];
  try {
    fields = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8' }).trimEnd().split(':');
  } catch (error) {
    if (error.status !== 2) throw error; // 2: no entry
  }
  const field = (i) => fields[i] || null;
  placeholderValues = {
    HOME: field(5) ?? '/',
    USER: field(0),
    LOGNAME: field(0),
    SHELL: field(6) ?? '/bin/sh',
    PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin',
  };
  return placeholderValues;
}

/**
 * `value` with every `{{NAME}}` in its strings replaced by `values[NAME]`;
 * an unknown name, or one without a value, throws naming it.
 */
export function substitute(value, values = placeholders()) {
  if (typeof value === 'string') {
    if (/\{\{(?![^{}]*\}\})/.test(value)) throw new Error(`unclosed placeholder in ${JSON.stringify(value)}`);
    return value.replace(/\{\{([^{}]*)\}\}/g, (_, name) => {
      if (!Object.hasOwn(values, name)) throw new Error(`unknown placeholder {{${name}}}`);
      if (values[name] == null) throw new Error(`{{${name}}} has no value: the user running the tests has no user database entry`);
      return values[name];
    });
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, values));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, values)]));
  }
  return value;
}

/** Checks one reply against a step's `expect`. */
export function check(reply, expect, where) {
  const show = `${where}: got ${reply.status} ${reply.body}`;
  assert.equal(reply.status, expect.status, show);
  if (reply.status === 204) {
    assert.equal(reply.body, '', `${show}: a 204 reply has an empty body`);
  }
  const needsJson = ['code', 'error_contains', 'json', 'keys'].some((k) => k in expect);
  if (!needsJson) return;
  let body;
  try {
    body = JSON.parse(reply.body);
  } catch {
    assert.fail(`${show}: the body is not JSON`);
  }
  if ('code' in expect) assert.equal(body?.code, expect.code, show);
  if ('error_contains' in expect) {
    assert.equal(typeof body?.error, 'string', `${show}: no error message`);
    assert.ok(body.error.includes(expect.error_contains), `${show}: the error should mention ${JSON.stringify(expect.error_contains)}`);
  }
  if ('keys' in expect) {
    assert.deepEqual(Object.keys(body ?? {}).sort(), [...expect.keys].sort(), `${show}: keys`);
  }
  if ('json' in expect) {
    const m = mismatch(expect.json, body);
    assert.equal(m, null, `${show}: ${m}`);
  }
}

/** The arguments each call takes besides `call` and `expect`. */
const ARGUMENTS = {
  start: ['body'],
  validate: ['body'],
  signal: ['ref', 'body'],
  get: ['ref'],
  kill: ['ref'],
  close_stdin: ['ref'],
  write_stdin: ['ref', 'data'],
  output: ['ref', 'selector'],
  list: [],
  health: [],
  await_exit: ['ref'],
};
const BODY_KEYS = ['body', 'raw', 'raw_hex'];
const EXPECT_KEYS = ['status', 'code', 'error_contains', 'json', 'keys'];

/** Refuses a step that is not in the format (a typo would test nothing). */
export function checkStep(step) {
  const args = ARGUMENTS[step.call];
  if (!args) throw new Error(`unknown call ${JSON.stringify(step.call)}`);
  const allowed = new Set(['call', ...args.flatMap((a) => (a === 'body' ? BODY_KEYS : [a]))]);
  if (step.call !== 'await_exit') allowed.add('expect');
  for (const key of Object.keys(step)) if (!allowed.has(key)) throw new Error(`${step.call} takes no ${JSON.stringify(key)}`);
  for (const arg of args) {
    if (arg === 'body') {
      const given = BODY_KEYS.filter((k) => k in step);
      if (given.length !== 1) throw new Error(`${step.call} needs exactly one of body, raw, raw_hex`);
    } else if (typeof step[arg] !== 'string') {
      throw new Error(`${step.call} needs a string ${JSON.stringify(arg)}`);
    }
  }
  if (step.call === 'await_exit') return;
  if (!step.expect || typeof step.expect.status !== 'number') throw new Error(`${step.call} needs "expect" with a "status"`);
  for (const key of Object.keys(step.expect)) {
    if (!EXPECT_KEYS.includes(key)) throw new Error(`unknown expect key ${JSON.stringify(key)}`);
  }
}

/** Runs the steps of one case against `host`. */
export async function runCase(host, kase, file) {
  let pid = null;
  const refOf = (step) => {
    assert.equal(typeof step.ref, 'string', 'the step needs a "ref" string');
    return pid === null ? step.ref : step.ref.replaceAll('$pid', String(pid));
  };
  for (const [i, step] of kase.steps.entries()) {
    const where = `${file} / ${kase.name} / step ${i} (${step.call})`;
    try {
      checkStep(step);
    } catch (error) {
      assert.fail(`${where}: ${error.message}`);
    }
    let reply;
    switch (step.call) {
      case 'start':
        reply = host.start(bodyOf(step));
        if (reply.status === 201) pid = JSON.parse(reply.body).pid;
        break;
      case 'validate':
        reply = host.validate(bodyOf(step));
        break;
      case 'signal':
        reply = host.signal(refOf(step), bodyOf(step));
        break;
      case 'get':
        reply = host.get(refOf(step));
        break;
      case 'kill':
        reply = host.kill(refOf(step));
        break;
      case 'close_stdin':
        reply = host.closeStdin(refOf(step));
        break;
      case 'write_stdin':
        reply = host.writeStdin(refOf(step), new TextEncoder().encode(step.data));
        break;
      case 'output':
        assert.ok(['stdout', 'stderr', 'merged'].includes(step.selector), `${where}: bad selector`);
        reply = host.output(refOf(step), step.selector);
        break;
      case 'list':
        reply = host.list();
        break;
      case 'health':
        reply = host.health();
        break;
      case 'await_exit': {
        const ref = refOf(step);
        assert.match(ref, /^[1-9][0-9]*$/, `${where}: await_exit needs a pid`);
        const ended = await host.awaitExit(Number(ref), AWAIT_EXIT_MS);
        assert.ok(ended, `${where}: process ${ref} did not end (output complete) within ${AWAIT_EXIT_MS} ms`);
        continue;
      }
    }
    assert.ok(step.expect, `${where}: no expect`);
    let expect;
    try {
      expect = substitute(step.expect);
    } catch (error) {
      assert.fail(`${where}: ${error.message}`);
    }
    check(reply, expect, where);
  }
}

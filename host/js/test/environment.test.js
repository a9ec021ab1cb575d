// The Node host's default environment for children (src/environment.js):
// the same variables, order and fallbacks as the Rust host's.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

import { currentUser, defaultBaseEnv, userEnv } from '../src/environment.js';

test('an entry gives HOME, USER, LOGNAME and SHELL, in this order', () => {
  const env = userEnv({ username: 'ada', homedir: '/home/ada', shell: '/bin/zsh', uid: 1000, gid: 1000 });
  assert.deepEqual(Object.entries(env), [
    ['HOME', '/home/ada'],
    ['USER', 'ada'],
    ['LOGNAME', 'ada'],
    ['SHELL', '/bin/zsh'],
  ]);
});

test('without an entry HOME is / and SHELL /bin/sh, and there is no USER or LOGNAME', () => {
  assert.deepEqual(Object.entries(userEnv(null)), [
    ['HOME', '/'],
    ['SHELL', '/bin/sh'],
  ]);
  assert.deepEqual(Object.entries(userEnv({ username: '', homedir: '', shell: '' })), [
    ['HOME', '/'],
    ['SHELL', '/bin/sh'],
  ]);
  assert.deepEqual(Object.keys(defaultBaseEnv({ user: null, path: '' })), ['HOME', 'SHELL', 'PATH', 'LANG']);
  assert.equal(defaultBaseEnv({ user: null, path: '' }).PATH, '/usr/local/bin:/usr/bin:/bin');
});

test('a missing entry is no user; any other failure is an error', () => {
  // The shape Node gives when getpwuid_r finds nothing (seen under setpriv --reuid=54321).
  const missing = () => {
    throw Object.assign(new Error('uv_os_get_passwd returned ENOENT'), { code: 'ERR_SYSTEM_ERROR', info: { code: 'ENOENT' } });
  };
  assert.equal(currentUser(missing), null);
  const broken = () => {
    throw Object.assign(new Error('uv_os_get_passwd returned EIO'), { code: 'ERR_SYSTEM_ERROR', info: { code: 'EIO' } });
  };
  assert.throws(() => currentUser(broken), /EIO/);
});

test('the current user is the user database entry getent reports', () => {
  const fields = execFileSync('getent', ['passwd', String(process.geteuid())], { encoding: 'utf8' }).trimEnd().split(':');
  const user = currentUser();
  assert.deepEqual([user.username, user.homedir, user.shell], [fields[0], fields[5], fields[6]]);
});

test('the default base environment has nothing of process.env but PATH', () => {
  process.env.SANDBOX_TEST_SECRET = 'do-not-pass';
  try {
    const env = defaultBaseEnv();
    assert.deepEqual(Object.keys(env), ['HOME', 'USER', 'LOGNAME', 'SHELL', 'PATH', 'LANG']);
    assert.equal(env.PATH, process.env.PATH);
    assert.equal(env.LANG, 'C.UTF-8');
    assert.ok(!Object.values(env).includes('do-not-pass'));
    assert.deepEqual(defaultBaseEnv({ locale: 'en_GB.UTF-8' }).LANG, 'en_GB.UTF-8');
  } finally {
    delete process.env.SANDBOX_TEST_SECRET;
  }
});

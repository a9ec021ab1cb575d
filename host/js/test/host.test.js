// What only the Node host has, or only Node tests can reach: streams with
// native waiting, the capture cap end to end, the base environment, the
// capability's import convention, embedding with another capability.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';

import { NodeProcessCapability, ProcessError } from '../src/capability.js';
import { createHost, instantiateGuest } from '../src/host.js';
import { mismatch } from './case-format.js';

const json = (reply) => JSON.parse(reply.body);

/** Live (not zombie) processes of process group `pgid`, from /proc. */
function groupMembers(pgid) {
  const members = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // After the parenthesized command: state ppid pgrp ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
  }
  return members;
}
const hosts = [];
async function host(options) {
  const h = await createHost(options);
  hosts.push(h);
  return h;
}
after(() => Promise.all(hosts.map((h) => h.shutdown())));

async function started(h, body) {
  const reply = h.start(JSON.stringify(body));
  assert.equal(reply.status, 201, reply.body);
  return json(reply).pid;
}

async function collect(frames) {
  let text = '';
  for await (const f of frames) text += f;
  return text;
}

/** The JSON objects of the `data:` lines of SSE text. */
const dataOf = (text) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)));

describe('environment', () => {
  test('a child gets the default environment and the request env, nothing else of the host', async () => {
    process.env.SANDBOX_SECRET_FOR_TEST = 'leaked';
    const h = await host();
    const pid = await started(h, { command: 'env', env: { FOO: 'bar' } });
    assert.ok(await h.awaitExit(pid, 10_000));
    const lines = json(h.output(String(pid), 'stdout')).lines;
    const names = lines.map((l) => l.slice(0, l.indexOf('='))).sort();
    assert.deepEqual(names, ['FOO', 'HOME', 'LANG', 'LOGNAME', 'PATH', 'SHELL', 'USER']);
    assert.ok(lines.includes('FOO=bar') && lines.includes(`PATH=${process.env.PATH}`), lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes('leaked')), lines.join('\n'));
    delete process.env.SANDBOX_SECRET_FOR_TEST;
  });

  test('the request env overrides the base env, PATH included', async () => {
    const h = await host({ capabilityOptions: { baseEnv: { PATH: '/nowhere', KEEP: 'base' } } });
    assert.equal(json(h.start('{"command":"sh"}')).code, 'SPAWN_FAILED', 'sh is not on /nowhere');
    const pid = await started(h, { command: 'sh', args: ['-c', 'echo "$KEEP $PATH"'], env: { PATH: process.env.PATH } });
    assert.ok(await h.awaitExit(pid, 10_000));
    assert.deepEqual(json(h.output(String(pid), 'stdout')).lines, [`base ${process.env.PATH}`]);
  });

  test('variables named like Object.prototype members are passed too', async () => {
    const h = await host();
    const pid = await started(h, JSON.parse('{"command":"env","env":{"__proto__":"x","constructor":"y"}}'));
    assert.ok(await h.awaitExit(pid, 10_000));
    const lines = json(h.output(String(pid), 'stdout')).lines;
    assert.ok(lines.includes('__proto__=x') && lines.includes('constructor=y'), lines.join('\n'));
  });

  test('a command without working_dir starts in the default directory', async () => {
    const h = await host({ capabilityOptions: { defaultWorkingDir: '/tmp' } });
    const pid = await started(h, { command: 'pwd' });
    assert.ok(await h.awaitExit(pid, 10_000));
    assert.deepEqual(json(h.output(String(pid), 'stdout')).lines, ['/tmp']);
  });
});

describe('streams (the host waits natively between steps)', () => {
  test('follow replays, streams live lines, ends with eof', async () => {
    const h = await host();
    const pid = await started(h, { command: 'sh', args: ['-c', 'echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three'] });
    const t0 = Date.now();
    const { frames } = h.follow(String(pid), 'merged');
    const text = await collect(frames);
    assert.ok(Date.now() - t0 >= 500, 'followed the live output');
    assert.match(text, /event: eof\ndata: \{\}\n\n$/);
    const events = dataOf(text).slice(0, -1);
    assert.deepEqual(
      events.map((e) => [e.line, e.stream]),
      [['one', 'stdout'], ['two', 'stderr'], ['three', 'stdout']],
    );
    for (const e of events) assert.equal(typeof e.timestamp, 'number');
  });

  test('follow of an unknown or bad ref is a plain error reply', async () => {
    const h = await host();
    assert.equal(h.follow('2147483647', 'stdout').reply.status, 404);
    assert.equal(h.follow('abc', 'stdout').reply.status, 400);
  });

  test('run: start frame, output, exit frame', async () => {
    const h = await host();
    const opened = h.run('{"command":"sh","args":["-c","echo hi; echo oops >&2; exit 4"]}');
    const frames = dataOf(await collect(opened.frames));
    assert.equal(mismatch({ pid: '<number>', started_at: '<number>' }, frames[0]), null);
    assert.deepEqual(frames.slice(1, -1).map((f) => f.line).sort(), ['hi', 'oops']);
    assert.deepEqual(frames.at(-1), { exit_code: 4, signal: null, reason: 'exited' });
  });

  test('run with a timeout is killed and reported timed_out', async () => {
    const h = await host();
    const t0 = Date.now();
    const frames = dataOf(await collect(h.run('{"command":"sleep","args":["30"],"timeout":0.3}').frames));
    assert.ok(Date.now() - t0 < 5000);
    assert.deepEqual(frames.at(-1), { exit_code: null, signal: 9, reason: 'timed_out' });
  });

  test('a refused run is a plain error reply', async () => {
    const h = await host();
    assert.equal(json(h.run('{"command":"echo","stdin_mode":"pipe"}').reply).code, 'INVALID_REQUEST');
    assert.equal(json(h.run('{"command":"no-such-command-xyz"}').reply).code, 'SPAWN_FAILED');
  });

  test('an aborted follow stops', async () => {
    const h = await host();
    const pid = await started(h, { command: 'sleep', args: ['30'] });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const t0 = Date.now();
    await collect(h.follow(String(pid), 'stdout', { signal: abort.signal, pollMs: 100 }).frames);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(h.kill(String(pid)).status, 204);
  });
});

describe('capture cap', () => {
  test('over the cap the newest lines are kept and the drop is reported', async () => {
    const h = await host({ capabilityOptions: { captureBytes: 4096 } });
    const pid = await started(h, { command: 'seq', args: ['1', '5000'] });
    assert.ok(await h.awaitExit(pid, 10_000));
    const out = json(h.output(String(pid), 'stdout'));
    assert.ok(out.lines.length < 5000);
    assert.equal(out.lines.at(-1), '5000');
    assert.equal(out.line_count, out.lines.length);
    assert.equal(out.dropped_lines + out.lines.length, 5000);
    // merged sees the same drop (nothing on stderr).
    assert.equal(json(h.output(String(pid), 'merged')).dropped_lines, out.dropped_lines);
    assert.equal(json(h.output(String(pid), 'stderr')).dropped_lines, undefined);
  });

  test('a follower that starts late is told how many lines it missed', async () => {
    const h = await host({ capabilityOptions: { captureBytes: 1024 } });
    const pid = await started(h, { command: 'seq', args: ['1', '1000'] });
    assert.ok(await h.awaitExit(pid, 10_000));
    const text = await collect(h.follow(String(pid), 'stdout').frames);
    const kept = dataOf(text).length - 1;
    const missed = Number(/^: dropped (\d+) lines$/m.exec(text)[1]);
    assert.equal(missed + kept, 1000);
  });

  test('a line longer than the line limit is split', async () => {
    const h = await host({ capabilityOptions: { maxLineBytes: 10 } });
    const pid = await started(h, { command: 'printf', args: ['0123456789abcdefghijXYZ\\n'] });
    assert.ok(await h.awaitExit(pid, 10_000));
    assert.deepEqual(json(h.output(String(pid), 'stdout')).lines, ['0123456789', 'abcdefghij', 'XYZ']);
  });
});

describe('the capability', () => {
  test('read-output and wait return at once, whatever wait they are given', async () => {
    const cap = new NodeProcessCapability();
    const info = cap.start({ command: 'sleep', args: ['30'], env: [], stdinMode: 'closed', stdoutMode: 'capture', stderrMode: 'capture' });
    const t0 = Date.now();
    const chunk = cap.readOutput(info.pid, 'merged', 0n, 10, 5000);
    assert.deepEqual(chunk, { lines: [], nextCursor: 0n, dropped: 0n, more: false, complete: false });
    assert.equal(cap.wait(info.pid, 5000).status, 'running');
    assert.ok(Date.now() - t0 < 1000);
    cap.kill(info.pid);
    assert.ok(await cap.awaitExit(info.pid, 10_000));
    const done = cap.readOutput(info.pid, 'merged', 0n, 10, 0);
    assert.equal(done.complete, true);
    assert.equal(cap.get(info.pid).signal, 9);
  });

  test('errors are thrown as ProcessError with the variant as payload', () => {
    const cap = new NodeProcessCapability();
    const thrown = (fn) => {
      try {
        fn();
      } catch (error) {
        assert.ok(error instanceof ProcessError);
        assert.ok(Object.hasOwn(error, 'payload'), 'jco reads an own `payload`');
        return error.payload;
      }
      assert.fail('did not throw');
    };
    assert.deepEqual(thrown(() => cap.get(1)), { tag: 'not-found', val: 1 });
    assert.deepEqual(thrown(() => cap.signal(1, 0)), { tag: 'invalid-signal', val: 0 });
    assert.deepEqual(thrown(() => cap.signal(1, 65)), { tag: 'invalid-signal', val: 65 });
    assert.equal(thrown(() => cap.start({ command: 'x', args: [], env: [{ name: 'A=B', value: '' }], stdinMode: 'closed', stdoutMode: 'capture', stderrMode: 'capture' })).tag, 'invalid-request');
  });

  test('a bug in the capability becomes a 500 INTERNAL reply, not a trap', async () => {
    class Broken extends NodeProcessCapability {
      get() {
        throw new TypeError('oops');
      }
    }
    const h = await host({ capability: new Broken() });
    const reply = h.get('123');
    assert.equal(reply.status, 500);
    assert.equal(json(reply).code, 'INTERNAL');
    assert.match(json(reply).error, /oops/);
    assert.equal(h.health().status, 200, 'the instance still works');
  });

  test('policy and limits: DENIED and LIMIT_EXCEEDED', async () => {
    const h = await host({
      capabilityOptions: { maxProcesses: 1, policy: (req) => (req.command === 'rm' ? 'rm is not allowed' : undefined) },
    });
    const denied = h.start('{"command":"rm","args":["-rf","/tmp/x"]}');
    assert.equal(denied.status, 403);
    assert.match(json(denied).error, /rm is not allowed/);
    const pid = await started(h, { command: 'sleep', args: ['30'] });
    const limited = h.start('{"command":"true"}');
    assert.equal(limited.status, 429);
    assert.equal(json(limited).code, 'LIMIT_EXCEEDED');
    h.kill(String(pid));
    assert.ok(await h.awaitExit(pid, 10_000));
    assert.equal(h.start('{"command":"true"}').status, 201);
  });

  test('writing to a child that exited without reading does not crash the host', async () => {
    const h = await host();
    const pid = await started(h, { command: 'true', stdin_mode: 'pipe' });
    const big = new Uint8Array(1 << 20).fill(0x61);
    const first = h.writeStdin(String(pid), big);
    assert.ok([204, 400].includes(first.status), first.body);
    assert.ok(await h.awaitExit(pid, 10_000));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(json(h.writeStdin(String(pid), 'x')).code, 'STDIN_NOT_WRITABLE');
    assert.equal(json(h.get(String(pid))).exit_code, 0);
  });

  test('summary and info count processes', async () => {
    const h = await host();
    const pid = await started(h, { command: 'sleep', args: ['30'] });
    const info = json(h.info());
    assert.equal(mismatch({ version: '0.1.0', uptime_secs: '<number>', running_processes: 1, total_processes: 1 }, info), null);
    h.kill(String(pid));
    assert.ok(await h.awaitExit(pid, 10_000));
    assert.equal(json(h.info()).running_processes, 0);
    assert.equal(json(h.list()).processes.length, 1, 'ended processes are kept');
  });

  test('past maxRetainedExited, the oldest ended processes are forgotten', async () => {
    const h = await host({ capabilityOptions: { maxRetainedExited: 2 } });
    const pids = [];
    for (let i = 0; i < 4; i++) {
      pids.push(await started(h, { command: 'true' }));
      assert.ok(await h.awaitExit(pids[i], 10_000));
    }
    const live = await started(h, { command: 'sleep', args: ['30'] });
    assert.deepEqual(json(h.list()).processes.map((p) => p.pid), [...pids.slice(2), live]);
    assert.equal(h.get(String(pids[0])).status, 404);
    h.kill(String(live));
    assert.ok(await h.awaitExit(live, 10_000));
  });

  test('when Node exits, the live groups are killed', async () => {
    const script = `
      import { createHost } from ${JSON.stringify(new URL('../src/host.js', import.meta.url).href)};
      const h = await createHost();
      const r = h.start('{"command":"sh","args":["-c","sleep 30 & wait"]}');
      console.log(JSON.parse(r.body).pid);
      setTimeout(() => process.exit(0), 200);
    `;
    const { execFileSync } = await import('node:child_process');
    const pid = Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim());
    assert.ok(pid > 0);
    for (let i = 0; i < 100 && groupMembers(pid).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(groupMembers(pid), [], 'no member of the group is left');
  });

  test('shutdown kills every live group', async () => {
    const h = await createHost();
    const pids = [await started(h, { command: 'sleep', args: ['30'] }), await started(h, { command: 'sh', args: ['-c', 'sleep 30 & wait'] })];
    await h.shutdown();
    for (const pid of pids) {
      assert.equal(json(h.get(String(pid))).status, 'signaled');
      assert.ok(h.capability.isFinished(pid));
    }
  });
});

describe('embedding with another capability', () => {
  test('the guest runs over any object with the capability functions', async () => {
    const calls = [];
    const info = { pid: 7, status: 'running', stdinWritable: false, command: 'fake', args: ['a'], startedAt: 1000n };
    const fake = {
      start: (req) => (calls.push(['start', req.command, req.workingDir]), info),
      get: (pid) => {
        if (pid !== 7) throw { tag: 'not-found', val: pid }; // a plain value is the err payload too
        return info;
      },
      list: () => [info],
      signal: () => {},
      kill: () => {},
      writeStdin: () => {},
      closeStdin: () => {},
      readOutput: () => ({ lines: [{ stream: 'stdout', line: 'from fake', timestamp: 1n }], nextCursor: 1n, dropped: 0n, more: false, complete: true }),
      wait: () => info,
      summary: () => ({ version: 'fake', uptimeSecs: 0n, runningProcesses: 1, totalProcesses: 1n }),
      nowMs: () => 1000n,
    };
    const api = await instantiateGuest({ 'sandbox:process/process': fake });
    const enc = new TextEncoder();
    let reply = api.start(enc.encode('{"command":"fake","args":["a"]}'));
    assert.equal(reply.status, 201);
    assert.equal(JSON.parse(reply.body).pid, 7);
    assert.deepEqual(calls, [['start', 'fake', undefined]]);
    reply = api.get('8');
    assert.deepEqual([reply.status, JSON.parse(reply.body).code], [404, 'NOT_FOUND']);
    reply = api.output('7', 'stdout');
    assert.deepEqual(JSON.parse(reply.body), { pid: 7, lines: ['from fake'], line_count: 1 });
    assert.equal(JSON.parse(api.info().body).version, 'fake');
  });
});

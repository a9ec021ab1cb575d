// The Node host's HTTP server: the router's table, admission (Origin, then
// the token), the transport's own errors, the API and its streams end to
// end through the real command (bin/), its flags, and its shutdown.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { route, tokenMatches } from '../src/server.js';

const BIN = fileURLToPath(new URL('../bin/sandbox-process-node.js', import.meta.url));
const TOKEN = 'server-test-token';

/** Starts the command; resolves with its base URL once it says where it listens. */
function startServer(args = [], env = { SANDBOX_PROCESS_TOKEN: TOKEN }) {
  const child = spawn(process.execPath, [BIN, '--listen', '127.0.0.1:0', ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (text) => {
      log += text;
      const found = /listen=(\S+)/.exec(log);
      if (found) resolve({ child, base: `http://${found[1]}/api/v1`, log: () => log });
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}): ${log}`)));
  });
}

/** One request: `{ status, headers, body }` (the body as text). */
function request(url, { method = 'GET', headers = {}, body, token = TOKEN } = {}) {
  const all = token === null ? headers : { authorization: `Bearer ${token}`, ...headers };
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: all }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the route table', () => {
  const cases = [
    ['GET', '/api/v1/health', 'health'],
    ['HEAD', '/api/v1/info', 'info'],
    ['POST', '/api/v1/processes', 'start'],
    ['GET', '/api/v1/processes', 'list'],
    ['POST', '/api/v1/processes/run', 'run'],
    ['GET', '/api/v1/processes/%34%32', 'get'],
    ['DELETE', '/api/v1/processes/42', 'kill'],
    ['POST', '/api/v1/processes/42/signal', 'signal'],
    ['POST', '/api/v1/processes/42/stdin', 'writeStdin'],
    ['POST', '/api/v1/processes/42/stdin/close', 'closeStdin'],
    ['GET', '/api/v1/processes/42/output', 'output:merged'],
    ['GET', '/api/v1/processes/42/stderr/follow', 'follow:stderr'],
  ];
  for (const [method, path, call] of cases) assert.equal(route(method, path).call, call, `${method} ${path}`);
  assert.equal(route('GET', '/api/v1/processes/%34%32').ref, '%34%32');
  for (const path of ['/', '/api/v1', '/api/v1/', '/api/v1/processes/', '/api/v1/processes//stdout', '/api/v1/processes/1/stdout/follow/x', '/api/v2/health', '/api/v1/processes/1/stdin/open']) {
    assert.equal(route('GET', path).status, 404, path);
  }
  for (const [method, path] of [['GET', '/api/v1/processes/run'], ['PUT', '/api/v1/processes'], ['POST', '/api/v1/health'], ['GET', '/api/v1/processes/1/signal']]) {
    assert.equal(route(method, path).status, 405, `${method} ${path}`);
  }
});

test('tokens match only when identical', () => {
  assert.ok(tokenMatches('secret', 'secret'));
  for (const other of ['secreT', 'secret2', '', 'secre']) assert.ok(!tokenMatches(other, 'secret'), other);
});

describe('the server', () => {
  let server;
  before(async () => {
    server = await startServer(['--allow-origin', 'http://localhost:3000/']);
  });
  after(() => server?.child.kill('SIGKILL'));

  test('admission: a foreign Origin is 403, a missing or wrong token 401, before routing', async () => {
    const { base } = server;
    assert.equal((await request(`${base}/health`)).body, '{"healthy":true}');
    const foreign = await request(`${base}/health`, { headers: { origin: 'http://evil.example' } });
    assert.equal(foreign.status, 403);
    assert.equal(JSON.parse(foreign.body).code, 'FORBIDDEN_ORIGIN');
    assert.equal((await request(`${base}/health`, { headers: { origin: 'http://LOCALHOST:3000' } })).status, 200);
    for (const [token, message] of [[null, 'missing'], ['wrong', 'wrong'], ['', 'missing|wrong']]) {
      const refused = await request(`${base}/no/such/route`, { token });
      assert.equal(refused.status, 401);
      assert.match(JSON.parse(refused.body).error, new RegExp(message));
      assert.equal(refused.headers['content-type'], 'application/json');
    }
  });

  test('the transport errors: 404, 405, 413, as JSON', async () => {
    const { base } = server;
    const missing = await request(`${base}/nope`);
    assert.deepEqual([missing.status, JSON.parse(missing.body).code], [404, 'NOT_FOUND']);
    const method = await request(`${base}/processes`, { method: 'PUT' });
    assert.deepEqual([method.status, JSON.parse(method.body).code], [405, 'METHOD_NOT_ALLOWED']);
    const declared = await request(`${base}/processes`, { method: 'POST', body: 'x'.repeat((1 << 20) + 1) });
    assert.deepEqual([declared.status, JSON.parse(declared.body).code], [413, 'LIMIT_EXCEEDED']);
    // Chunked: no length declared, cut off while reading.
    const chunked = await request(`${base}/processes`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: 'x'.repeat((1 << 20) + 1) });
    assert.equal(chunked.status, 413);
    assert.equal((await request(`${base}/health`)).status, 200); // still serving
  });

  test('the API end to end: start, stdin, output, follow, signal, info', async () => {
    const { base } = server;
    const started = await request(`${base}/processes`, { method: 'POST', body: '{"command":"cat","stdin_mode":"pipe"}' });
    assert.equal(started.status, 201);
    const { pid } = JSON.parse(started.body);
    assert.equal((await request(`${base}/processes/${pid}/stdin`, { method: 'POST', body: 'one\ntwo\n' })).status, 204);
    assert.equal((await request(`${base}/processes/${pid}/stdin/close`, { method: 'POST' })).status, 204);
    const follow = await request(`${base}/processes/${pid}/output/follow`);
    assert.equal(follow.headers['content-type'], 'text/event-stream');
    assert.equal((follow.body.match(/^event: output$/gm) ?? []).length, 2);
    assert.ok(follow.body.endsWith('event: eof\ndata: {}\n\n'), follow.body);
    const output = JSON.parse((await request(`${base}/processes/${pid}/stdout`)).body);
    assert.deepEqual(output, { pid, lines: ['one', 'two'], line_count: 2 });
    const ended = await request(`${base}/processes/${pid}/signal`, { method: 'POST', body: '{"signal":15}' });
    assert.equal(JSON.parse(ended.body).code, 'NOT_RUNNING');
    const info = JSON.parse((await request(`${base}/info`)).body);
    assert.ok(info.total_processes >= 1);
    assert.equal((await request(`${base}/processes/042`)).status, 400);
  });

  test('run streams to the exit frame; a timeout kills the group', async () => {
    const { base } = server;
    const ok = await request(`${base}/processes/run`, { method: 'POST', body: '{"command":"sh","args":["-c","echo hi; exit 3"]}' });
    const frames = ok.body.split('\n\n').filter(Boolean);
    assert.match(frames[0], /^data: \{"pid":\d+,"started_at":\d+\}$/);
    assert.match(frames[1], /"line":"hi"/);
    assert.equal(frames.at(-1), 'data: {"exit_code":3,"signal":null,"reason":"exited"}');
    const began = Date.now();
    const timed = await request(`${base}/processes/run`, { method: 'POST', body: '{"command":"sleep","args":["100"],"timeout":0.5}' });
    assert.match(timed.body, /"reason":"timed_out"/);
    assert.ok(Date.now() - began < 5000);
    const refused = await request(`${base}/processes/run`, { method: 'POST', body: '{"command":"ls","timeout":0}' });
    assert.equal(refused.status, 400);
  });

  test('a follower that goes away ends its stream, not the process', async () => {
    const { base } = server;
    const { pid } = JSON.parse((await request(`${base}/processes`, { method: 'POST', body: '{"command":"sleep","args":["100"]}' })).body);
    await new Promise((resolve) => {
      const req = http.get(`${base}/processes/${pid}/output/follow`, { headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        assert.equal(res.statusCode, 200);
        res.destroy();
        resolve();
      });
      req.on('error', () => {});
    });
    assert.equal(JSON.parse((await request(`${base}/processes/${pid}`)).body).status, 'running');
    assert.equal((await request(`${base}/processes/${pid}`, { method: 'DELETE' })).status, 204);
  });
});

test('SIGTERM: stops, kills what it started, exits 0', async () => {
  const { child, base } = await startServer();
  const { pid } = JSON.parse((await request(`${base}/processes`, { method: 'POST', body: '{"command":"sleep","args":["100"]}' })).body);
  // A follow open across the shutdown ends with its final frame.
  const follow = request(`${base}/processes/${pid}/output/follow`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const began = Date.now();
  child.kill('SIGTERM');
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  assert.ok(Date.now() - began < 10_000);
  assert.ok((await follow).body.endsWith('event: eof\ndata: {}\n\n'));
  assert.ok(!existsSync(`/proc/${pid}`) || /\) Z /.test(readStat(pid)), `process ${pid} survived the server`);
});

function readStat(pid) {
  try {
    return spawnSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }).stdout;
  } catch {
    return '';
  }
}

test('the command line: help with every flag and its default, clear refusals', () => {
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  // Each flag's paragraph says its default (or that it is required).
  const paragraphs = help.stdout.split(/\n(?= {2}-)/);
  for (const flag of ['--listen', '--token-file', '--allow-origin', '--max-body-bytes', '--max-stdin-bytes', '--max-processes', '--capture-bytes']) {
    const text = paragraphs.find((p) => p.trimStart().startsWith(flag));
    assert.ok(text, flag);
    assert.match(text, /\(default [^)]+\)|required/, flag);
  }
  const run = (args, env = {}) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
  const dir = mkdtempSync(join(tmpdir(), 'sp-node-'));
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'two'), 'a\nb\n');
  for (const [args, env, message] of [
    [[], {}, /no token/],
    [['--token-file', join(dir, 'missing')], {}, /missing: no such file/],
    [['--token-file', join(dir, 'empty')], {}, /empty/],
    [['--token-file', join(dir, 'two')], {}, /one line/],
    [['--listen', 'localhost'], { SANDBOX_PROCESS_TOKEN: 't' }, /ADDR:PORT/],
    [['--max-processes', '0'], { SANDBOX_PROCESS_TOKEN: 't' }, /positive whole number/],
    [['--allow-origin', 'localhost:3000'], { SANDBOX_PROCESS_TOKEN: 't' }, /scheme:\/\/host/],
    [['--bogus'], { SANDBOX_PROCESS_TOKEN: 't' }, /bogus/],
  ]) {
    const out = run(args, env);
    assert.equal(out.status, 2, `${args}: ${out.stderr}`);
    assert.match(out.stderr, message);
  }
});

test('a token file is read, and the token never reaches a child', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sp-node-'));
  writeFileSync(join(dir, 'token'), 'from-a-file\n');
  const { child, base } = await startServer(['--token-file', join(dir, 'token')], {});
  try {
    assert.equal((await request(`${base}/health`, { token: 'from-a-file' })).status, 200);
  } finally {
    child.kill('SIGKILL');
  }
  const viaEnv = await startServer();
  try {
    const body = '{"command":"sh","args":["-c","env"]}';
    const run = await request(`${viaEnv.base}/processes/run`, { method: 'POST', body });
    assert.ok(!run.body.includes(TOKEN) && !run.body.includes('SANDBOX_PROCESS_TOKEN'), run.body);
  } finally {
    viaEnv.child.kill('SIGKILL');
  }
});

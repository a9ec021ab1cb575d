#!/usr/bin/env node
// `sandbox-process-node`: the sandbox process API over HTTP, served by the
// Node host (the same guest as `sandbox-process serve`). See --help.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { createHost } from '../src/host.js';
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_STDIN_BYTES, createServer } from '../src/server.js';

const HELP = `Usage: sandbox-process-node [OPTIONS]

Serves the sandbox process API (docs/API.md) over HTTP with the Node host:
the guest component transpiled by jco, processes started by node:child_process.

Every request needs \`Authorization: Bearer <token>\` (compared in constant
time), and a request with an \`Origin\` header not allowed is refused (403).

Options:
  --listen ADDR:PORT       where to listen (default 127.0.0.1:8080; port 0 picks a free one)
  --token-file FILE        read the bearer token from FILE (the whole file, one trailing
                           newline ignored); else the SANDBOX_PROCESS_TOKEN variable.
                           One of the two is required: this server never runs without a token
  --allow-origin ORIGIN    let requests with this Origin in (e.g. http://localhost:3000);
                           repeatable (default none: any Origin is refused)
  --max-body-bytes N       the largest JSON request body (default ${DEFAULT_MAX_BODY_BYTES}); 413 past it
  --max-stdin-bytes N      the largest body of one stdin write (default ${DEFAULT_MAX_STDIN_BYTES}); 413 past it
  --max-processes N        processes running at once (default 1024); 429 past it
  --capture-bytes N        captured output kept per stream of each process (default 4194304)
  -h, --help               print this help

Logs one line per request to stderr (method, path, status, duration; never
headers). SIGINT or SIGTERM: stops accepting, kills every process it started
(open streams end with their final frames), exits 0.
`;

function fail(message) {
  process.stderr.write(`error: ${message}\n(see --help)\n`);
  process.exit(2);
}

function count(name, text, fallback) {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]*$/.test(text) || !Number.isSafeInteger(Number(text))) fail(`--${name} ${text}: expected a positive whole number`);
  return Number(text);
}

/** `host:port`, `[v6]:port`; the port 0 to 65535. */
function listenAddress(text) {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  if (!match || Number(match[3]) > 65535) fail(`--listen ${text}: expected ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  return { host: match[1] ?? match[2], port: Number(match[3]) };
}

function readToken(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    fail(`--token-file ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
  }
  const token = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (token === '') fail(`--token-file ${file}: the file is empty`);
  if (/[\r\n]/.test(token)) fail(`--token-file ${file}: the token must be one line`);
  return token;
}

let args;
try {
  args = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:8080' },
      'token-file': { type: 'string' },
      'allow-origin': { type: 'string', multiple: true, default: [] },
      'max-body-bytes': { type: 'string' },
      'max-stdin-bytes': { type: 'string' },
      'max-processes': { type: 'string' },
      'capture-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (error) {
  fail(error.message);
}
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const { host: address, port } = listenAddress(args.listen);
const fromEnv = process.env.SANDBOX_PROCESS_TOKEN;
if (args['token-file'] !== undefined && fromEnv) fail('both --token-file and SANDBOX_PROCESS_TOKEN are set: give one');
const token = args['token-file'] !== undefined ? readToken(args['token-file']) : fromEnv;
if (!token) fail('no token: give --token-file FILE or set SANDBOX_PROCESS_TOKEN');
for (const origin of args['allow-origin']) {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+\/?$/i.test(origin)) fail(`--allow-origin ${origin}: give scheme://host[:port], without a path`);
}
// Not passed on to children: a child of this server never sees the token.
delete process.env.SANDBOX_PROCESS_TOKEN;

const host = await createHost({
  capabilityOptions: {
    maxProcesses: count('max-processes', args['max-processes'], 1024),
    captureBytes: count('capture-bytes', args['capture-bytes'], 4 << 20),
  },
});
const log = (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
const server = createServer(host, {
  token,
  allowedOrigins: args['allow-origin'],
  maxJsonBody: count('max-body-bytes', args['max-body-bytes'], DEFAULT_MAX_BODY_BYTES),
  maxStdinBody: count('max-stdin-bytes', args['max-stdin-bytes'], DEFAULT_MAX_STDIN_BYTES),
  log,
});
server.on('error', (error) => fail(`--listen ${args.listen}: ${error.message}`));
server.listen(port, address, () => {
  const bound = server.address();
  const shown = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  log(`sandbox-process-node listening listen=${shown}`);
});

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping`);
  server.close(() => process.exit(0));
  await host.shutdown();
  // Streams have sent their final frames; idle keep-alive connections go now.
  server.closeIdleConnections();
  setTimeout(() => server.closeAllConnections(), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

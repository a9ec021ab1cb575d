// The sandbox process API over HTTP on node:http: a router in front of the
// guest's exports, as the Rust server is (host/src/http/): every request is
// admitted (Origin, then the bearer token), routed by method and path to one
// guest function, and its reply sent as the guest rendered it. Streams
// (follow, run) go step by step, the host waiting natively between steps.
//
//   import { createHost } from './host.js';
//   import { createServer } from './server.js';
//   const server = createServer(await createHost(), { token: 'secret' });
//   server.listen(8080, '127.0.0.1');

import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

/** The largest JSON body, and the largest stdin write, by default (bytes). */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;
export const DEFAULT_MAX_STDIN_BYTES = 8 << 20;

const PREFIX = '/api/v1';
const SELECTORS = { stdout: 'stdout', stderr: 'stderr', output: 'merged' };

/**
 * The route of `method` and `path` (without the query): `{ call, ref }` with
 * `call` naming what to do, or `{ status: 404 | 405 }`. `{ref}` is the path
 * segment exactly as sent (still percent-encoded): the guest decides what a
 * valid reference is, so `%34%32` is not quietly `42`.
 */
export function route(method, path) {
  const m = method === 'HEAD' ? 'GET' : method;
  if (!path.startsWith(`${PREFIX}/`)) return { status: 404 };
  const parts = path.slice(PREFIX.length + 1).split('/');
  const methods = (table) => (table[m] ? { call: table[m], ref: parts[1] } : { status: 405 });
  if (parts.some((p) => p === '')) return { status: 404 };
  if (parts.length === 1) {
    if (parts[0] === 'health') return methods({ GET: 'health' });
    if (parts[0] === 'info') return methods({ GET: 'info' });
    if (parts[0] === 'processes') return methods({ GET: 'list', POST: 'start' });
    return { status: 404 };
  }
  if (parts[0] !== 'processes') return { status: 404 };
  if (parts.length === 2) {
    return parts[1] === 'run' ? methods({ POST: 'run' }) : methods({ GET: 'get', DELETE: 'kill' });
  }
  const [, , what, follow, ...rest] = parts;
  if (rest.length > 0) return { status: 404 };
  if (follow === undefined) {
    if (what === 'signal') return methods({ POST: 'signal' });
    if (what === 'stdin') return methods({ POST: 'writeStdin' });
    if (SELECTORS[what]) return methods({ GET: `output:${SELECTORS[what]}` });
    return { status: 404 };
  }
  if (what === 'stdin' && follow === 'close') return methods({ POST: 'closeStdin' });
  if (SELECTORS[what] && follow === 'follow') return methods({ GET: `follow:${SELECTORS[what]}` });
  return { status: 404 };
}

/** Equal in time that depends on neither the contents nor the lengths. */
export function tokenMatches(presented, expected) {
  const digest = (text) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The API's error body, `{"error": ..., "code": ...}`. */
const errorReply = (status, code, message) => ({ status, body: JSON.stringify({ error: message, code }) });

/**
 * Refuses a cross-site request (403), then one without the bearer token
 * (401), before routing, before the body is read; null admits it.
 */
function admit(req, { token, allowedOrigins }) {
  const origin = req.headers.origin;
  if (origin !== undefined && !allowedOrigins.has(origin.toLowerCase())) {
    return errorReply(403, 'FORBIDDEN_ORIGIN', 'cross-site request refused: this Origin is not allowed (see --allow-origin)');
  }
  const header = req.headers.authorization;
  if (header === undefined || !header.startsWith('Bearer ')) {
    return errorReply(401, 'UNAUTHORIZED', 'missing `Authorization: Bearer <token>`');
  }
  if (!tokenMatches(header.slice('Bearer '.length), token)) return errorReply(401, 'UNAUTHORIZED', 'wrong bearer token');
  return null;
}

/** Reads at most `limit` bytes of body: the bytes, or the 413 reply. */
async function readBody(req, limit) {
  const tooLarge = errorReply(413, 'LIMIT_EXCEEDED', `request body larger than ${limit} bytes (or cut off)`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && !(Number(declared) <= limit)) return { reply: tooLarge };
  const chunks = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += chunk.length;
      if (size > limit) return { reply: tooLarge };
      chunks.push(chunk);
    }
  } catch {
    return { reply: tooLarge }; // cut off
  }
  return { body: new Uint8Array(Buffer.concat(chunks, size)) };
}

function send(res, reply) {
  if (reply.body === '') {
    res.writeHead(reply.status).end();
  } else {
    const body = Buffer.from(reply.body, 'utf8');
    res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
  }
}

/** Streams `frames` (an async iterable of SSE text) until it ends or the client goes. */
async function sendStream(res, frames, abort) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  for await (const text of frames) {
    if (res.destroyed) break;
    // One batch in flight: a slow client slows the stream, not memory.
    if (!res.write(text)) await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
  }
  abort.abort();
  res.end();
}

/**
 * Serves one request; resolves once the reply (or stream) is sent. Host
 * calls never throw: a guest trap is a 500 reply of its own.
 */
async function serve(host, req, res, options) {
  const refused = admit(req, options);
  if (refused) return send(res, refused);
  const path = req.url.split('?')[0];
  const found = route(req.method, path);
  if (found.status === 404) return send(res, errorReply(404, 'NOT_FOUND', `no route for ${path}`));
  if (found.status === 405) return send(res, errorReply(405, 'METHOD_NOT_ALLOWED', 'method not allowed on this path'));
  const { call, ref } = found;
  const body = async (limit) => {
    const read = await readBody(req, limit);
    if (read.reply) res.setHeader('connection', 'close'); // the rest of the body is not read
    return read;
  };
  if (call === 'start' || call === 'signal' || call === 'run' || call === 'writeStdin') {
    const read = await body(call === 'writeStdin' ? options.maxStdinBody : options.maxJsonBody);
    if (read.reply) return send(res, read.reply);
    if (call === 'start') return send(res, host.start(read.body));
    if (call === 'signal') return send(res, host.signal(ref, read.body));
    if (call === 'writeStdin') return send(res, host.writeStdin(ref, read.body));
    const abort = new AbortController();
    res.once('close', () => abort.abort());
    const opened = host.run(read.body, { signal: abort.signal });
    return opened.reply ? send(res, opened.reply) : sendStream(res, opened.frames, abort);
  }
  if (call.startsWith('follow:')) {
    const abort = new AbortController();
    res.once('close', () => abort.abort());
    const opened = host.follow(ref, call.slice('follow:'.length), { signal: abort.signal });
    return opened.reply ? send(res, opened.reply) : sendStream(res, opened.frames, abort);
  }
  if (call.startsWith('output:')) return send(res, host.output(ref, call.slice('output:'.length)));
  const simple = {
    health: () => host.health(),
    info: () => host.info(),
    list: () => host.list(),
    get: () => host.get(ref),
    kill: () => host.kill(ref),
    closeStdin: () => host.closeStdin(ref),
  };
  return send(res, simple[call]());
}

/**
 * An http.Server serving the API of `host`.
 *
 * @param {import('./host.js').Host} host
 * @param {object} options
 * @param {string} options.token the bearer token every request must carry (required)
 * @param {string[]} [options.allowedOrigins] `Origin` values let in; any other is refused
 * @param {number} [options.maxJsonBody] bytes of a JSON body (1 MiB)
 * @param {number} [options.maxStdinBody] bytes of one stdin write (8 MiB)
 * @param {(line: string) => void} [options.log] one line per request (method, path, status, ms; never headers)
 */
export function createServer(host, options) {
  if (typeof options?.token !== 'string' || options.token === '') throw new Error('a bearer token is required');
  const settings = {
    token: options.token,
    allowedOrigins: new Set((options.allowedOrigins ?? []).map((o) => o.toLowerCase().replace(/\/+$/, ''))),
    maxJsonBody: options.maxJsonBody ?? DEFAULT_MAX_BODY_BYTES,
    maxStdinBody: options.maxStdinBody ?? DEFAULT_MAX_STDIN_BYTES,
  };
  const log = options.log ?? (() => {});
  return http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log(`request method=${req.method} path=${req.url.split('?')[0]} status=${res.statusCode} duration_ms=${ms.toFixed(1)}`);
    });
    serve(host, req, res, settings).catch((error) => {
      // A bug here, not in the guest: answer if still possible.
      log(`error: ${error?.stack ?? error}`);
      if (!res.headersSent) send(res, errorReply(500, 'INTERNAL', 'the request failed in the server'));
      else res.destroy();
    });
  });
}

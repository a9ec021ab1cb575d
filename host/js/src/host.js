// A Node.js host of the guest component: the transpiled guest (gen/, built
// by `npm run build` from target/wasm/sandbox_process_guest.wasm) with the
// process capability of ./capability.js, and the API it exports as plain
// functions that take what arrived and return `{ status, body }`.
//
//   import { createHost } from 'sandbox-process-node-host';
//   const host = await createHost();
//   const reply = host.start('{"command":"echo","args":["hi"]}');
//   // { status: 201, body: '{"pid":123,"status":"running",...}' }
//   await host.awaitExit(JSON.parse(reply.body).pid, 10_000);
//   host.output(String(pid), 'stdout');
//   await host.shutdown();

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { NodeProcessCapability, ProcessError } from './capability.js';

export { NodeProcessCapability, ProcessError };

const GEN = new URL('../gen/', import.meta.url);
/** The artifact the Rust host embeds, which gen/ must be transpiled from. */
export const GUEST_WASM = fileURLToPath(new URL('../../../target/wasm/sandbox_process_guest.wasm', import.meta.url));

const encoder = new TextEncoder();

/**
 * Checks that gen/ was transpiled from the guest in target/wasm/ as it is
 * now, so that Node never runs another build of the guest than the Rust
 * host embeds. (Skipped when target/wasm/ is absent: then gen/ is all there is.)
 */
export function checkGenerated() {
  const stampFile = fileURLToPath(new URL('source.json', GEN));
  if (!existsSync(stampFile)) {
    throw new Error('host/js/gen/ is missing: run `npm run build` in host/js first');
  }
  if (!existsSync(GUEST_WASM)) return;
  const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
  const sha256 = createHash('sha256').update(readFileSync(GUEST_WASM)).digest('hex');
  if (stamp.sha256 !== sha256) {
    throw new Error(`host/js/gen/ is stale: ${GUEST_WASM} changed since it was transpiled; run \`npm run build\` in host/js`);
  }
}

let compiled = null;

/** Compiles the guest's core modules once per Node process. */
function coreModules() {
  compiled ??= new Map();
  return (name) => {
    if (!compiled.has(name)) compiled.set(name, readFile(new URL(name, GEN)).then((bytes) => WebAssembly.compile(bytes)));
    return compiled.get(name);
  };
}

/**
 * Instantiates the transpiled guest with the given `sandbox:process/process`
 * imports (any object with the capability's camelCase functions) and
 * returns its exported `api`. The lower-level entry for embedders that
 * bring their own capability; `createHost` wraps it.
 *
 * @param {{'sandbox:process/process': object}} processImports
 * The guest imports the capability and nothing else (no WASI): these are
 * all the imports it gets.
 *
 * @param {{ check?: boolean }} [options]
 */
export async function instantiateGuest(processImports, { check = true } = {}) {
  if (check) checkGenerated();
  const { instantiate } = await import(new URL('guest.js', GEN).href);
  const root = await instantiate(coreModules(), processImports);
  return root.api ?? root['sandbox:process/api@0.1.0'];
}

/** Bytes of a body given as bytes or text. */
function bytesOf(body) {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return encoder.encode(body);
  throw new TypeError('a body is a Uint8Array or a string');
}

const internalReply = (message) => ({
  status: 500,
  body: JSON.stringify({ error: `internal error: ${message}`, code: 'INTERNAL' }),
});

/** The API of the guest over a capability, with native waiting. */
export class Host {
  #api;
  #capability;
  #restarting = null;
  #trap = null;

  /** Use `createHost`. */
  constructor(api, capability) {
    this.#api = api;
    this.#capability = capability;
  }

  /** The capability the guest drives (a NodeProcessCapability by default). */
  get capability() {
    return this.#capability;
  }

  // ---- the exported API, one function per endpoint -----------------------

  /** `POST /processes`: `{status: 201, body: process-info}` or an error. */
  start(body) {
    return this.#call((api) => api.start(bytesOf(body)));
  }

  /** `GET /processes`. */
  list() {
    return this.#call((api) => api.list());
  }

  /** `GET /processes/{ref}`. */
  get(ref) {
    return this.#call((api) => api.get(String(ref)));
  }

  /** `DELETE /processes/{ref}` (204). */
  kill(ref) {
    return this.#call((api) => api.kill(String(ref)));
  }

  /** `POST /processes/{ref}/signal` with `{"signal": N}`. */
  signal(ref, body) {
    return this.#call((api) => api.signal(String(ref), bytesOf(body)));
  }

  /** `POST /processes/{ref}/stdin` (204). */
  writeStdin(ref, data) {
    return this.#call((api) => api.writeStdin(String(ref), bytesOf(data)));
  }

  /** `POST /processes/{ref}/stdin/close` (204). */
  closeStdin(ref) {
    return this.#call((api) => api.closeStdin(String(ref)));
  }

  /** `GET /processes/{ref}/stdout|stderr|output`; selector `stdout`, `stderr` or `merged`. */
  output(ref, selector) {
    return this.#call((api) => api.output(String(ref), selector));
  }

  /** `GET /health`. */
  health() {
    return this.#call((api) => api.health());
  }

  /** `GET /info`. */
  info() {
    return this.#call((api) => api.info());
  }

  /** Checks a start body: 200 with the normalized request, or the error. */
  validate(body) {
    return this.#call((api) => api.validate(bytesOf(body)));
  }

  /**
   * `GET /processes/{ref}/{stdout|stderr|output}/follow`: `{ reply }` when
   * refused, else `{ frames }`, an async iterable of server-sent-event text
   * that ends with the stream. Waits natively between steps (the guest is
   * never asked to block). `options.signal` (an AbortSignal) stops it early.
   */
  follow(ref, selector, options = {}) {
    const opened = this.#open((api) => api.followOpen(String(ref), selector));
    if (opened.reply) return opened;
    return { frames: this.#stream(opened.value, '', options) };
  }

  /** `POST /processes/run`: like `follow`, the frames of the run stream. */
  run(body, options = {}) {
    const opened = this.#open((api) => api.runOpen(bytesOf(body)));
    if (opened.reply) return opened;
    return { frames: this.#stream(opened.value.position, opened.value.frames, options) };
  }

  // ---- native helpers ----------------------------------------------------

  /** Resolves true once `pid` has exited and its output pipes have closed. */
  awaitExit(pid, timeoutMs = 10_000) {
    return this.#capability.awaitExit(Number(pid), timeoutMs);
  }

  /** SIGKILLs every live process group and waits (bounded) for them to end. */
  shutdown(timeoutMs = 5000) {
    return this.#capability.shutdown(timeoutMs);
  }

  // ---- internals ----------------------------------------------------------

  async *#stream(position, first, { signal, pollMs = 1000 } = {}) {
    const cap = this.#capability;
    const pid = position.pid;
    if (first) yield first;
    while (!signal?.aborted) {
      const version = cap.version(pid);
      const step = this.#guarded((api) => api.streamNext(position, 0));
      if (step.trapped) {
        yield `event: error\ndata: ${JSON.stringify(JSON.parse(step.trapped.body))}\n\n`;
        return;
      }
      position = step.value.position;
      if (step.value.frames) yield step.value.frames;
      if (step.value.done) return;
      if (step.value.frames) continue;
      let wait = pollMs;
      if (position.deadline !== undefined && !position.timedOut) {
        wait = Math.min(wait, Math.max(0, Number(position.deadline - cap.nowMs())));
      }
      await cap.changed(pid, version, wait);
    }
  }

  #open(fn) {
    const result = this.#guarded((api) => {
      try {
        return { value: fn(api) };
      } catch (error) {
        // jco throws an export's `err` as a ComponentError whose payload
        // is the error value (here the error reply).
        if (error && Object.hasOwn(error, 'payload')) return { reply: error.payload };
        throw error;
      }
    });
    return result.trapped ? { reply: result.trapped } : result.value;
  }

  #call(fn) {
    const result = this.#guarded(fn);
    return result.trapped ?? result.value;
  }

  /**
   * Runs `fn` against the guest. A trap (a guest bug) leaves that instance
   * unusable: the call gets a 500 reply and a fresh instance is made; the
   * processes live in the capability, so none is lost.
   */
  #guarded(fn) {
    if (this.#restarting) return { trapped: internalReply(`the guest is restarting after a trap: ${this.#trap}`) };
    try {
      return { value: fn(this.#api) };
    } catch (error) {
      if (!(error instanceof WebAssembly.RuntimeError)) throw error;
      this.#trap = error.message;
      this.#restarting = instantiateGuest(this.#capability.imports(), { check: false })
        .then((api) => {
          this.#api = api;
        })
        .finally(() => {
          this.#restarting = null;
        });
      return { trapped: internalReply(`the guest trapped: ${error.message}`) };
    }
  }
}

/**
 * Loads the guest and returns a Host over `options.capability`, or over a
 * new NodeProcessCapability made with `options.capabilityOptions`.
 */
export async function createHost({ capability, capabilityOptions } = {}) {
  const cap = capability ?? new NodeProcessCapability(capabilityOptions);
  const api = await instantiateGuest(cap.imports());
  return new Host(api, cap);
}

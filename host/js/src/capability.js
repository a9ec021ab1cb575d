// The `sandbox:process/process` capability, in JavaScript on
// node:child_process: what the guest component imports to start and manage
// operating-system processes (wit/process.wit).
//
// The guest calls these functions synchronously from inside WebAssembly, so
// none of them can wait for the event loop: `read-output` and `wait` return
// the current state at once whatever wait they are asked for, and output,
// exits and pipe closes are recorded by event handlers between two calls.
// A JavaScript caller waits natively instead, with `changed`, `awaitExit`.

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, isAbsolute, resolve as resolvePath } from 'node:path';

import {
  BLOCK_COST_BYTES,
  CaptureBuffer,
  DEFAULT_CAPTURE_BYTES,
  DEFAULT_MAX_LINE_BYTES,
  LINE_COST_BYTES,
  LineSplitter,
} from './capture.js';
import { DEFAULT_LOCALE, FALLBACK_PATH, defaultBaseEnv, userEnv } from './environment.js';

export { CaptureBuffer, LineSplitter, DEFAULT_CAPTURE_BYTES, DEFAULT_MAX_LINE_BYTES, LINE_COST_BYTES, BLOCK_COST_BYTES };
export { DEFAULT_LOCALE, defaultBaseEnv, userEnv };

/** The version `summary` reports. */
export const VERSION = '0.1.0';
/** The lowest and highest signal number delivered. */
const SIGNAL_MIN = 1;
const SIGNAL_MAX = 64;
/** Stdin bytes queued for a child that has not read them yet. */
export const DEFAULT_MAX_STDIN_PENDING_BYTES = 16 * 1024 * 1024;

/** Capabilities whose live groups are killed when Node exits. */
const killOnExit = new Set();
let exitHook = false;

/** Signal names Node reports, by number. */
const SIGNAL_NUMBERS = osConstants.signals;

/**
 * A refused or failed capability call: `payload` is the WIT `process-error`
 * variant, `{ tag, val }`.
 *
 * jco lowers an exception thrown by a `result<_, E>` import as `err`: the
 * generated code takes an own `payload` property when there is one (as
 * here), takes any other non-Error value as the payload itself, and traps
 * on an Error without `payload`. Being an Error keeps the stack trace for
 * JavaScript callers of the capability.
 */
export class ProcessError extends Error {
  constructor(tag, val) {
    super(`${tag}: ${val}`);
    this.name = 'ProcessError';
    Object.defineProperty(this, 'payload', { value: { tag, val }, enumerable: true });
  }
}

const fail = (tag, val) => {
  throw new ProcessError(tag, val);
};

/** What the OS says for the errno codes that spawning meets. */
const OS_REASONS = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EPERM: 'Operation not permitted',
  ENOEXEC: 'Exec format error',
  EAGAIN: 'Resource temporarily unavailable',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  ENOMEM: 'Cannot allocate memory',
};

/**
 * Errno codes of a spawn that mean the host is full, not that the request
 * is wrong: `limit-exceeded` (429), as the Rust host answers, never
 * `spawn-failed` (400).
 */
const EXHAUSTED = {
  EMFILE: "file descriptors: the host's open-file limit is reached (RLIMIT_NOFILE)",
  ENFILE: 'file descriptors: the system-wide limit is reached (fs.file-max)',
  EAGAIN: 'processes: a process limit is reached (RLIMIT_NPROC, pids.max or kernel.threads-max)',
  ENOMEM: 'memory or process ids (kernel.pid_max)',
};

const reasonOf = (error) => {
  const text = OS_REASONS[error.code];
  return text ? `${text} (${error.code})` : error.message;
};

/** Untrusted text in a message: control characters escaped, cut short. */
const shown = (text) => {
  const chars = [...text];
  const escaped = chars
    .slice(0, 200)
    .map((c) => (/[\u0000-\u001f\u007f]/.test(c) ? JSON.stringify(c).slice(1, -1) : c))
    .join('');
  return chars.length > 200 ? `${escaped}…` : escaped;
};

/**
 * Finds the file `command` names the way a shell (execvp) does: a name with
 * a `/` is a path (relative to `cwd`); any other is looked up in the
 * directories of `path`. Returns the file, or throws the errno that exec
 * would fail with (EACCES if some candidate was not executable, else ENOENT).
 */
export function resolveCommand(command, path, cwd) {
  const executable = (file) => {
    const stat = statSync(file);
    if (!stat.isFile()) throw Object.assign(new Error('not a file'), { code: 'EACCES' });
    accessSync(file, fsConstants.X_OK);
    return file;
  };
  if (command.includes('/')) return executable(resolvePath(cwd, command));
  let denied = null;
  for (const dir of path.split(delimiter)) {
    const file = resolvePath(cwd, dir === '' ? '.' : dir, command);
    try {
      return executable(file);
    } catch (error) {
      if (error.code === 'EACCES') denied = error;
    }
  }
  throw denied ?? Object.assign(new Error('not found'), { code: 'ENOENT' });
}

/**
 * The process capability on node:child_process. One instance is one host:
 * it keeps every process it started (running or ended) by pid, in start
 * order, for as long as it lives.
 */
export class NodeProcessCapability {
  #processes = new Map();
  /** Ended processes (exited, pipes closed), oldest first, for forgetting. */
  #ended = [];
  #started = Date.now();
  #total = 0;
  #options;

  /**
   * @param {object} [options]
   * @param {Record<string,string>} [options.baseEnv] the environment every
   *   child starts from (default: `defaultBaseEnv()`: HOME, USER, LOGNAME,
   *   SHELL of this process's user, its PATH, LANG=C.UTF-8, read once
   *   here); the request's variables are added over it. Never the whole
   *   process.env.
   * @param {string} [options.defaultWorkingDir] where a request without a
   *   working dir starts (default: the host's current directory)
   * @param {number} [options.captureBytes] cap per stream, bytes (4 MiB),
   *   counting each line's text and end, and 64 bytes per block of up to
   *   256 lines read together (capture.js)
   * @param {number} [options.maxLineBytes] longer lines are split (64 KiB)
   * @param {number} [options.maxProcesses] running processes at once (1024)
   * @param {number} [options.maxStdinPendingBytes] queued stdin per child (16 MiB)
   * @param {number} [options.maxRetainedExited] ended processes kept; past
   *   it the oldest ended ones are forgotten (1024)
   * @param {boolean} [options.killOnExit] SIGKILL the live groups when this
   *   Node process exits (its 'exit' event; not on a fatal signal) (true)
   * @param {(request: object) => string|undefined} [options.policy] returns
   *   a reason to refuse a (validated) start request, `denied`; or nothing
   */
  constructor(options = {}) {
    const captureBytes = options.captureBytes ?? DEFAULT_CAPTURE_BYTES;
    this.#options = {
      baseEnv: options.baseEnv ?? defaultBaseEnv(),
      defaultWorkingDir: options.defaultWorkingDir ?? process.cwd(),
      captureBytes,
      maxLineBytes: Math.min(
        options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
        Math.max(4, captureBytes - BLOCK_COST_BYTES - LINE_COST_BYTES),
      ),
      maxProcesses: options.maxProcesses ?? 1024,
      maxStdinPendingBytes: options.maxStdinPendingBytes ?? DEFAULT_MAX_STDIN_PENDING_BYTES,
      maxRetainedExited: options.maxRetainedExited ?? 1024,
      policy: options.policy,
    };
    if (options.killOnExit ?? true) {
      killOnExit.add(this);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const cap of killOnExit) cap.#killAll();
        });
      }
    }
  }

  // ---- the WIT functions (camelCase, jco's names) ------------------------

  /** `start`: spawns the request in a process group of its own. */
  start(request) {
    const o = this.#options;
    const command = request.command;
    const args = [...request.args];
    if (typeof command !== 'string' || command === '' || command.includes('\0')) {
      fail('invalid-request', 'field `command` must be a non-empty string without NUL');
    }
    if (args.some((a) => a.includes('\0'))) fail('invalid-request', 'field `args` must not contain a NUL byte');
    // No prototype: a variable named `__proto__` is a variable like any other.
    const env = Object.assign(Object.create(null), o.baseEnv);
    for (const { name, value } of request.env) {
      if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
        fail('invalid-request', `field \`env.${shown(name)}\` is not a valid variable`);
      }
      env[name] = value;
    }
    const denial = o.policy?.(request);
    if (denial) fail('denied', denial);
    if (this.#running() >= o.maxProcesses) {
      fail('limit-exceeded', `at most ${o.maxProcesses} processes may run at once`);
    }

    // Node reports a failed exec only later, as an 'error' event with no
    // way to tell the command from the directory: check both first, so the
    // reply is synchronous and names what is wrong.
    const cwd = request.workingDir ?? o.defaultWorkingDir;
    try {
      if (!statSync(cwd).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      accessSync(cwd, fsConstants.X_OK);
    } catch (error) {
      fail('spawn-failed', `working directory \`${shown(cwd)}\`: ${reasonOf(error)}`);
    }
    let file;
    try {
      file = resolveCommand(command, env.PATH ?? FALLBACK_PATH, cwd);
    } catch (error) {
      fail('spawn-failed', `\`${shown(command)}\`: ${reasonOf(error)}`);
    }

    const stdinPipe = request.stdinMode === 'pipe';
    const capture = { stdout: request.stdoutMode === 'capture', stderr: request.stderrMode === 'capture' };
    let child;
    try {
      child = spawn(file, args, {
        argv0: command,
        cwd,
        env,
        detached: true,
        stdio: [stdinPipe ? 'pipe' : 'ignore', capture.stdout ? 'pipe' : 'ignore', capture.stderr ? 'pipe' : 'ignore'],
        windowsHide: true,
      });
    } catch (error) {
      const doing = `starting \`${shown(command)}\`: ${reasonOf(error)}`;
      if (EXHAUSTED[error.code]) fail('limit-exceeded', `the host is out of ${EXHAUSTED[error.code]}; ${doing}`);
      fail('spawn-failed', `\`${shown(command)}\`: ${reasonOf(error)}`);
    }
    // Without a listener an 'error' event would throw in the event loop.
    child.on('error', () => {});
    if (child.pid === undefined) {
      // Checked above, so a race or an exec failure (bad interpreter line,
      // wrong binary format): Node tells the errno only asynchronously.
      fail('spawn-failed', `\`${shown(command)}\`: the OS could not execute \`${shown(file)}\` (ENOENT or EACCES)`);
    }

    const now = Date.now();
    const rec = {
      pid: child.pid,
      child,
      command,
      args,
      startedAt: now,
      status: 'running',
      exitCode: undefined,
      signal: undefined,
      endedAt: undefined,
      stdinPipe,
      stdin: stdinPipe ? child.stdin : null,
      capture: new CaptureBuffer({ capBytes: o.captureBytes }),
      openPipes: new Set(),
      version: 0,
      waiters: new Set(),
      counted: false,
    };
    if (rec.stdin) {
      // EPIPE once the child stops reading: the pipe is over, not the host.
      rec.stdin.on('error', () => {
        rec.stdin = null;
        this.#changed(rec);
      });
    }
    for (const stream of ['stdout', 'stderr']) {
      if (!capture[stream]) continue;
      const pipe = child[stream];
      rec.openPipes.add(stream);
      // The lines of one chunk are kept together, as one block.
      const lines = [];
      const splitter = new LineSplitter((line) => lines.push(line), o.maxLineBytes);
      const keep = () => {
        if (lines.length === 0) return;
        rec.capture.pushLines(stream, lines.splice(0), Date.now());
        this.#changed(rec);
      };
      pipe.on('data', (chunk) => {
        splitter.push(chunk);
        keep();
      });
      const closed = () => {
        if (!rec.openPipes.has(stream)) return;
        splitter.end();
        keep();
        rec.openPipes.delete(stream);
        this.#changed(rec);
      };
      pipe.on('end', closed);
      pipe.on('close', closed);
      pipe.on('error', closed);
    }
    child.on('exit', (code, signalName) => {
      rec.endedAt = Date.now();
      if (code !== null) {
        rec.status = 'exited';
        rec.exitCode = code;
      } else if (signalName && SIGNAL_NUMBERS[signalName] !== undefined) {
        rec.status = 'signaled';
        rec.signal = SIGNAL_NUMBERS[signalName];
      } else {
        // Node passes (0, '') for a signal it has no name for (the real-time
        // ones): the number is lost, see README.
        rec.status = 'exited';
        rec.exitCode = code ?? 0;
      }
      if (rec.stdin) {
        rec.stdin.destroy();
        rec.stdin = null;
      }
      this.#changed(rec);
    });

    if (this.#processes.has(rec.pid)) this.#processes.delete(rec.pid); // pid reused: newest wins
    this.#processes.set(rec.pid, rec);
    this.#total++;
    return this.#info(rec);
  }

  /** `get`: the current state of one process; never waits. */
  get(pid) {
    return this.#info(this.#lookup(pid));
  }

  /** `list`: every process, in start order. */
  list() {
    return [...this.#processes.values()].map((rec) => this.#info(rec));
  }

  /** `signal`: sends `signal` (1..64) to the process group. */
  signal(pid, signal) {
    if (!Number.isInteger(signal) || signal < SIGNAL_MIN || signal > SIGNAL_MAX) fail('invalid-signal', signal);
    const rec = this.#lookup(pid);
    if (rec.status !== 'running') fail('not-running', pid);
    try {
      process.kill(-rec.pid, signal);
    } catch (error) {
      // ESRCH: the group is gone and Node has not told us the exit yet.
      if (error.code === 'ESRCH') fail('not-running', pid);
      fail('internal', `signal ${signal} to process group ${pid}: ${reasonOf(error)}`);
    }
  }

  /**
   * `kill`: SIGKILL to the process group. A process that has ended is left
   * alone, except that a group member still holding its output pipes open
   * is killed too (so that the output can complete).
   */
  kill(pid) {
    const rec = this.#lookup(pid);
    if (rec.status !== 'running' && rec.openPipes.size === 0) return;
    try {
      process.kill(-rec.pid, 'SIGKILL');
    } catch (error) {
      if (error.code !== 'ESRCH') fail('internal', `SIGKILL to process group ${pid}: ${reasonOf(error)}`);
    }
  }

  /** `write-stdin`: queues all of `data` for the child's stdin pipe. */
  writeStdin(pid, data) {
    const rec = this.#lookup(pid);
    if (!rec.stdinPipe) fail('stdin-not-writable', { pid, state: 'not-a-pipe' });
    if (!rec.stdin || rec.stdin.writableEnded || rec.stdin.destroyed) fail('stdin-not-writable', { pid, state: 'closed' });
    if (rec.stdin.writableLength + data.length > this.#options.maxStdinPendingBytes) {
      fail('limit-exceeded', `process ${pid} has not read ${rec.stdin.writableLength} bytes of stdin yet`);
    }
    // A copy: the caller's bytes may be a view of guest memory.
    if (data.length > 0) rec.stdin.write(Buffer.from(data));
  }

  /**
   * `close-stdin`: ends the stdin pipe; the child reads end-of-file. A pipe
   * closed already is success, so a retried close is harmless.
   */
  closeStdin(pid) {
    const rec = this.#lookup(pid);
    if (!rec.stdinPipe) fail('stdin-not-writable', { pid, state: 'not-a-pipe' });
    if (!rec.stdin || rec.stdin.writableEnded || rec.stdin.destroyed) return;
    rec.stdin.end();
    rec.stdin = null;
    this.#changed(rec);
  }

  /**
   * `read-output`: up to `maxLines` captured lines after `cursor`. Returns
   * at once: `waitMs` is ignored, since nothing arrives while the caller
   * blocks the event loop (wait with `changed` between two reads instead).
   */
  readOutput(pid, selector, cursor, maxLines, _waitMs) {
    const rec = this.#lookup(pid);
    const from = BigInt(cursor) > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cursor);
    const read = rec.capture.read(selector, from, maxLines);
    const complete = rec.status !== 'running' && rec.openPipes.size === 0 && read.atEnd;
    return {
      lines: read.lines.map((l) => ({ stream: l.stream, line: l.line, timestamp: BigInt(l.timestamp) })),
      // Nothing returned: the cursor stays as given (even past 2^53).
      nextCursor: read.lines.length ? BigInt(read.nextCursor) : BigInt(cursor),
      dropped: BigInt(read.dropped),
      // Lines after these are there already (this host returns as many as
      // asked for: no bound of its own on one answer).
      more: !read.atEnd,
      complete,
    };
  }

  /** `wait`: the current state at once (see `readOutput` on waiting). */
  wait(pid, _timeoutMs) {
    return this.get(pid);
  }

  /** `summary`: counts and uptime. */
  summary() {
    return {
      version: VERSION,
      uptimeSecs: BigInt(Math.floor((Date.now() - this.#started) / 1000)),
      runningProcesses: this.#running(),
      totalProcesses: BigInt(this.#total),
    };
  }

  /** `now-ms`: the wall clock, ms since the epoch. */
  nowMs() {
    return BigInt(Date.now());
  }

  // ---- for JavaScript callers (not part of the WIT interface) ------------

  /**
   * The import object for jco's `instantiate`: this capability as the
   * `sandbox:process/process` interface. Each call is guarded so that a
   * bug here becomes an `internal` error instead of a trap in the guest.
   */
  imports() {
    const names = ['start', 'get', 'list', 'signal', 'kill', 'writeStdin', 'closeStdin', 'readOutput', 'wait', 'summary', 'nowMs'];
    const iface = {};
    for (const name of names) {
      const fn = this[name].bind(this);
      const infallible = name === 'list' || name === 'summary' || name === 'nowMs';
      iface[name] = infallible
        ? fn
        : (...args) => {
            try {
              return fn(...args);
            } catch (error) {
              if (error instanceof ProcessError) throw error;
              throw new ProcessError('internal', `${name}: ${error?.message ?? error}`);
            }
          };
    }
    return { 'sandbox:process/process': iface };
  }

  /**
   * Resolves after the next change to `pid` (a line, an exit, a pipe or
   * stdin closing) after `version`, or after `timeoutMs`, with the new
   * version. Pass the version you last saw (from `version(pid)`) so that a
   * change in between is never missed.
   */
  changed(pid, version, timeoutMs) {
    const rec = this.#processes.get(pid);
    if (!rec) return Promise.resolve(-1);
    return this.#changedRec(rec, version, timeoutMs);
  }

  /** The change counter of `pid`, for `changed` (-1 for an unknown pid). */
  version(pid) {
    return this.#processes.get(pid)?.version ?? -1;
  }

  /** True when `pid` has exited and its captured pipes are closed. */
  isFinished(pid) {
    const rec = this.#lookup(pid);
    return rec.status !== 'running' && rec.openPipes.size === 0;
  }

  /**
   * Resolves true once `pid` has exited and its output pipes have closed,
   * false if `timeoutMs` passes first.
   */
  async awaitExit(pid, timeoutMs) {
    // The record itself, not the pid: it may be forgotten meanwhile.
    const rec = this.#lookup(pid);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const version = rec.version;
      if (rec.status !== 'running' && rec.openPipes.size === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.#changedRec(rec, version, left);
    }
  }

  /**
   * SIGKILLs every group that still runs (or holds its pipes open) and
   * resolves when they have all ended, or after `timeoutMs`.
   */
  async shutdown(timeoutMs = 5000) {
    const live = this.#killAll();
    await Promise.all(live.map((rec) => this.awaitExit(rec.pid, timeoutMs)));
    killOnExit.delete(this);
  }

  // ---- internals ----------------------------------------------------------

  #changedRec(rec, version, timeoutMs) {
    if (rec.version !== version) return Promise.resolve(rec.version);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        rec.waiters.delete(done);
        resolve(rec.version);
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      rec.waiters.add(done);
    });
  }

  #lookup(pid) {
    const rec = this.#processes.get(pid);
    if (!rec) fail('not-found', pid);
    return rec;
  }

  #running() {
    let n = 0;
    for (const rec of this.#processes.values()) if (rec.status === 'running') n++;
    return n;
  }

  #changed(rec) {
    rec.version++;
    for (const waiter of [...rec.waiters]) waiter();
    if (rec.status !== 'running' && rec.openPipes.size === 0 && !rec.counted) {
      rec.counted = true;
      this.#ended.push(rec);
      this.#forget();
    }
  }

  /** Forgets the oldest ended processes past `maxRetainedExited`. */
  #forget() {
    while (this.#ended.length > this.#options.maxRetainedExited) {
      const old = this.#ended.shift();
      if (this.#processes.get(old.pid) === old) this.#processes.delete(old.pid);
    }
  }

  /** SIGKILL to every group that runs or holds its pipes open. */
  #killAll() {
    const live = [...this.#processes.values()].filter((rec) => rec.status === 'running' || rec.openPipes.size > 0);
    for (const rec of live) {
      try {
        process.kill(-rec.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      rec.stdin?.destroy();
    }
    return live;
  }

  #info(rec) {
    return {
      pid: rec.pid,
      status: rec.status,
      stdinWritable: rec.stdin !== null && !rec.stdin.writableEnded && !rec.stdin.destroyed,
      command: rec.command,
      args: [...rec.args],
      startedAt: BigInt(rec.startedAt),
      exitCode: rec.exitCode,
      signal: rec.signal,
      endedAt: rec.endedAt === undefined ? undefined : BigInt(rec.endedAt),
    };
  }
}

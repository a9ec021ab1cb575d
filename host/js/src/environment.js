// The environment a child starts from when nobody says otherwise, as the
// Rust host builds it (host/src/capability/environment.rs): who it runs
// as, from the user database; where commands are found; a UTF-8 locale.
// git, pip, npm, cargo and shells need HOME; without a UTF-8 locale
// programs count bytes as characters. Only PATH is taken from this
// process's own environment: nothing else of it (tokens, credentials,
// proxies) reaches a child unless the embedder passes it. No TERM: a child
// has pipes, not a terminal.

import { userInfo } from 'node:os';

/** PATH for children when the host has none (what libuv and glibc use too). */
export const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin';
/** LANG for children unless the embedder chooses another. */
export const DEFAULT_LOCALE = 'C.UTF-8';
/**
 * HOME of a user without a user database entry: what login(1) and Docker
 * use. Not the working directory, where tools would scatter their dotfiles.
 */
export const FALLBACK_HOME = '/';
/** SHELL of a user without an entry: an empty shell field means /bin/sh. */
export const FALLBACK_SHELL = '/bin/sh';

/**
 * This process's user database entry (`os.userInfo()`, getpwuid_r of the
 * effective uid), or null when there is none, as for an arbitrary uid in a
 * container. `lookup` stands in for `os.userInfo` in tests.
 */
export function currentUser(lookup = userInfo) {
  try {
    return lookup();
  } catch (error) {
    // Node reports a missing entry as ERR_SYSTEM_ERROR with libuv's ENOENT inside.
    if (error.info?.code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * HOME, USER, LOGNAME and SHELL, in this order, from a user database entry
 * (`{ username, homedir, shell }`, as `os.userInfo()` gives it) or null.
 * Without one (or with empty fields) HOME is `/` and SHELL `/bin/sh`, and
 * USER and LOGNAME are left out: a made-up name would not be found either.
 */
export function userEnv(user) {
  const env = { HOME: user?.homedir || FALLBACK_HOME };
  if (user?.username) {
    env.USER = user.username;
    env.LOGNAME = user.username;
  }
  env.SHELL = user?.shell || FALLBACK_SHELL;
  return env;
}

/**
 * The default base environment of a child: the user's variables, then PATH
 * (`path`, else the fallback) and LANG (`locale`). The variables of
 * `process.env` other than PATH are not read.
 *
 * @param {object} [options]
 * @param {object|null} [options.user] the entry (default: `currentUser()`)
 * @param {string} [options.path] (default: `process.env.PATH`)
 * @param {string} [options.locale] (default: `C.UTF-8`)
 */
export function defaultBaseEnv({ user = currentUser(), path = process.env.PATH, locale = DEFAULT_LOCALE } = {}) {
  return { ...userEnv(user), PATH: path || FALLBACK_PATH, LANG: locale };
}

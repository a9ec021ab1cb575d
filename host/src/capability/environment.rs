//! The environment a child starts from when nobody says otherwise: who it
//! runs as, where commands are found, and a UTF-8 locale.
//!
//! Everyday tools can't do without these: git, pip, npm and cargo keep
//! their configuration and caches under `HOME`, shells expand `~` from it,
//! some tools name the user from `USER`/`LOGNAME` without asking the user
//! database, and without a UTF-8 locale programs count bytes as characters
//! (`wc -m`, `cut -c`) or refuse non-ASCII text. Each value is computed
//! (from the user database, or fixed), never copied from the server's own
//! environment, so nothing the server was given (its token, credentials,
//! proxies) reaches a child that way. `PATH` is the one exception, taken
//! from the server on purpose: it is where the machine's commands are.
//!
//! `TERM` is deliberately absent: it describes a terminal, and a child of
//! this capability has pipes, not a terminal.

use std::ffi::{CStr, OsString};
use std::io;

/// The `PATH` of a child when the server has none: the system directories.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The locale (`LANG`) of a child unless the operator chooses another:
/// UTF-8 text with the C locale's rules for everything else (sorting,
/// messages, numbers), so programs behave the same on every machine. glibc
/// has it built in since 2.35, Debian and Fedora shipped it before, and
/// musl treats every locale as UTF-8.
pub const DEFAULT_LOCALE: &str = "C.UTF-8";

/// `HOME` of a user the database has no entry for, or an empty home: what
/// login(1) falls back to and what Docker gives a numeric `--user`. Not the
/// working directory: tools would then scatter their dotfiles and caches in
/// the project being worked on, and every request's `working_dir` would
/// read a different configuration.
pub const FALLBACK_HOME: &str = "/";

/// `SHELL` of a user the database has no entry for, or an empty shell:
/// passwd(5) says an empty shell field means `/bin/sh`.
pub const FALLBACK_SHELL: &str = "/bin/sh";

/// The fields of a user database entry a child's environment is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The login name (`pw_name`).
    pub name: String,
    /// The home directory (`pw_dir`); may be empty.
    pub home: String,
    /// The login shell (`pw_shell`); may be empty.
    pub shell: String,
}

/// The largest buffer offered to `getpwuid_r`: an entry bigger than this is
/// an error, not a reason to allocate without end.
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Looks `uid` up in the user database (`getpwuid_r`: `/etc/passwd`, or
/// whatever NSS is configured to ask). `Ok(None)` when the database has no
/// entry for it, as for an arbitrary uid in a container; an error when the
/// database can't be read or the entry is not UTF-8.
pub fn lookup_user(uid: u32) -> io::Result<Option<UserEntry>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain data (integers and pointers); zero is a
        // valid value for every field, and getpwuid_r overwrites them.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, the buffer for its
        // length; the strings `entry` points to live in `buf`, read below
        // before `buf` changes.
        let rc = unsafe { libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
        match rc {
            libc::ERANGE if buf.len() < MAX_ENTRY_BYTES => buf.resize(buf.len() * 2, 0),
            // Some NSS modules say "not found" with an error number.
            0 | libc::ENOENT | libc::ESRCH if found.is_null() => return Ok(None),
            0 => {
                let field = |ptr: *const libc::c_char, what: &str| -> io::Result<String> {
                    if ptr.is_null() {
                        return Ok(String::new());
                    }
                    // SAFETY: a non-null field of the entry getpwuid_r
                    // filled is a NUL-terminated string inside `buf`.
                    let text = unsafe { CStr::from_ptr(ptr) };
                    text.to_str().map(str::to_owned).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the {what} of uid {uid} in the user database is not UTF-8"),
                        )
                    })
                };
                return Ok(Some(UserEntry {
                    name: field(entry.pw_name, "name")?,
                    home: field(entry.pw_dir, "home directory")?,
                    shell: field(entry.pw_shell, "shell")?,
                }));
            }
            errno => {
                let cause = io::Error::from_raw_os_error(errno);
                return Err(io::Error::new(
                    cause.kind(),
                    format!("looking up uid {uid} in the user database: {cause}"),
                ));
            }
        }
    }
}

/// The variables that say who a child is: `HOME`, `USER`, `LOGNAME` and
/// `SHELL`, in this order, from the user database entry of the user it runs
/// as. Without an entry (or with empty fields) `HOME` is [`FALLBACK_HOME`]
/// and `SHELL` [`FALLBACK_SHELL`], and `USER` and `LOGNAME` are left out:
/// a made-up name would be looked up by tools and not found either.
pub fn user_env(entry: Option<&UserEntry>) -> Vec<(String, String)> {
    let or = |value: Option<&str>, fallback: &str| value.filter(|v| !v.is_empty()).unwrap_or(fallback).to_owned();
    let mut env = vec![("HOME".to_owned(), or(entry.map(|e| e.home.as_str()), FALLBACK_HOME))];
    if let Some(entry) = entry.filter(|e| !e.name.is_empty()) {
        env.push(("USER".to_owned(), entry.name.clone()));
        env.push(("LOGNAME".to_owned(), entry.name.clone()));
    }
    env.push(("SHELL".to_owned(), or(entry.map(|e| e.shell.as_str()), FALLBACK_SHELL)));
    env
}

/// [`user_env`] for `uid`, as the user database has it now. A database
/// that can't be read counts as no entry; either is logged, since children
/// then get the fallbacks.
pub fn user_env_of(uid: u32) -> Vec<(String, String)> {
    let entry = match lookup_user(uid) {
        Ok(Some(entry)) => Some(entry),
        Ok(None) => {
            tracing::warn!(
                uid,
                "no user database entry for the children's user: they get HOME={FALLBACK_HOME} and \
                 SHELL={FALLBACK_SHELL}, and no USER or LOGNAME (--env HOME=DIR gives them a writable home)"
            );
            None
        }
        Err(e) => {
            tracing::warn!(uid, error = %e, "children get HOME={FALLBACK_HOME}, SHELL={FALLBACK_SHELL}, no USER");
            None
        }
    };
    user_env(entry.as_ref())
}

/// The effective uid of this process: the user its children run as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and can't fail.
    unsafe { libc::geteuid() }
}

/// The `PATH` of a child: the server's own (`server_path`, its `PATH`) when
/// it is set, not empty and UTF-8; [`DEFAULT_PATH`] otherwise.
pub fn child_path(server_path: Option<OsString>) -> String {
    server_path.and_then(|p| p.into_string().ok()).filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.to_owned())
}

/// Sets `name` to `value` in `env`: in place when it is there (so the
/// order of the others stays as it was), at the end otherwise; any later
/// duplicate of `name` goes.
pub fn set_var(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    match env.iter().position(|(k, _)| k == name) {
        Some(first) => {
            env[first].1 = value.to_owned();
            let mut index = 0;
            env.retain(|(k, _)| {
                index += 1;
                index - 1 <= first || k != name
            });
        }
        None => env.push((name.to_owned(), value.to_owned())),
    }
}

/// Whether this machine's C library knows the locale `name` (children that
/// use another C library may still differ). A locale it doesn't know makes
/// programs fall back to the C locale, byte-based text included.
pub fn locale_is_available(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: `name` is a valid C string; a null base asks for a new
    // object, which is freed at once.
    unsafe {
        let locale = libc::newlocale(libc::LC_ALL_MASK, name.as_ptr(), std::ptr::null_mut());
        if locale.is_null() {
            return false;
        }
        libc::freelocale(locale);
    }
    true
}

#[cfg(test)]
mod tests;

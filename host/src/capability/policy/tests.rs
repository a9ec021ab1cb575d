//! Unit tests of the policy checks and of command and directory resolution,
//! on a scratch directory tree; nothing is spawned.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;
use crate::types::{EnvVar, OutputMode, StdinMode};

/// A fresh scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("capability-policy-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn request(command: &str) -> StartRequest {
    StartRequest {
        command: command.to_owned(),
        args: vec![],
        env: vec![],
        working_dir: None,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Capture,
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: value.to_owned() }
}

fn script(path: &Path, mode: u32) {
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn defaults_are_minimal_and_documented() {
    let p = Policy::default();
    let server_path = std::env::var("PATH").expect("cargo runs tests with a PATH");
    assert_eq!(p.base_env, [("PATH".to_owned(), server_path), ("LANG".to_owned(), "C.UTF-8".to_owned())]);
    assert!(p.user_env);
    assert!(p.allowed_commands.is_none() && p.working_dir_root.is_none() && p.forbidden_env.is_empty());
    assert!(p.kill_on_host_death);
    assert_eq!(p.containment, Containment::Auto);
    let l = Limits::default();
    assert_eq!(
        (l.max_processes, l.capture_bytes, l.max_line_bytes, l.max_retained_exited),
        (1024, 4 << 20, 64 << 10, 1024)
    );
    assert_eq!(l.stdin_write_timeout, Duration::from_secs(10));
}

#[test]
fn request_env_overrides_base_and_forbidden_names_are_denied() {
    let policy = Policy {
        base_env: vec![("PATH".into(), "/bin".into()), ("A".into(), "base".into())],
        user_env: false,
        forbidden_env: vec!["LD_PRELOAD".into()],
        ..Policy::default()
    };
    let checked = CheckedPolicy::new(policy);
    let mut req = request("sh");
    req.env = vec![env("A", "mine"), env("B", "b")];
    let prepared = checked.prepare(&req).unwrap();
    assert_eq!(prepared.env, [("PATH".into(), "/bin".into()), ("A".into(), "mine".into()), ("B".into(), "b".into())]);
    req.env.push(env("LD_PRELOAD", "/x.so"));
    match checked.prepare(&req) {
        Err(ProcessError::Denied(msg)) => {
            assert_eq!(msg, "env `LD_PRELOAD` is forbidden by policy")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_users_variables_lie_under_the_base_and_the_request() {
    let user = crate::capability::environment::user_env_of(crate::capability::environment::effective_uid());
    let home = |env: &[(String, String)]| env.iter().find(|(k, _)| k == "HOME").map(|(_, v)| v.clone());
    let checked = CheckedPolicy::new(Policy::default());
    let prepared = checked.prepare(&request("sh")).unwrap();
    // Exactly the user's variables, then the base's, in that order.
    assert_eq!(prepared.env, [user.clone(), Policy::default().base_env].concat());
    assert!(home(&prepared.env).is_some_and(|h| h.starts_with('/')), "{:?}", prepared.env);

    // The base overrides the user's HOME in place; the request overrides both.
    let mut base_env = Policy::default().base_env;
    base_env.push(("HOME".into(), "/srv/home".into()));
    let checked = CheckedPolicy::new(Policy { base_env, ..Policy::default() });
    let mut vars = checked.prepare(&request("sh")).unwrap().env;
    assert_eq!(vars[0], ("HOME".to_owned(), "/srv/home".to_owned()));
    assert_eq!(vars.len(), user.len() + 2, "{vars:?}");
    let mut req = request("sh");
    req.env = vec![env("HOME", "/tmp"), env("LANG", "C")];
    vars = checked.prepare(&req).unwrap().env;
    assert_eq!(home(&vars).as_deref(), Some("/tmp"));
    assert!(vars.contains(&("LANG".to_owned(), "C".to_owned())) && vars.len() == user.len() + 2, "{vars:?}");

    // Off, nothing of the user's.
    let checked = CheckedPolicy::new(Policy { user_env: false, ..Policy::default() });
    assert_eq!(checked.prepare(&request("sh")).unwrap().env, Policy::default().base_env);
}

#[test]
fn syntax_is_checked_again() {
    let checked = CheckedPolicy::new(Policy::default());
    for req in [
        request(""),
        request("a\0b"),
        StartRequest { env: vec![env("A=B", "x")], ..request("sh") },
        StartRequest { env: vec![env("", "x")], ..request("sh") },
        StartRequest { args: vec!["\0".into()], ..request("sh") },
    ] {
        assert!(matches!(checked.prepare(&req), Err(ProcessError::InvalidRequest(_))), "{:?}", req.command);
    }
}

#[test]
fn commands_are_found_on_the_childs_path_only() {
    let s = Scratch::new("path");
    let bin = s.0.join("bin");
    fs::create_dir(&bin).unwrap();
    script(&bin.join("tool"), 0o755);
    script(&bin.join("data"), 0o644);
    let path = format!("relative:{}", bin.display());
    assert_eq!(resolve_command("tool", &s.0, Some(&path)).unwrap(), bin.join("tool"));
    for missing in ["data", "nope"] {
        match resolve_command(missing, &s.0, Some(&path)) {
            Err(ProcessError::SpawnFailed(msg)) => {
                assert_eq!(msg, format!("command `{missing}` not found on PATH ({path})"))
            }
            other => panic!("{other:?}"),
        }
    }
    // Not on the server's PATH either way: the child's PATH is what counts.
    assert!(resolve_command("tool", &s.0, Some("/usr/bin:/bin")).is_err());
    assert!(matches!(resolve_command("sh", &s.0, None), Err(ProcessError::SpawnFailed(m)) if m.contains("no PATH")));
}

#[test]
fn a_bare_name_never_runs_a_file_in_the_working_directory() {
    let s = Scratch::new("cwd");
    script(&s.0.join("evil"), 0o755);
    assert!(resolve_command("evil", &s.0, Some(":.:/bin")).is_err());
    assert_eq!(resolve_command("./evil", &s.0, Some("/bin")).unwrap(), s.0.join("evil"));
}

#[test]
fn paths_are_canonicalized_and_must_be_executable_files() {
    let s = Scratch::new("paths");
    script(&s.0.join("real"), 0o755);
    script(&s.0.join("plain"), 0o600);
    symlink(s.0.join("real"), s.0.join("link")).unwrap();
    assert_eq!(resolve_command("./link", &s.0, None).unwrap(), s.0.join("real"));
    let err = |cmd| match resolve_command(cmd, &s.0, None) {
        Err(ProcessError::SpawnFailed(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert_eq!(err("./plain"), "command `./plain`: Permission denied (not executable)");
    assert_eq!(err("./missing"), "command `./missing`: No such file or directory (os error 2)");
    assert_eq!(err("./"), "command `./`: not a regular file");
}

#[test]
fn the_allow_list_compares_canonical_paths() {
    let s = Scratch::new("allow");
    script(&s.0.join("real"), 0o755);
    script(&s.0.join("other"), 0o755);
    symlink(s.0.join("real"), s.0.join("alias")).unwrap();
    let policy = Policy {
        allowed_commands: Some(vec![s.0.join("alias")]),
        default_working_dir: s.0.clone(),
        ..Policy::default()
    };
    let checked = CheckedPolicy::new(policy);
    assert_eq!(checked.prepare(&request("./real")).unwrap().program, s.0.join("real"));
    assert!(
        matches!(checked.prepare(&request("./other")), Err(ProcessError::Denied(m)) if m.contains("not in the allowed"))
    );
}

#[test]
fn working_dirs_resolve_against_the_default_and_stay_in_the_root() {
    let s = Scratch::new("root");
    let root = s.0.join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::create_dir(s.0.join("outside")).unwrap();
    symlink(s.0.join("outside"), root.join("escape")).unwrap();
    fs::write(root.join("file"), "").unwrap();
    let checked = CheckedPolicy::new(Policy {
        working_dir_root: Some(root.clone()),
        default_working_dir: root.clone(),
        ..Policy::default()
    });
    assert_eq!(checked.working_dir(None).unwrap(), root);
    assert_eq!(checked.working_dir(Some("sub")).unwrap(), root.join("sub"));
    assert_eq!(checked.working_dir(Some("sub/..")).unwrap(), root);
    for escape in ["..", "sub/../..", "escape", "/", s.0.join("outside").to_str().unwrap()] {
        assert!(matches!(checked.working_dir(Some(escape)), Err(ProcessError::Denied(_))), "{escape}");
    }
    match checked.working_dir(Some("/nope")) {
        Err(ProcessError::SpawnFailed(m)) => {
            assert_eq!(m, "working_dir `/nope`: No such file or directory (os error 2)")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(checked.working_dir(Some("file")), Err(ProcessError::SpawnFailed(m)) if m.ends_with("Not a directory"))
    );
}

//! The default environment's parts, each checked against what the system
//! says through another way in (`getent`), and the fallbacks without an
//! entry.

use std::os::unix::ffi::OsStringExt;
use std::process::Command;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `getent passwd UID`: the entry's fields, or `None` when getent says
/// there is none (exit status 2).
fn getent(uid: u32) -> Option<Vec<String>> {
    let out = Command::new("getent").args(["passwd", &uid.to_string()]).output().expect("getent runs");
    if out.status.code() == Some(2) {
        return None;
    }
    assert!(out.status.success(), "getent passwd {uid}: {out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    Some(line.trim_end().split(':').map(str::to_owned).collect())
}

#[test]
fn an_entry_gives_home_user_logname_and_shell_in_this_order() {
    let entry = UserEntry { name: "ada".into(), home: "/home/ada".into(), shell: "/bin/zsh".into() };
    assert_eq!(
        user_env(Some(&entry)),
        vars(&[("HOME", "/home/ada"), ("USER", "ada"), ("LOGNAME", "ada"), ("SHELL", "/bin/zsh")])
    );
}

#[test]
fn without_an_entry_home_is_the_root_and_the_shell_is_sh() {
    assert_eq!(user_env(None), vars(&[("HOME", "/"), ("SHELL", "/bin/sh")]));
    // Empty fields mean the same as in login(1) and passwd(5).
    let empty = UserEntry { name: String::new(), home: String::new(), shell: String::new() };
    assert_eq!(user_env(Some(&empty)), vars(&[("HOME", "/"), ("SHELL", "/bin/sh")]));
}

#[test]
fn the_lookup_agrees_with_getent() {
    let uid = effective_uid();
    let fields = getent(uid).expect("the user running the tests has a user database entry");
    let entry = lookup_user(uid).unwrap().expect("an entry");
    assert_eq!(
        (entry.name.as_str(), entry.home.as_str(), entry.shell.as_str()),
        (&*fields[0], &*fields[5], &*fields[6])
    );
    assert_eq!(user_env_of(uid), user_env(Some(&entry)));
}

#[test]
fn a_uid_without_an_entry_is_found_missing_not_an_error() {
    // A uid far above any allocated range (but below (uid_t)-1, "no uid").
    let uid = 0x7fff_ff0e;
    assert_eq!(getent(uid), None, "the test needs uid {uid} to have no entry");
    assert_eq!(lookup_user(uid).unwrap(), None);
    assert_eq!(user_env_of(uid), user_env(None));
}

#[test]
fn path_is_the_servers_unless_it_has_none() {
    assert_eq!(child_path(Some("/opt/bin:/usr/bin".into())), "/opt/bin:/usr/bin");
    assert_eq!(child_path(None), DEFAULT_PATH);
    assert_eq!(child_path(Some("".into())), DEFAULT_PATH);
    assert_eq!(child_path(Some(OsString::from_vec(b"/opt/\xff".to_vec()))), DEFAULT_PATH);
}

#[test]
fn set_var_replaces_in_place_and_drops_later_duplicates() {
    let mut env = vars(&[("A", "1"), ("B", "2"), ("A", "3"), ("C", "4")]);
    set_var(&mut env, "A", "new");
    assert_eq!(env, vars(&[("A", "new"), ("B", "2"), ("C", "4")]));
    set_var(&mut env, "D", "5");
    assert_eq!(env, vars(&[("A", "new"), ("B", "2"), ("C", "4"), ("D", "5")]));
    set_var(&mut env, "C", "");
    assert_eq!(env, vars(&[("A", "new"), ("B", "2"), ("C", ""), ("D", "5")]));
}

#[test]
fn the_default_locale_is_known_and_a_made_up_one_is_not() {
    assert!(locale_is_available(DEFAULT_LOCALE), "{DEFAULT_LOCALE} should be built into the C library");
    assert!(!locale_is_available("xx_NOWHERE.UTF-8"));
    assert!(!locale_is_available("C\0.UTF-8"));
}

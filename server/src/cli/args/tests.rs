//! How the environment flags build the children's base environment, from a
//! made-up server environment (the real one is the test runner's).

use std::os::unix::ffi::OsStringExt;

use super::*;

const SECRET: &str = "t0ken-3c1f";

fn host_args(flags: &[&str]) -> HostArgs {
    let argv = ["sandbox-process", "exec"].iter().chain(flags).chain(&["{}"]);
    match Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{flags:?}: {e}")).command {
        Command::Exec(exec) => exec.host,
        other => panic!("{other:?}"),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn defaults() -> Vec<(String, String)> {
    vars(&[("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")])
}

/// A server environment with everything that must not get through.
fn server_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = [
        ("HOME", "/home/server"),
        ("LANG", "en_US.UTF-8"),
        ("CLOUD_KEY", "hunter2"),
        ("SANDBOX_PROCESS_TOKEN", SECRET),
        ("COPY_OF_IT", format!("Bearer {SECRET}").as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    env.push(("NOT_TEXT".into(), OsString::from_vec(b"\xff".to_vec())));
    env
}

fn base_env(flags: &[&str], secret: Option<&str>) -> Vec<(String, String)> {
    host_args(flags).base_env(defaults(), server_env(), secret).unwrap()
}

#[test]
fn without_flags_nothing_of_the_server_gets_in() {
    assert_eq!(base_env(&[], Some(SECRET)), defaults());
    assert_eq!(base_env(&["--env", "GIVEN=yes"], Some(SECRET)), [defaults(), vars(&[("GIVEN", "yes")])].concat());
}

#[test]
fn inheriting_adds_the_server_environment_but_never_the_token() {
    let env = base_env(&["--inherit-env"], Some(SECRET));
    assert_eq!(
        env,
        vars(&[("PATH", "/usr/bin:/bin"), ("LANG", "en_US.UTF-8"), ("HOME", "/home/server"), ("CLOUD_KEY", "hunter2")])
    );
    // Without a token to look for, only the variable named for it goes.
    let env = base_env(&["--inherit-env"], None);
    assert!(env.contains(&("COPY_OF_IT".to_owned(), format!("Bearer {SECRET}"))), "{env:?}");
    assert!(!env.iter().any(|(k, _)| k == "SANDBOX_PROCESS_TOKEN" || k == "NOT_TEXT"), "{env:?}");
}

#[test]
fn the_locale_flag_beats_an_inherited_lang_and_env_beats_both() {
    let lang = |flags: &[&str]| {
        let env = base_env(flags, None);
        env.iter().filter(|(k, _)| k == "LANG").map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    assert_eq!(lang(&[]), ["C.UTF-8"]);
    assert_eq!(lang(&["--locale", "en_GB.UTF-8"]), ["en_GB.UTF-8"]);
    assert_eq!(lang(&["--inherit-env"]), ["en_US.UTF-8"]);
    assert_eq!(lang(&["--inherit-env", "--locale", "C"]), ["C"]);
    assert_eq!(lang(&["--locale", "C", "--env", "LANG=POSIX"]), ["POSIX"]);
    // --env replaces a default where it stands.
    assert_eq!(base_env(&["--env", "PATH=/opt/bin"], None), vars(&[("PATH", "/opt/bin"), ("LANG", "C.UTF-8")]));
}

#[test]
fn an_env_flag_that_holds_the_token_is_refused() {
    let args = host_args(&["--env", &format!("API=x{SECRET}x")]);
    let err = args.base_env(defaults(), server_env(), Some(SECRET)).unwrap_err().to_string();
    assert_eq!(err, "--env API: the value holds the server's token, which children must never see");
    assert!(args.base_env(defaults(), server_env(), None).is_ok());
    // An empty token is no token (it would be in every value).
    assert!(args.base_env(defaults(), server_env(), Some("")).is_ok());
}

#[test]
fn bad_locales_are_refused_by_name() {
    for bad in ["", "C=x"] {
        let err = Cli::try_parse_from(["sandbox-process", "exec", "--locale", bad, "{}"]).unwrap_err().to_string();
        assert!(err.contains("is not a locale name"), "{bad:?}: {err}");
    }
}

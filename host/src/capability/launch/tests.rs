use std::fs::File;
use std::io::{Read, Write};

use super::*;
use std::os::unix::process::ExitStatusExt;

use crate::capability::reap::ExitWatch;

fn run(program: &str, argv: &[&str], env: &[(String, String)], dir: &str) -> io::Result<(Launched, ExitWatch)> {
    let launched = start(program, argv, env, dir)?;
    let watch = ExitWatch::new(launched.pid)?;
    Ok((launched, watch))
}

fn start(program: &str, argv: &[&str], env: &[(String, String)], dir: &str) -> io::Result<Launched> {
    launch(&Launch {
        program: Path::new(program),
        argv: argv.iter().map(OsStr::new).collect(),
        env,
        dir: Path::new(dir),
        stdin: Stdio::Pipe,
        stdout: Stdio::Pipe,
        stderr: Stdio::Pipe,
        cgroup: None,
        kill_on_host_death: true,
    })
    .map_err(io::Error::from)
}

fn read_all(fd: Option<OwnedFd>) -> String {
    let mut s = String::new();
    File::from(fd.expect("a pipe")).read_to_string(&mut s).unwrap();
    s
}

#[tokio::test]
async fn streams_exit_code_and_environment() {
    let env = vec![("ONLY".to_owned(), "this".to_owned())];
    let (mut child, mut watch) =
        run("/bin/sh", &["named", "-c", "cat; echo \"$ONLY $(env | wc -l)\"; echo oops >&2; exit 3"], &env, "/")
            .unwrap();
    File::from(child.stdin.take().unwrap()).write_all(b"fed through stdin\n").unwrap();
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    let status = watch.wait().await.unwrap();
    // sh adds PWD, SHLVL and _ of its own; the host's environment is absent.
    assert!(out.starts_with("fed through stdin\nthis "), "{out:?}");
    let count: usize = out.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count <= 4, "the child saw {count} variables: {out:?}");
    assert_eq!(err, "oops\n");
    assert_eq!(status.code(), Some(3));
}

#[tokio::test]
async fn working_dir_and_own_group() {
    let (mut child, mut watch) = run("/bin/sh", &["sh", "-c", "pwd; cat /proc/$$/stat"], &[], "/tmp").unwrap();
    drop(child.stdin.take());
    let out = read_all(child.stdout.take());
    assert!(watch.wait().await.unwrap().success());
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), "/tmp");
    let stat: Vec<&str> = lines.next().unwrap().rsplit(')').next().unwrap().split_whitespace().collect();
    // After the comm: state, ppid, pgrp. The shell leads its own group.
    assert_eq!(stat[2].parse::<i32>().unwrap(), child.pid, "{out}");
    assert_eq!(stat[1].parse::<u32>().unwrap(), std::process::id());
}

/// The program itself reads its signal state (a shell's own would race with
/// the shell blocking signals around its forks).
#[tokio::test]
async fn no_signal_is_blocked_or_ignored_from_the_host() {
    // An ignored signal in the host must not reach the child.
    // SAFETY: SIG_IGN installs no handler; no test of this binary relies on
    // SIGHUP.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let grep = ["/usr/bin/grep", "/bin/grep"].into_iter().find(|p| Path::new(p).exists()).expect("grep");
    let (mut child, mut watch) = run(grep, &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], &[], "/").unwrap();
    drop(child.stdin.take());
    let out = read_all(child.stdout.take());
    assert!(watch.wait().await.unwrap().success());
    assert_eq!(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

#[tokio::test]
async fn argv0_is_passed_as_given() {
    let (mut child, mut watch) = run("/bin/cat", &["kitty", "/proc/self/cmdline"], &[], "/").unwrap();
    drop(child.stdin.take());
    assert_eq!(read_all(child.stdout.take()), "kitty\0/proc/self/cmdline\0");
    assert!(watch.wait().await.unwrap().success());
}

#[test]
fn failures_name_the_step_and_the_os_reason() {
    let e = run("/bin/true", &["true"], &[], "/no/such/dir").err().expect("a missing working directory fails");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().starts_with("changing to its working directory: "), "{e}");

    let file = std::env::temp_dir().join(format!("launch-not-executable-{}", std::process::id()));
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let e = run(file.to_str().unwrap(), &["x"], &[], "/").err().expect("a non-executable file fails");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");

    let e = run("/bin/true", &["a\0b"], &[], "/").err().expect("a NUL in an argument fails");
    assert!(e.to_string().contains("NUL"), "{e}");
}

#[tokio::test]
async fn signals_are_reported_and_waits_work_without_pidfds() {
    let mut child = start("/bin/sh", &["sh", "-c", "kill -TERM $$"], &[], "/").unwrap();
    drop(child.stdin.take());
    // The SIGCHLD fallback of kernels without pidfd_open.
    let mut watch = ExitWatch::without_pidfd(child.pid);
    let status = watch.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(watch.is_reaped());
}

/// With cgroups, the child runs in its cgroup from its first instruction:
/// born there (`CLONE_INTO_CGROUP`) or, in the fallback, moved there before
/// it executes anything. Both ways are exercised where cgroups are usable.
#[tokio::test]
async fn starts_inside_its_cgroup_both_ways() {
    use crate::capability::cgroup::TableContainment;
    use crate::capability::policy::Containment;

    let setup = TableContainment::new(Containment::Auto, false);
    let Some(cgroups) = setup.cgroups() else {
        eprintln!("no usable cgroup v2 on this machine ({}): only process groups to test", setup.describe());
        return;
    };
    for (order, into_cgroup) in [(1, true), (2, false)] {
        let (cgroup, dir) = setup.child(order).unwrap().unwrap();
        let mut child = launch_with(
            &Launch {
                program: Path::new("/bin/cat"),
                argv: vec![OsStr::new("cat"), OsStr::new("/proc/self/cgroup")],
                env: &[],
                dir: Path::new("/"),
                stdin: Stdio::Null,
                stdout: Stdio::Pipe,
                stderr: Stdio::Null,
                cgroup: Some(dir.as_raw_fd()),
                kill_on_host_death: true,
            },
            into_cgroup,
        )
        .unwrap();
        let mut watch = ExitWatch::new(child.pid).unwrap();
        let out = read_all(child.stdout.take());
        assert!(watch.wait().await.unwrap().success());
        // The cgroup2 line (`0::/path`) names the child's own cgroup.
        let own = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_else(|| panic!("no cgroup2 line: {out}"));
        let table = cgroups.dir().file_name().unwrap().to_str().unwrap();
        assert!(
            own.ends_with(&format!("/{table}/{order}")),
            "into_cgroup={into_cgroup}: {own} is not {}",
            cgroup.path().display()
        );
        cgroups.reaped(&cgroup);
    }
}

#[test]
fn a_failed_step_keeps_its_errno() {
    // The step's name goes into the message, the errno stays readable: the
    // start's error depends on it (EMFILE is a limit, ENOENT the request).
    let failure = launch(&Launch {
        program: Path::new("/bin/true"),
        argv: vec![OsStr::new("true")],
        env: &[],
        dir: Path::new("/no/such/dir"),
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        cgroup: None,
        kill_on_host_death: true,
    })
    .err()
    .expect("a missing working directory fails");
    assert_eq!(failure.errno, Some(libc::ENOENT));
    assert!(failure.error.to_string().starts_with("changing to its working directory"), "{}", failure.error);
    assert!(failure.limit_error("starting `true`").is_none());
}

/// The permissions (`rw-p`, `---p`...) of the mapping that holds `addr`.
fn permissions_at(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (start, end) = range.split_once('-')?;
            let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
            (start..end).contains(&addr).then(|| rest.split(' ').next().unwrap_or("").to_owned())
        })
        .unwrap_or_else(|| format!("nothing mapped at {addr:#x}"))
}

/// An overflow of the child's stack (which shares the host's memory) must
/// fault on an inaccessible page, not write over the host's memory below.
#[test]
fn the_child_stack_has_a_guard_page_below_it_and_is_reused() {
    let (top, (guard, guard_len)) = with_child_stack(|s| (s.top() as usize, s.guard())).unwrap();
    let guard = guard as usize;
    assert_eq!(permissions_at(guard), "---p");
    assert_eq!(permissions_at(guard + guard_len - 1), "---p");
    assert_eq!(permissions_at(guard + guard_len), "rw-p");
    assert_eq!(permissions_at(top - 1), "rw-p");
    assert_eq!(top % 16, 0, "the ABI wants a 16-byte aligned stack");
    // A launch on this thread runs on the same stack, and leaves it there.
    let mut child = start("/bin/true", &["true"], &[], "/").unwrap();
    drop(child.stdin.take());
    assert_eq!(with_child_stack(|s| s.top() as usize).unwrap(), top, "one stack per thread, reused");
    // Reaped here: a blocking wait needs no runtime.
    let pid = rustix::process::Pid::from_raw(child.pid).unwrap();
    let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap().unwrap();
    assert_eq!(status.exit_status(), Some(0));
}

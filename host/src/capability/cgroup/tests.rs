//! The cgroup helpers: finding our cgroup from `/proc` texts (pure), names
//! and owners, and, where this machine has a writable cgroup v2, the
//! lifecycle of real cgroups (with the mode printed, never skipped).

use std::os::unix::process::CommandExt;
use std::process::Command;

use super::*;

const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const PURE_V2: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

#[test]
fn our_cgroup_is_found_in_a_hybrid_layout() {
    let cgroup = "4:memory:/x/y\n1:cpu:/\n0::/\n";
    assert_eq!(own_cgroup_dir(HYBRID, cgroup).unwrap(), PathBuf::from("/sys/fs/cgroup/unified/"));
}

#[test]
fn our_cgroup_is_found_below_the_root_of_a_pure_v2_layout() {
    let cgroup = "0::/system.slice/sandbox.service\n";
    assert_eq!(own_cgroup_dir(PURE_V2, cgroup).unwrap(), PathBuf::from("/sys/fs/cgroup/system.slice/sandbox.service"));
}

#[test]
fn a_mount_of_a_subtree_is_joined_below_its_root() {
    // A container's view: the mount shows /docker/abc of the hierarchy.
    let mountinfo = "50 40 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(own_cgroup_dir(mountinfo, "0::/docker/abc/inner\n").unwrap(), PathBuf::from("/sys/fs/cgroup/inner"));
    // A path outside what the mount shows is unusable.
    let err = own_cgroup_dir(mountinfo, "0::/elsewhere\n").unwrap_err();
    assert!(err.contains("does not contain /elsewhere"), "{err}");
}

#[test]
fn mount_points_with_escapes_are_decoded() {
    let mountinfo = "50 40 0:30 / /mnt/cg\\040two rw - cgroup2 none rw\n";
    assert_eq!(own_cgroup_dir(mountinfo, "0::/a\n").unwrap(), PathBuf::from("/mnt/cg two/a"));
    assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
    assert_eq!(unescape("trailing\\04"), "trailing\\04");
}

#[test]
fn no_usable_cgroup2_is_an_error_saying_why() {
    let v1_only = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let err = own_cgroup_dir(v1_only, "0::/\n").unwrap_err();
    assert!(err.contains("no cgroup2"), "{err}");
    let read_only = "41 31 0:38 / /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n";
    let err = own_cgroup_dir(read_only, "0::/\n").unwrap_err();
    assert!(err.contains("read-only"), "{err}");
    let err = own_cgroup_dir(PURE_V2, "4:memory:/x\n").unwrap_err();
    assert!(err.contains("no cgroup v2"), "{err}");
    let err = own_cgroup_dir(PURE_V2, "0::/gone (deleted)\n").unwrap_err();
    assert!(err.contains("unusable"), "{err}");
}

#[test]
fn directory_names_carry_their_owner() {
    let me = Owner { pidns: 4026531836, pid: 42, start: 123456 };
    let name = me.dir_name(7, false);
    assert_eq!(name, "sandbox-process-4026531836-42-123456-7");
    assert_eq!(Owner::from_dir_name(&name), Some((me, false)));
    let kept = me.dir_name(8, true);
    assert_eq!(kept, "sandbox-process-4026531836-42-123456-8-keep");
    assert_eq!(Owner::from_dir_name(&kept), Some((me, true)));
    for other in [
        "sandbox-process-1-2-3",
        "sandbox-process-1-2-3-4-5",
        "sandbox-process-1-2-3-keep",
        "sandbox-process-1-2-3-4-kept",
        "sandbox-process-a-2-3-4",
        "other-1-2-3-4",
        "sandbox-process-1-2-3-x",
    ] {
        assert_eq!(Owner::from_dir_name(other), None, "{other}");
    }
}

#[test]
fn start_times_are_read_past_a_tricky_command_name() {
    let stat = "77 (a) b (c) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2";
    assert_eq!(start_time(stat), Some(98765));
    assert_eq!(start_time("77 (x) S 1"), None);
    let me = identity().unwrap();
    assert_eq!(me.pid, std::process::id());
    assert!(me.is_alive());
    assert!(!Owner { start: me.start + 1, ..me }.is_alive());
}

/// The cgroups this machine gives a table with the default (`auto`)
/// choice, announced in the test output.
fn setup() -> TableContainment {
    let setup = TableContainment::new(Containment::Auto, false);
    match &setup {
        TableContainment::Cgroups(c) => eprintln!("containment: cgroup v2 at {}", c.dir().display()),
        TableContainment::Groups(why) => {
            eprintln!("containment: process groups ({why})");
            // `.ci/run` sets it where the machine has a writable cgroup v2:
            // there the fallback branches of these tests must not run.
            assert!(
                std::env::var_os("SANDBOX_PROCESS_EXPECT_CGROUPS").is_none_or(|v| v != "1"),
                "SANDBOX_PROCESS_EXPECT_CGROUPS=1 but cgroups are not usable: {why}"
            );
        }
        TableContainment::Refused(_) => unreachable!("auto never refuses"),
    }
    setup
}

/// A `sleep 300` moved into the cgroup whose directory is `dir` before it
/// executes (the way the table's fallback starts children).
fn sleep_in(dir: OwnedFd) -> std::process::Child {
    // SAFETY: openat relative to a directory we own, with a C string.
    let fd = unsafe {
        libc::openat(std::os::fd::AsRawFd::as_raw_fd(&dir), c"cgroup.procs".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC)
    };
    assert!(fd >= 0, "opening cgroup.procs: {}", io::Error::last_os_error());
    // SAFETY: new and ours.
    let procs = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cmd = Command::new("sleep");
    cmd.arg("300");
    // SAFETY: one async-signal-safe write between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 { Ok(()) } else { Err(io::Error::last_os_error()) }
        });
    }
    let child = cmd.spawn().unwrap();
    drop(procs);
    child
}

fn members(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect()
}

#[test]
fn a_child_cgroup_holds_the_child_is_killed_and_removed() {
    let setup = setup();
    let Some(cgroups) = setup.cgroups() else {
        // The documented fallback: no cgroup is ever made.
        assert_eq!(setup.mode(), Containment::ProcessGroup);
        assert!(setup.child(1).unwrap().is_none());
        return;
    };
    assert_eq!(setup.mode(), Containment::Cgroup);
    let (cgroup, procs) = setup.child(1).unwrap().unwrap();
    assert!(cgroup.path().starts_with(cgroups.dir()));
    let mut child = sleep_in(procs);
    assert_eq!(members(cgroup.path()), [child.id()]);
    // Not reaped yet: a tidy leaves it alone.
    cgroups.tidy();
    assert!(cgroup.path().exists());
    cgroup.kill();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    cgroups.reaped(&cgroup);
    assert!(!cgroup.path().exists(), "an empty reaped cgroup is removed");
    assert_eq!(cgroups.live_children(), 0);
    let dir = cgroups.dir().to_owned();
    drop(setup);
    assert!(!dir.exists(), "the table's cgroup goes with the table");
}

#[test]
fn dropping_the_table_kills_and_removes_every_cgroup() {
    let setup = setup();
    let Some(cgroups) = setup.cgroups() else {
        assert_eq!(setup.mode(), Containment::ProcessGroup);
        return;
    };
    let dir = cgroups.dir().to_owned();
    let (_a, procs) = setup.child(1).unwrap().unwrap();
    let mut child = sleep_in(procs);
    let (_b, _unused) = setup.child(2).unwrap().unwrap();
    drop(setup);
    assert!(!dir.exists());
    assert!(child.wait().is_ok_and(|s| !s.success()));
}

#[test]
fn the_cgroups_of_a_dead_host_are_emptied_and_removed() {
    let setup = setup();
    let Some(cgroups) = setup.cgroups() else {
        assert_eq!(setup.mode(), Containment::ProcessGroup);
        return;
    };
    let me = identity().unwrap();
    let parent = cgroups.dir().parent().unwrap();
    // Our pid with another start time: a host that lived before us.
    let dead = Owner { start: me.start.wrapping_sub(1), ..me };
    let stale = parent.join(dead.dir_name(1, false));
    let _ = remove_tree(&stale);
    fs::create_dir_all(stale.join("5").join("nested")).unwrap();
    let nested = fs::File::open(stale.join("5").join("nested")).unwrap();
    let mut survivor = sleep_in(OwnedFd::from(nested));
    // Another host of a different pid namespace: not ours to judge.
    let foreign = parent.join(Owner { pidns: me.pidns + 1, ..dead }.dir_name(1, false));
    let _ = fs::create_dir(&foreign);
    // A dead host that let its processes outlive it: the one with a member
    // is left alone, the empty one removed.
    let kept = parent.join(dead.dir_name(2, true));
    let _ = remove_tree(&kept);
    fs::create_dir(&kept).unwrap();
    let mut orphan = sleep_in(OwnedFd::from(fs::File::open(&kept).unwrap()));
    let kept_empty = parent.join(dead.dir_name(3, true));
    let _ = fs::create_dir(&kept_empty);

    assert!(clean_stale(parent, me) >= 3);
    assert!(!stale.exists(), "the stale cgroup is removed");
    assert!(survivor.wait().is_ok_and(|s| !s.success()), "its member was killed");
    assert!(foreign.exists(), "a foreign namespace's cgroup is left alone");
    assert!(cgroups.dir().exists(), "a live host's cgroup is left alone");
    assert!(kept.exists(), "a kept cgroup with a member stays");
    assert!(orphan.try_wait().unwrap().is_none(), "its member lives on");
    assert!(!kept_empty.exists(), "an empty kept cgroup is removed");
    fs::remove_dir(&foreign).unwrap();
    orphan.kill().unwrap();
    orphan.wait().unwrap();
    assert!(clean_stale(parent, me) >= 1);
    assert!(!kept.exists(), "removed once empty");
}

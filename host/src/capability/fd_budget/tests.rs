use super::*;

#[test]
fn the_defaults_need_about_four_thousand_seven_hundred() {
    let budget = FdBudget::new(1024, 512, 1 << 20);
    assert_eq!(budget.needed, 4 * 1024 + 512 + RESERVE + PER_SPAWN);
    assert!(budget.fits());
}

#[test]
fn the_usual_soft_limit_does_not_fit_the_defaults() {
    let budget = FdBudget::new(1024, 512, 1024);
    assert!(!budget.fits());
    // What is left after the connections and the reserve, four per process.
    assert_eq!(budget.max_processes, ((1024 - 512 - RESERVE - PER_SPAWN) / 4) as usize);
    assert!(FdBudget::new(budget.max_processes, 512, 1024).fits());
    assert!(!FdBudget::new(budget.max_processes + 1, 512, 1024).fits());
}

#[test]
fn exactly_enough_fits() {
    let needed = FdBudget::new(100, 10, 0).needed;
    assert!(FdBudget::new(100, 10, needed).fits());
    assert!(!FdBudget::new(100, 10, needed - 1).fits());
    assert_eq!(FdBudget::new(100, 10, needed).max_processes, 100);
    assert_eq!(FdBudget::new(100, 10, needed - 1).max_processes, 99);
}

#[test]
fn connections_alone_can_leave_no_room() {
    let budget = FdBudget::new(1, 512, 256);
    assert!(!budget.fits());
    assert_eq!(budget.max_processes, 0);
}

#[test]
fn huge_limits_do_not_overflow() {
    let budget = FdBudget::new(usize::MAX, usize::MAX, u64::MAX);
    assert_eq!(budget.needed, u64::MAX);
    assert!(budget.fits());
    let room = (u64::MAX - RESERVE - PER_SPAWN) / PER_PROCESS;
    assert_eq!(FdBudget::new(10, 0, u64::MAX).max_processes, usize::try_from(room).unwrap_or(usize::MAX));
}

#[test]
fn raising_never_lowers_and_reaches_the_hard_limit() {
    // This test process's limit: raising it is harmless to the other tests.
    let raised = raise_open_file_limit().unwrap();
    assert!(raised.soft >= raised.before);
    assert!(raised.soft <= raised.hard);
    let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    assert_eq!(now.current, Some(raised.soft));
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
    assert_eq!(raised.soft, raised.hard.min(nr_open));
    // A second raise finds nothing to do.
    let again = raise_open_file_limit().unwrap();
    assert_eq!((again.before, again.soft), (raised.soft, raised.soft));
}

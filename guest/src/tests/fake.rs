//! An in-memory capability with a simulated clock, for driving the API.
//!
//! Cursors count lines of the selection, as `api::missed_lines` expects; a
//! read that finds nothing waits by advancing the clock, so timeouts can be
//! tested without sleeping.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::model::*;

#[derive(Default)]
pub struct State {
    pub processes: Vec<ProcessInfo>,
    /// Every line ever written, per pid, in arrival order.
    pub lines: BTreeMap<Pid, Vec<OutputLine>>,
    /// How many of the oldest lines of every selection were dropped.
    pub dropped: BTreeMap<Pid, u64>,
    /// How many of the oldest stderr lines were dropped on their own (as
    /// by a cap per stream): merged reads skip over them.
    pub stderr_dropped: BTreeMap<Pid, u64>,
    /// Pids whose output is complete while they still show `running`.
    pub reaped_late: Vec<Pid>,
    pub now: u64,
    pub next_pid: Pid,
    /// One call per line, e.g. `read 7 merged cursor=0 max=1024 wait=500`.
    pub calls: Vec<String>,
    /// Errors to return, by method name (`start`, `read_output`, ...).
    pub fail: BTreeMap<&'static str, ProcessError>,
    pub started: Vec<StartRequest>,
    pub stdin: BTreeMap<Pid, Vec<u8>>,
    /// Pids whose child writes this many stdout lines before every read,
    /// the buffer dropping as many of the oldest: a child writing faster
    /// than the guest reads.
    pub flooding: BTreeMap<Pid, u64>,
    /// When set, no read returns more lines than this (a host bounding the
    /// size of its answers).
    pub read_bound: Option<usize>,
}

pub struct Fake(pub RefCell<State>);

pub const T0: u64 = 1_710_000_000_000;

impl Fake {
    pub fn new() -> Self {
        Fake(RefCell::new(State { now: T0, next_pid: 100, ..State::default() }))
    }

    /// Adds a running process as if started earlier.
    pub fn spawn(&self, command: &str) -> Pid {
        let mut s = self.0.borrow_mut();
        let pid = s.next_pid;
        s.next_pid += 1;
        let info = running(pid, command, s.now);
        s.processes.push(info);
        pid
    }

    pub fn emit(&self, pid: Pid, stream: OutputStream, text: &str) {
        let mut s = self.0.borrow_mut();
        let timestamp = s.now;
        s.lines.entry(pid).or_default().push(OutputLine { stream, line: text.to_owned(), timestamp });
    }

    pub fn exit(&self, pid: Pid, code: i32) {
        self.end(pid, ProcessStatus::Exited, Some(code), None);
    }

    pub fn end(&self, pid: Pid, status: ProcessStatus, code: Option<i32>, signal: Option<i32>) {
        let mut s = self.0.borrow_mut();
        let now = s.now;
        let info = s.processes.iter_mut().find(|p| p.pid == pid).expect("known pid");
        info.status = status;
        info.exit_code = code;
        info.signal = signal;
        info.ended_at = Some(now);
        info.stdin_writable = false;
    }

    pub fn fail(&self, method: &'static str, error: ProcessError) {
        self.0.borrow_mut().fail.insert(method, error);
    }

    pub fn calls(&self) -> Vec<String> {
        self.0.borrow().calls.clone()
    }

    fn log(&self, call: String) {
        self.0.borrow_mut().calls.push(call);
    }

    fn failure(&self, method: &str) -> Result<(), ProcessError> {
        match self.0.borrow().fail.get(method) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn info(&self, pid: Pid) -> Result<ProcessInfo, ProcessError> {
        let s = self.0.borrow();
        s.processes.iter().find(|p| p.pid == pid).cloned().ok_or(ProcessError::NotFound(pid))
    }
}

pub fn running(pid: Pid, command: &str, now: u64) -> ProcessInfo {
    ProcessInfo {
        pid,
        status: ProcessStatus::Running,
        stdin_writable: false,
        command: command.to_owned(),
        args: Vec::new(),
        started_at: now,
        exit_code: None,
        signal: None,
        ended_at: None,
    }
}

fn selects(selector: OutputSelector, stream: OutputStream) -> bool {
    matches!(
        (selector, stream),
        (OutputSelector::Merged, _)
            | (OutputSelector::Stdout, OutputStream::Stdout)
            | (OutputSelector::Stderr, OutputStream::Stderr)
    )
}

impl Capability for Fake {
    fn start(&self, request: &StartRequest) -> Result<ProcessInfo, ProcessError> {
        self.log(format!("start {}", request.command));
        self.failure("start")?;
        let pid = self.spawn(&request.command);
        let mut s = self.0.borrow_mut();
        s.started.push(request.clone());
        let info = s.processes.iter_mut().find(|p| p.pid == pid).expect("just added");
        info.args = request.args.clone();
        info.stdin_writable = request.stdin_mode == StdinMode::Pipe;
        Ok(info.clone())
    }

    fn get(&self, pid: Pid) -> Result<ProcessInfo, ProcessError> {
        self.log(format!("get {pid}"));
        self.failure("get")?;
        self.info(pid)
    }

    fn list(&self) -> Vec<ProcessInfo> {
        self.log("list".to_owned());
        self.0.borrow().processes.clone()
    }

    fn signal(&self, pid: Pid, signal: i32) -> Result<(), ProcessError> {
        self.log(format!("signal {pid} {signal}"));
        self.failure("signal")?;
        self.info(pid).map(|_| ())
    }

    fn kill(&self, pid: Pid) -> Result<(), ProcessError> {
        self.log(format!("kill {pid}"));
        self.failure("kill")?;
        if self.info(pid)?.status == ProcessStatus::Running {
            self.end(pid, ProcessStatus::Signaled, None, Some(9));
        }
        Ok(())
    }

    fn write_stdin(&self, pid: Pid, data: &[u8]) -> Result<(), ProcessError> {
        self.log(format!("write_stdin {pid} {}", data.len()));
        self.failure("write_stdin")?;
        self.info(pid)?;
        self.0.borrow_mut().stdin.entry(pid).or_default().extend_from_slice(data);
        Ok(())
    }

    fn close_stdin(&self, pid: Pid) -> Result<(), ProcessError> {
        self.log(format!("close_stdin {pid}"));
        self.failure("close_stdin")?;
        self.info(pid).map(|_| ())
    }

    fn read_output(
        &self,
        pid: Pid,
        selector: OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ProcessError> {
        let name = format!("{selector:?}").to_lowercase();
        self.log(format!("read {pid} {name} cursor={cursor} max={max_lines} wait={wait_ms}"));
        self.failure("read_output")?;
        let info = self.info(pid)?;
        // (For 20 calls at most: a reader that never stops fails its test
        // instead of hanging it.)
        let flood = self.0.borrow().flooding.get(&pid).copied().filter(|_| self.0.borrow().calls.len() <= 20);
        if let Some(n) = flood {
            for _ in 0..n {
                self.emit(pid, OutputStream::Stdout, "y");
            }
            *self.0.borrow_mut().dropped.entry(pid).or_default() += n;
        }
        let mut s = self.0.borrow_mut();
        let all: Vec<OutputLine> = s
            .lines
            .get(&pid)
            .map(|lines| lines.iter().filter(|l| selects(selector, l.stream)).cloned().collect())
            .unwrap_or_default();
        let oldest = s.dropped.get(&pid).copied().unwrap_or(0).min(all.len() as u64);
        let stderr_gone = s.stderr_dropped.get(&pid).copied().unwrap_or(0);
        let mut stderr_seen = 0;
        let kept: Vec<(u64, &OutputLine)> = (0u64..)
            .zip(&all)
            .filter(|(_, l)| {
                stderr_seen += u64::from(l.stream == OutputStream::Stderr);
                l.stream != OutputStream::Stderr || stderr_seen > stderr_gone
            })
            .collect();
        let dropped = oldest + (all.len() - kept.len()) as u64;
        let from = cursor.max(oldest);
        let after: Vec<&(u64, &OutputLine)> = kept.iter().filter(|(at, _)| *at >= from).collect();
        let take = (max_lines as usize).min(s.read_bound.unwrap_or(usize::MAX));
        let lines: Vec<OutputLine> = after.iter().take(take).map(|(_, l)| (*l).clone()).collect();
        let more = after.len() > lines.len();
        let next_cursor = match (after.get(lines.len().wrapping_sub(1)), more) {
            (Some((at, _)), true) if !lines.is_empty() => at + 1,
            (Some((at, _)), _) if !lines.is_empty() => (at + 1).max(all.len() as u64),
            _ if more => from,
            _ => from.max(all.len() as u64),
        };
        let ended = info.status != ProcessStatus::Running || s.reaped_late.contains(&pid);
        let complete = ended && next_cursor as usize >= all.len();
        if lines.is_empty() && !complete {
            s.now += u64::from(wait_ms);
        }
        Ok(OutputChunk { lines, next_cursor, dropped, more, complete })
    }

    fn wait(&self, pid: Pid, timeout_ms: u32) -> Result<ProcessInfo, ProcessError> {
        self.log(format!("wait {pid} {timeout_ms}"));
        self.failure("wait")?;
        if self.0.borrow().reaped_late.contains(&pid) {
            self.0.borrow_mut().reaped_late.retain(|p| *p != pid);
            self.exit(pid, 0);
        }
        self.info(pid)
    }

    fn summary(&self) -> HostSummary {
        let s = self.0.borrow();
        HostSummary {
            version: "0.1.0".to_owned(),
            uptime_secs: 12,
            running_processes: s.processes.iter().filter(|p| p.status == ProcessStatus::Running).count() as u32,
            total_processes: s.processes.len() as u64,
        }
    }

    fn now_ms(&self) -> u64 {
        self.log("now".to_owned());
        self.0.borrow().now
    }
}

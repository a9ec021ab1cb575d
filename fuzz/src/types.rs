//! The WIT types the host's capture uses (`sandbox_process::types`, which
//! wasmtime's bindgen generates), written out: the same names and fields,
//! so the capture's source compiles unchanged. A field the capture starts
//! to use that is missing here fails the fuzz build, not silently.

/// One of a process's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Which lines a read selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSelector {
    Stdout,
    Stderr,
    Merged,
}

/// One captured line.
#[derive(Debug, Clone)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub line: String,
    pub timestamp: u64,
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub lines: Vec<OutputLine>,
    pub next_cursor: u64,
    pub dropped: u64,
    pub complete: bool,
}

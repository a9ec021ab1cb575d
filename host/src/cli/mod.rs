//! The command line: argument parsing and the one-shot subcommands.

pub mod args;
pub mod exec;
pub mod serve_args;
pub mod token;

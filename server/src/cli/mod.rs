//! The command line: argument parsing and the one-shot subcommands.

pub mod args;
pub mod descriptors;
pub mod exec;
pub mod export;
pub mod serve_args;
pub mod token;

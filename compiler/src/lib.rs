//! The Dockerfile compiler: Dockerfile text to AST, typed instructions, stage graph and
//! build plan. It does no I/O: every function maps text plus options to a value, so the
//! crate is deterministic, fuzzable and fast to test.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod shell;
pub mod suggest;
pub mod text;

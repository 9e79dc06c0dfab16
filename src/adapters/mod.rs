//! Everything that talks to the outside world. Each adapter depends on `core` (and its own SDK),
//! never on another adapter; `runtime` wires them together.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod claude;
pub mod codex;
pub mod control;
pub mod discord;
pub mod git;
pub mod mesh;
pub mod opencode;
pub mod process;
pub mod runner_state;
pub mod scheduler;
pub mod voice;

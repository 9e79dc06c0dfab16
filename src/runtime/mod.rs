//! Process lifecycle: the supervisor task tree, ordered shutdown, and the wiring of adapters to
//! the core. The only module that names every adapter.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod daemon;
pub mod intake;
pub mod local_calls;
pub mod onboarding;
pub mod onboarding_control;
pub mod process;
mod wiring;

pub use wiring::voice_report;

pub use daemon::{Daemon, DaemonError, DaemonOptions, ReadyInfo, StopHandle, StopRequest};

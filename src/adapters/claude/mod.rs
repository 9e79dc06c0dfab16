//! The Claude Code runner: one `claude -p --input-format stream-json` process per job, driven
//! through stream-json and its control protocol, with permission prompts answered by the job's
//! policy or by a person. Depends on `core`, `config` and the shared process plumbing only;
//! never on another adapter.
//!
//! # Layout
//! - `config`: `ClaudeConfig` (what to run, environment, retries, deadlines).
//! - `runner`: `ClaudeRunner` and the per-job session loop.
//! - `map`: pure stream-json ⇄ event translation.

mod config;
mod map;
mod runner;

pub use config::{ClaudeConfig, DEFAULT_MAX_RETRIES};
pub use runner::ClaudeRunner;

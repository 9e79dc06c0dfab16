//! The Codex CLI runner: one `codex app-server` per job, driven over JSON-RPC on stdio, with
//! approvals answered by the job's policy or by a person. Depends on `core`, `config` and the
//! shared process plumbing only; never on another adapter.
//!
//! # Layout
//! - `config`: `CodexConfig` (what to run, environment, overrides, deadlines).
//! - `runner`: `CodexRunner` and the per-job session loop.
//! - `map`: pure JSON-RPC ⇄ event translation.

mod config;
mod map;
mod runner;

pub use config::{CodexConfig, CodexSandbox};
pub use runner::CodexRunner;

//! The OpenCode runner: drives `opencode serve` (one shared server, HTTP API + event stream) and
//! turns each job into one prompt in an OpenCode session. Imports `core` and `config` only.
//!
//! # Layout
//! - `config`: `OpencodeConfig`, built from settings; defaults and deadlines.
//! - `server`: starting, probing, watching, restarting and stopping the server process.
//! - `stream`: the SSE connection and per-session routing, with reconnects.
//! - `api`: the HTTP calls, each with a deadline.
//! - `runner`: `OpencodeRunner` and the per-job loop.
//! - `map`: pure translation of OpenCode events and messages into `EventKind`s.

mod api;
mod config;
mod error;
mod map;
mod runner;
mod server;
mod stream;

pub use config::OpencodeConfig;
pub use runner::OpencodeRunner;

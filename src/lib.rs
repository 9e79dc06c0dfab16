//! kimaki: an outbound edge agent that lets people drive AI coding agents on this machine from
//! Discord, a mesh coordinator, or the command line, with no inbound port.
//!
//! # Layout
//! - `cli`: one file per subcommand; the only place that prints for humans.
//! - `config`: settings (flags > env > config.env > defaults), data-dir paths, secrets.
//! - `core`: jobs, the durable queue, lanes, dispatcher, the `Runner` trait, the event bus.
//!   Knows no adapter and no SDK.
//! - `store`: the only code that touches sled.
//! - `runtime`: supervisor and wiring; the only module that names every adapter.
//! - `adapters`: the outside world (control socket, runners, Discord, mesh, …).
//! - `telemetry`: tracing setup and the SSE lifecycle lines on stdout.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod core;
pub mod runtime;
pub mod store;
pub mod telemetry;

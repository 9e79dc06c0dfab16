//! Test harness: twins of every external peer, each a real server on 127.0.0.1:0.
//! Nothing in `src/` imports this; everything here may import anything.

pub mod coordinator;
pub mod discord_harness;
pub mod discord_twin;
pub mod echo_runner;
pub mod fake_llm;
pub mod fake_transcriber;
pub mod kimaki_bin;
pub mod poll;
pub mod queue_harness;
pub mod runner_bins;
pub mod runner_contract;

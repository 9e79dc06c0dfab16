//! Test harness: twins of every external peer, each a real server on 127.0.0.1:0.
//! Nothing in `src/` imports this; everything here may import anything.

pub mod discord_twin;
pub mod echo_runner;
pub mod queue_harness;
pub mod runner_contract;
pub mod fake_llm;
pub mod runner_bins;
pub mod kimaki_bin;
pub mod poll;
pub mod coordinator;
pub mod fake_transcriber;

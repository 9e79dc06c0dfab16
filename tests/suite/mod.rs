//! One user-visible behaviour per file.
mod queue_basics;
mod protocol_schema;
mod fake_llm_against_real_clis;
mod cli_doctor;
mod cli_init_and_config;
mod cli_lifecycle;
mod cli_secrets;
mod discord_twin_conformance;
mod architecture;
mod cli_restart_and_dump;
mod runner_claude;
mod runner_codex;
mod runner_opencode;
mod queue_crash;
mod cli_service;
mod local_api;
mod cli_upgrade;

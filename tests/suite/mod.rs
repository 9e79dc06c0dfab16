//! One user-visible behaviour per file.
mod queue_basics;
mod protocol_schema;
mod fake_llm_against_real_clis;

//! One concern per file.

mod compatibility;
mod golden;
mod hostile_input;
mod names_and_limits;
#[cfg(feature = "schema")]
mod schema;

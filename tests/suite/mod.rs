//! One user-visible behaviour per file.
mod queue_basics;
mod protocol_schema;

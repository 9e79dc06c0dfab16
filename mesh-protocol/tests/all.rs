//! The integration tests of the wire types, in one binary: `support` loads the golden fixtures,
//! `suite` holds one concern per file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
mod support;

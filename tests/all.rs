//! The one integration-test binary: `support` holds the harness and the twins (real servers on
//! 127.0.0.1:0), `suite` holds one user-visible behaviour per file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    dead_code
)]

mod suite;
mod support;

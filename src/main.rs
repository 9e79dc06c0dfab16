//! The `kimaki` binary: parse the command line, then hand over to `cli::run`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kimaki::cli::Cli::parse();
    kimaki::cli::run(cli)
}

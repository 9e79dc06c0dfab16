//! `kimaki version`

use clap::Args;
use serde::Serialize;

use super::output::{exit, print_json, Failure};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct VersionInfo {
    version: &'static str,
    mesh_protocol: u32,
    store_schema: u32,
    target: &'static str,
}

pub fn run(args: &VersionArgs) -> Result<u8, Failure> {
    let info = VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        mesh_protocol: mesh_protocol::PROTOCOL_VERSION,
        store_schema: crate::store::SCHEMA_VERSION,
        target: std::env::consts::ARCH,
    };
    if args.json {
        print_json(&info)?;
    } else {
        println!(
            "kimaki {} (mesh protocol v{}, store schema v{}, {}-{})",
            info.version,
            info.mesh_protocol,
            info.store_schema,
            std::env::consts::OS,
            info.target
        );
    }
    Ok(exit::OK)
}

//! Prints the JSON Schema document of the mesh protocol to stdout.
//!
//! `cargo run -q -p mesh-protocol --features schema --example gen_schema > docs/mesh-protocol.schema.json`

use std::io::{self, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let document = mesh_protocol::schema_document();
    let mut stdout = io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &document)?;
    writeln!(stdout)?;
    Ok(())
}

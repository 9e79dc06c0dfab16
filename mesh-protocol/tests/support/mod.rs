//! Golden fixtures: `tests/fixtures/<event>[.<variant>].json`, one canonical message each.
//!
//! `auth.json` and `connect_error.json` are the CONNECT `auth` payload and the rejection body;
//! every other file is named after the event it is a payload of.

use std::fs;
use std::path::{Path, PathBuf};

use mesh_protocol::events::{AGENT_EVENTS, MESH_EVENTS};
use serde_json::Value;

/// Stem of the CONNECT `auth` fixture.
pub const AUTH: &str = "auth";
/// Stem of the `connect_error` fixture.
pub const CONNECT_ERROR: &str = "connect_error";

/// Which decoder a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AgentToMesh,
    MeshToAgent,
    Connect,
}

/// One fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File name without `.json`.
    pub stem: String,
    /// The event the payload is sent under (the stem itself for `auth` and `connect_error`).
    pub event: String,
    pub direction: Direction,
    /// The file as stored: pretty-printed JSON with a trailing newline.
    pub bytes: Vec<u8>,
    pub value: Value,
}

impl Fixture {
    /// The payload as compact JSON, the way a peer sends it.
    pub fn compact(&self) -> Vec<u8> {
        serde_json::to_vec(&self.value).unwrap()
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture, sorted by file name.
pub fn all_fixtures() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let fixtures: Vec<Fixture> = paths.iter().map(|path| load(path)).collect();
    assert!(
        fixtures.len() > 20,
        "fixtures went missing from {:?}",
        fixtures_dir()
    );
    fixtures
}

/// One fixture by stem (`"job.event.finished"`).
pub fn fixture(stem: &str) -> Fixture {
    load(&fixtures_dir().join(format!("{stem}.json")))
}

fn load(path: &Path) -> Fixture {
    let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
    let bytes = fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
    let (event, direction) =
        event_of(&stem).unwrap_or_else(|| panic!("{} names no event", path.display()));
    Fixture {
        stem,
        event,
        direction,
        bytes,
        value,
    }
}

/// The event a fixture stem is a payload of: the longest event name that is the whole stem or
/// a prefix of it followed by `.`.
pub fn event_of(stem: &str) -> Option<(String, Direction)> {
    if stem == AUTH || stem == CONNECT_ERROR {
        return Some((stem.to_owned(), Direction::Connect));
    }
    let named = |event: &str| stem == event || stem.starts_with(&format!("{event}."));
    let agent = AGENT_EVENTS
        .iter()
        .map(|event| (*event, Direction::AgentToMesh));
    let mesh = MESH_EVENTS
        .iter()
        .map(|event| (*event, Direction::MeshToAgent));
    agent
        .chain(mesh)
        .filter(|(event, _)| named(event))
        .max_by_key(|(event, _)| event.len())
        .map(|(event, direction)| (event.to_owned(), direction))
}

//! Identifier newtypes. Strings on the wire and in the store; distinct types in code so a lane id
//! is never passed where a job id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A job: `job_<ULID>` when kimaki makes it, or the id a mesh coordinator assigned.
    JobId
);
string_id!(
    /// A lane: one conversation (a Discord thread, a mesh session, a CLI session). Jobs in a lane
    /// run one at a time, in order, and continue the same runner session.
    LaneId
);
string_id!(
    /// A runner kind: `opencode`, `codex`, `claude`, … (the adapter that runs the job).
    RunnerId
);
string_id!(
    /// A pending permission request or question, as the runner named it.
    RequestId
);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(format!("job_{}", ulid::Ulid::new()))
    }
}

//! Feature flags exchanged in `hello.features` and answered by their intersection in
//! `welcome.features`. Optional behaviour is negotiated here instead of by a version bump.

/// The agent resumes jobs across links (`hello.resume`, `welcome.resume`).
pub const RESUME: &str = "resume";
/// The agent honours `job.cancel` with a grace period.
pub const CANCEL: &str = "cancel";
/// The agent may merge consecutive same-stream `output` events while the window is closed.
pub const COALESCE: &str = "coalesce";
/// The agent forwards permissions and questions (`asked`) and accepts `job.input`; without it the
/// agent applies `permissionPolicy` locally.
pub const INTERACTIVE: &str = "interactive";

/// The agent announces jobs nobody dispatched (`job.observed`) and streams their events; the
/// coordinator may watch them, not steer them.
pub const OBSERVE: &str = "observe";

/// Every feature this version of the crate knows.
pub const ALL: [&str; 5] = [RESUME, CANCEL, COALESCE, INTERACTIVE, OBSERVE];

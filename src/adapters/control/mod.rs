//! Local control of a running kimaki: the single-instance lock on the data dir, and the control
//! socket (`<data-dir>/kimaki.sock`, mode 0600, newline-delimited JSON request/reply) that CLI
//! commands use while the daemon runs. No TCP listener: the product needs no inbound port.

pub mod client;
pub mod http;
pub mod lock;
pub mod protocol;
pub mod server;

pub use client::{ControlClient, ControlError};
pub use lock::{InstanceLock, LockError};
pub use protocol::{Call, ControlHandler, ErrorBody, Request, Response, StatusReport};
pub use server::ControlServer;

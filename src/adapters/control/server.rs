//! The control socket server: accepts local connections (at most `MAX_CONNECTIONS` at once),
//! reads one request per line and answers through the `ControlHandler`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{Call, ControlHandler, Request, Response, MAX_REQUEST_BYTES};

/// Local CLI commands are few; this only guards against a runaway script.
const MAX_CONNECTIONS: usize = 64;

/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Socket file mode: only the owner may talk to kimaki.
const SOCKET_MODE: u32 = 0o600;

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds the socket. The caller holds the instance lock, so an existing socket file is stale.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves until `shutdown` fires; then removes the socket file.
    pub async fn run(self, handler: Arc<dyn ControlHandler>, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let tracker = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "Control socket accept failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                serve_connection(stream, handler, shutdown).await;
                drop(permit);
            });
        }
        tracker.close();
        // In-flight calls are short; don't let a stuck client delay exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_connection(
    stream: UnixStream,
    handler: Arc<dyn ControlHandler>,
    shutdown: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader, &mut line)) => r,
        };
        match read {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let reply = Response::err(0, "bad_request", e.to_string());
                let _ = write_reply(&mut write, &reply).await;
                return;
            }
        }
        let req = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => req,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                    .unwrap_or(0);
                let reply =
                    Response::err(id, "bad_request", format!("cannot parse the request: {e}"));
                if write_reply(&mut write, &reply).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if let Call::Follow { job_id, after_seq } = req.call {
            if stream_follow(req.id, job_id, after_seq, &*handler, &mut write, &shutdown)
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let reply = handle(req, &*handler).await;
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

/// Writes each event as its own reply (`more: true`), then a final reply.
async fn stream_follow<W: tokio::io::AsyncWrite + Unpin>(
    id: u64,
    job_id: String,
    after_seq: u64,
    handler: &dyn ControlHandler,
    write: &mut W,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut rx = match handler.follow(job_id, after_seq).await {
        Ok(rx) => rx,
        Err(e) => return write_reply(write, &Response::err(id, e.code, e.message)).await,
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => None,
            ev = rx.recv() => ev,
        };
        match next {
            Some(event) => {
                let mut reply = Response::ok(id, event);
                reply.more = true;
                write_reply(write, &reply).await?;
            }
            None => {
                let done = if shutdown.is_cancelled() {
                    Response::err(id, "unavailable", "kimaki is shutting down")
                } else {
                    Response::ok(id, serde_json::json!({"done": true}))
                };
                return write_reply(write, &done).await;
            }
        }
    }
}

async fn handle(req: Request, handler: &dyn ControlHandler) -> Response {
    match req.call {
        Call::Status => match serde_json::to_value(handler.status().await) {
            Ok(v) => Response::ok(req.id, v),
            Err(e) => Response::err(req.id, "internal", e.to_string()),
        },
        Call::Shutdown { reason } => {
            handler
                .shutdown(reason.unwrap_or_else(|| "requested over the control socket".to_owned()))
                .await;
            Response::ok(req.id, serde_json::json!({"stopping": true}))
        }
        other => match handler.call(other).await {
            Ok(v) => Response::ok(req.id, v),
            Err(e) => Response::err(req.id, e.code, e.message),
        },
    }
}

/// Reads up to a newline, refusing lines longer than `MAX_REQUEST_BYTES`.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let n = (&mut *reader)
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_until(b'\n', out)
        .await?;
    if out.len() > MAX_REQUEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request longer than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    Ok(n)
}

async fn write_reply<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Response,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

use tokio::io::AsyncReadExt as _;

//! Client side of the control socket, used by CLI commands while the daemon runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{Call, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("kimaki is not running for this data dir (no control socket at {0})")]
    NotRunning(PathBuf),
    #[error("cannot talk to kimaki at {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("kimaki did not answer within {0:?}")]
    Timeout(Duration),
    #[error("kimaki refused the request ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("kimaki sent a reply this version cannot read: {0}")]
    Protocol(String),
}

pub struct ControlClient {
    path: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    pub fn new(path: &Path, timeout: Duration) -> Self {
        Self {
            path: path.to_owned(),
            timeout,
        }
    }

    /// Sends one call and decodes its result.
    pub async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, ControlError> {
        let value = tokio::time::timeout(self.timeout, self.call_raw(call))
            .await
            .map_err(|_| ControlError::Timeout(self.timeout))??;
        serde_json::from_value(value).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    /// Sends a streaming call; `on_item` gets every intermediate result. Returns the last one.
    /// No overall timeout: the stream lasts as long as the job (connecting is still bounded).
    pub async fn call_stream(
        &self,
        call: Call,
        mut on_item: impl FnMut(serde_json::Value),
    ) -> Result<serde_json::Value, ControlError> {
        let (mut reader, _write) = tokio::time::timeout(self.timeout, self.open(call))
            .await
            .map_err(|_| ControlError::Timeout(self.timeout))??;
        loop {
            let resp = self.read_reply(&mut reader).await?;
            let more = resp.more;
            let value = self.result_of(resp)?;
            if !more {
                return Ok(value);
            }
            on_item(value);
        }
    }

    async fn open(
        &self,
        call: Call,
    ) -> Result<
        (
            BufReader<tokio::net::unix::OwnedReadHalf>,
            tokio::net::unix::OwnedWriteHalf,
        ),
        ControlError,
    > {
        let io = |e: std::io::Error| ControlError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let stream = match UnixStream::connect(&self.path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ControlError::NotRunning(self.path.clone()))
            }
            Err(e) => return Err(io(e)),
        };
        let (read, mut write) = stream.into_split();
        let req = Request { id: 1, call };
        let mut bytes =
            serde_json::to_vec(&req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        write.write_all(&bytes).await.map_err(io)?;
        Ok((BufReader::new(read), write))
    }

    async fn read_reply(
        &self,
        reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    ) -> Result<Response, ControlError> {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| ControlError::Io {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        if n == 0 {
            return Err(ControlError::Io {
                path: self.path.clone(),
                detail: "connection closed without a reply".to_owned(),
            });
        }
        serde_json::from_str(&line).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    fn result_of(&self, resp: Response) -> Result<serde_json::Value, ControlError> {
        if resp.ok {
            Ok(resp.result.unwrap_or(serde_json::Value::Null))
        } else {
            let err = resp.error.unwrap_or(super::protocol::ErrorBody {
                code: "unknown".to_owned(),
                message: "no error detail".to_owned(),
            });
            Err(ControlError::Refused {
                code: err.code,
                message: err.message,
            })
        }
    }

    async fn call_raw(&self, call: Call) -> Result<serde_json::Value, ControlError> {
        let (mut reader, _write) = self.open(call).await?;
        let resp = self.read_reply(&mut reader).await?;
        self.result_of(resp)
    }
}

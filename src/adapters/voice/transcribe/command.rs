//! A local program as a provider: kimaki writes the recording as a 16 kHz mono WAV, runs the
//! configured command line with the file's path (in place of a `{wav}` argument, or appended),
//! and takes its stdout as the transcription. The program runs in its own process group without
//! kimaki's own variables, under a deadline; a timeout or a cancelled job kills the whole group.
//! A faster-whisper script makes this a fully offline transcriber.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::{
    clean_detail, spoken_queue_request, AudioClip, Provider, ProviderTranscript, TranscribeError,
    TranscriptionContext,
};

pub const PROVIDER: &str = "command";

/// The argument replaced by the WAV file's path.
pub const WAV_PLACEHOLDER: &str = "{wav}";

/// A transcription is a few KB; anything past this is not one.
const MAX_STDOUT_BYTES: u64 = 1024 * 1024;

/// Kept from stderr for the failure message.
const MAX_STDERR_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Program and arguments.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Where the temporary WAV files go (private to kimaki).
    pub scratch_dir: PathBuf,
    /// Variables removed from the child's environment (kimaki's own settings and secrets).
    pub env_remove: Vec<String>,
}

pub struct CommandProvider {
    config: CommandConfig,
}

impl CommandProvider {
    pub fn new(config: CommandConfig) -> Self {
        Self { config }
    }
}

/// Removes the temporary WAV however the call ends (including a cancelled job).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills the child's process group unless it was reaped: a script's own children (python,
/// ffmpeg) must not outlive a timeout or a cancelled job.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl Provider for CommandProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(
        &self,
        clip: &AudioClip,
        _ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        let Some((program, args)) = self.config.argv.split_first() else {
            return Err(TranscribeError::NoProvider(
                "KIMAKI_TRANSCRIBE_COMMAND is empty".into(),
            ));
        };
        let wav = clip.wav16k().await?;
        tokio::fs::create_dir_all(&self.config.scratch_dir)
            .await
            .map_err(|e| {
                TranscribeError::Internal(format!(
                    "cannot create {}: {e}",
                    self.config.scratch_dir.display()
                ))
            })?;
        let path = self
            .config
            .scratch_dir
            .join(format!("voice-{}.wav", ulid::Ulid::new()));
        let temp = TempFile(path.clone());
        tokio::fs::write(&path, &wav).await.map_err(|e| {
            TranscribeError::Internal(format!("cannot write {}: {e}", path.display()))
        })?;

        let path_arg = path.display().to_string();
        let mut args: Vec<String> = args.to_vec();
        match args.iter_mut().find(|a| a.as_str() == WAV_PLACEHOLDER) {
            Some(a) => *a = path_arg,
            None => args.push(path_arg),
        }
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in &self.config.env_remove {
            cmd.env_remove(name);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TranscribeError::CommandMissing(format!("{program}: {e}")))?;
        let mut group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.take(MAX_STDOUT_BYTES).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.take(MAX_STDERR_BYTES).read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| TranscribeError::Timeout {
                provider: PROVIDER,
                after: self.config.timeout,
            })?;
        let status = status.map_err(|e| TranscribeError::CommandFailed(e.to_string()))?;
        // Reaped: the group id may be reused from here on, so never signal it.
        group.0 = None;
        drop(temp);
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err);
            let detail = match stderr.trim() {
                "" => status.to_string(),
                s => format!("{status}: {}", last_lines(s)),
            };
            return Err(TranscribeError::CommandFailed(clean_detail(&detail, &[])));
        }
        let text = String::from_utf8_lossy(&out);
        let (text, queue_message) = spoken_queue_request(&text);
        Ok(ProviderTranscript {
            text,
            queue_message,
            agent: None,
            source: format!("{PROVIDER}/{}", program_name(program)),
        })
    }
}

/// The end of a stderr dump is where the reason is.
fn last_lines(s: &str) -> String {
    const KEPT_LINES: usize = 3;
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(KEPT_LINES)..].join(" | ")
}

fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Splits a configured command line on whitespace; `"…"` or `'…'` keep spaces inside one argument.
pub fn split_command_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has_token = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                has_token = true;
            }
            (None, c) if c.is_whitespace() => {
                if has_token || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has_token = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has_token || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(
            split_command_line(r#"  python3 "/opt/my scripts/stt.py" --model 'tiny en' {wav} "#),
            vec![
                "python3",
                "/opt/my scripts/stt.py",
                "--model",
                "tiny en",
                "{wav}"
            ]
        );
        assert_eq!(split_command_line(r#"a "" b"#), vec!["a", "", "b"]);
        assert!(split_command_line("   ").is_empty());
    }

    #[test]
    fn stderr_tail() {
        assert_eq!(last_lines("a\nb\nc\nd"), "b | c | d");
        assert_eq!(program_name("/usr/bin/stt"), "stt");
    }
}

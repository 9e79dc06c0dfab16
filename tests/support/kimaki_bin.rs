//! The real `kimaki` binary in a temp data dir, with a clean environment: run commands, or start
//! the daemon and read its SSE lifecycle lines from stdout.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kimaki");

/// One isolated kimaki installation: its own HOME and data dir, no inherited environment.
pub struct Kimaki {
    /// The executable to run (the build's own binary unless a test copies it elsewhere).
    pub bin: PathBuf,
    pub home: tempfile::TempDir,
    pub data_dir: PathBuf,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
    /// Everything the command printed.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Default for Kimaki {
    fn default() -> Self {
        Self::new()
    }
}

impl Kimaki {
    pub fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let data_dir = home.path().join("data");
        Self {
            bin: PathBuf::from(BIN),
            home,
            data_dir,
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A command with a clean environment: a PATH without any runner CLIs, a private HOME.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a command to completion (bounded).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_cmd(self.command(args))
    }

    pub fn run_cmd(&self, mut cmd: Command) -> Output {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kimaki");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_t = std::thread::spawn(move || read_all(stdout));
        let err_t = std::thread::spawn(move || read_all(stderr));
        let status = wait_bounded(child, Duration::from_secs(60));
        Output {
            status,
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        }
    }

    /// Starts `kimaki start` with stdout piped (so it speaks SSE).
    pub fn start(&self, args: &[&str]) -> Daemon {
        let mut all = vec!["start"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kimaki start");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let tx_out = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx_out.send(Line::Out(line)).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(Line::Err(line)).is_err() {
                    break;
                }
            }
        });
        let pid = child.id() as i32;
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait().unwrap());
        });
        Daemon {
            pid,
            exit: exit_rx,
            exited: None,
            lines: rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Configures the real Codex runner (the default runner here) against `llm`, registers a
    /// git project and returns its path.
    pub fn with_fake_codex(self, llm: &super::fake_llm::FakeLlm) -> (Self, PathBuf) {
        use super::runner_bins;
        let codex_home = self.home.path().join(".codex");
        std::fs::create_dir_all(&codex_home).unwrap();
        std::fs::write(
            codex_home.join("config.toml"),
            format!(
                "model = \"{model}\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{base}/v1\"\nenv_key = \"FAKE_API_KEY\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n\n[analytics]\nenabled = false\n\n[features]\nplugins = false\n",
                model = super::fake_llm::MODEL,
                base = llm.base_url()
            ),
        )
        .unwrap();
        let k = self
            .with_env("PATH", &runner_bins::runner_path_env().to_string_lossy())
            .with_env("CODEX_HOME", &codex_home.display().to_string())
            .with_env("FAKE_API_KEY", "sk-fake-test-key")
            .with_env("KIMAKI_RUNNER", "codex")
            .with_env("CODEX_BIN", &runner_bins::codex_bin().display().to_string());
        let project = k.home.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        let git = Command::new("git")
            .arg("init")
            .arg("-q")
            .arg(&project)
            .status()
            .unwrap();
        assert!(git.success());
        let out = k.run(&["project", "add", project.to_str().unwrap()]);
        assert_eq!(out.code(), 0, "{}", out.all());
        (k, project)
    }

    /// Points kimaki's Discord side at `twin`: its bot token, API and guild.
    pub fn with_discord_twin(self, twin: &super::discord_twin::DiscordTwin) -> Self {
        self.with_env("KIMAKI_BOT_TOKEN", &twin.bot_token())
            .with_env("KIMAKI_DISCORD_API_URL", &twin.api_base())
            .with_env("KIMAKI_GUILD_ID", &twin.guild_id().to_string())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("kimaki.log")).unwrap_or_default()
    }

    pub fn config_env(&self) -> PathBuf {
        self.data_dir.join("config.env")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.data_dir.join(rel)
    }
}

enum Line {
    Out(String),
    Err(String),
}

/// A running `kimaki start`.
pub struct Daemon {
    pid: i32,
    exit: mpsc::Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
    lines: mpsc::Receiver<Line>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Daemon {
    /// Waits for an SSE `data:` event of the given type and returns its JSON.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Line::Out(l)) => {
                    self.stdout.push(l.clone());
                    if let Some(json) = l.strip_prefix("data: ") {
                        let v: serde_json::Value = serde_json::from_str(json)
                            .unwrap_or_else(|e| panic!("bad SSE line {l:?}: {e}"));
                        if v["type"] == kind {
                            return v;
                        }
                    }
                }
                Ok(Line::Err(l)) => self.stderr.push(l),
                Err(_) => panic!(
                    "no `{kind}` event within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.join("\n"),
                    self.stderr.join("\n")
                ),
            }
        }
    }

    pub fn wait_ready(&mut self) -> serde_json::Value {
        self.wait_event("ready", Duration::from_secs(30))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the process to exit (bounded) and collects the rest of its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = match self.exited {
            Some(s) => s,
            None => match self.exit.recv_timeout(timeout) {
                Ok(s) => s,
                Err(_) => panic!("kimaki did not exit within {timeout:?}\n{}", self.output()),
            },
        };
        self.exited = Some(status);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            match line {
                Line::Out(l) => self.stdout.push(l),
                Line::Err(l) => self.stderr.push(l),
            }
        }
        status
    }

    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout.join("\n"), self.stderr.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() && self.exit.try_recv().is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.exit.recv_timeout(Duration::from_secs(10));
        }
    }
}

fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

fn wait_bounded(mut child: Child, timeout: Duration) -> ExitStatus {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().unwrap());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("kimaki did not exit within {timeout:?}");
        }
    }
}

/// File mode bits (permissions only).
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

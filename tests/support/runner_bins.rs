//! Where the pinned runner CLIs live, and the environment they need in tests: a PATH with `rg`,
//! `git` and `bash`, and a throwaway HOME that keeps them off the network. A missing binary fails
//! the test with the command that installs it; it never skips.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// An npm prefix (a directory holding `node_modules`) to use instead of `<repo>/tests/npm`.
pub const NPM_DIR_ENV: &str = "KIMAKI_TEST_NPM_DIR";
const INSTALL_HINT: &str = "install the pinned runner CLIs with `npm ci --prefix tests/npm`";
/// Appended after the directories of the required tools, for the shells the runners start.
const SYSTEM_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
/// Programs the runners need on PATH: OpenCode downloads ripgrep from github.com without `rg`, and
/// runs `git` and `bash`; the others start shells.
const REQUIRED_TOOLS: [(&str, &str); 3] = [
    ("rg", "apt-get install ripgrep"),
    ("git", "apt-get install git"),
    ("bash", "apt-get install bash"),
];

/// The npm prefix holding the runner packages.
pub fn npm_dir() -> PathBuf {
    std::env::var_os(NPM_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm"))
}

/// The native OpenCode binary (Bun-compiled), not the node shim.
pub fn opencode_bin() -> PathBuf {
    let package = if cfg!(target_arch = "aarch64") {
        "opencode-linux-arm64"
    } else {
        "opencode-linux-x64"
    };
    existing_bin("opencode", &format!("{package}/bin/opencode"))
}

/// The native Codex binary (static musl), not the node shim.
pub fn codex_bin() -> PathBuf {
    let (package, triple) = if cfg!(target_arch = "aarch64") {
        ("codex-linux-arm64", "aarch64-unknown-linux-musl")
    } else {
        ("codex-linux-x64", "x86_64-unknown-linux-musl")
    };
    existing_bin(
        "codex",
        &format!("@openai/{package}/vendor/{triple}/bin/codex"),
    )
}

/// The native Claude Code binary, not the node shim.
pub fn claude_bin() -> PathBuf {
    let package = if cfg!(target_arch = "aarch64") {
        "claude-code-linux-arm64"
    } else {
        "claude-code-linux-x64"
    };
    existing_bin("claude", &format!("@anthropic-ai/{package}/claude"))
}

fn existing_bin(name: &str, relative: &str) -> PathBuf {
    let path = npm_dir().join("node_modules").join(relative);
    assert!(
        path.is_file(),
        "{name} binary not found at {}: {INSTALL_HINT} (or set {NPM_DIR_ENV} to an npm prefix \
         that has them)",
        path.display()
    );
    path
}

/// A PATH for runner processes: the directories of `rg`, `git` and `bash` as found on this
/// process's PATH, then the standard system directories. Panics naming the package to install
/// when one of them is missing.
pub fn runner_path_env() -> OsString {
    let mut search: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    search.extend(SYSTEM_PATH.map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (tool, install) in REQUIRED_TOOLS {
        let dir = search
            .iter()
            .find(|dir| dir.join(tool).is_file())
            .unwrap_or_else(|| {
                panic!("`{tool}` not found on PATH; the runner CLIs need it: {install}")
            });
        if !dirs.contains(dir) {
            dirs.push(dir.clone());
        }
    }
    for dir in SYSTEM_PATH.map(PathBuf::from) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).expect("PATH directories contain no separator")
}

/// A fresh HOME for one runner process, deleted on drop. It holds `.npmrc` with `offline=true`
/// (OpenCode otherwise installs `@opencode-ai/plugin` from registry.npmjs.org in the background)
/// and the XDG directories, so nothing is read from or written to the real HOME.
pub fn isolated_home() -> tempfile::TempDir {
    let home = tempfile::Builder::new()
        .prefix("kimaki-runner-home-")
        .tempdir()
        .expect("create a temp HOME");
    std::fs::write(home.path().join(".npmrc"), "offline=true\n").expect("write .npmrc");
    for dir in [".config", ".local/share", ".cache", ".local/state"] {
        std::fs::create_dir_all(home.path().join(dir)).expect("create XDG directories");
    }
    home
}

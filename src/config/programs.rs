//! Finding the programs kimaki runs (runner CLIs, git) and asking them their version, with a
//! deadline so a hung binary never hangs kimaki.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--version` of a healthy CLI answers in well under a second; OpenCode's takes ~1 s cold.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves a configured program: a path containing `/` is used as is (if it is an executable
/// file); a bare name is looked up on `path_var`.
pub fn find_program(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = Path::new(program);
        return is_executable(p).then(|| p.to_owned());
    }
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `program --version` and returns the first version-looking token of its output.
pub async fn program_version(program: &Path) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(VERSION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "`{} --version` did not answer within {VERSION_TIMEOUT:?}",
                program.display()
            )
        })?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} --version` failed ({})",
            program.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_version(&text).unwrap_or_else(|| text.trim().to_owned()))
}

/// The first whitespace-separated token that starts with a digit and contains a dot.
pub fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|t| t.trim_start_matches('v'))
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()) && t.contains('.'))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.18.33\n").as_deref(), Some("1.18.33"));
        assert_eq!(
            parse_version("codex-cli 0.169.0").as_deref(),
            Some("0.169.0")
        );
        assert_eq!(
            parse_version("2.1.197 (Claude Code)").as_deref(),
            Some("2.1.197")
        );
        assert_eq!(parse_version("nothing"), None);
    }

    #[test]
    fn finds_programs_on_path_and_by_path() {
        assert!(find_program("sh", Some("/usr/bin:/bin")).is_some());
        assert!(find_program("/bin/sh", None).is_some());
        assert!(find_program("definitely-not-a-program-xyz", Some("/usr/bin")).is_none());
        assert!(find_program("/nonexistent/opencode", None).is_none());
    }
}

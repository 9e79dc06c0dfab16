//! The configured model directory, checked before the (slow, C++) loader sees it, so a wrong
//! path gets a message that names the setting and the fix instead of a CTranslate2 exception.

use std::path::Path;

use crate::adapters::voice::transcribe::TranscribeError;

/// Files the loader cannot do without.
const REQUIRED: [&str; 3] = ["model.bin", "config.json", "tokenizer.json"];

/// CTranslate2 accepts either vocabulary file.
const VOCABULARIES: [&str; 2] = ["vocabulary.txt", "vocabulary.json"];

fn unusable(dir: &Path, why: &str) -> TranscribeError {
    TranscribeError::LocalModel(format!("{}: {why}", dir.display()))
}

/// The files a CTranslate2 Whisper model needs are in `dir`.
pub fn check(dir: &Path) -> Result<(), TranscribeError> {
    if !dir.is_dir() {
        return Err(unusable(dir, "no such directory"));
    }
    let mut missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !VOCABULARIES.iter().any(|f| dir.join(f).is_file()) {
        missing.push(VOCABULARIES[0]);
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unusable(dir, &format!("missing {}", missing.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_model(dir: &Path) {
        for f in REQUIRED.iter().chain(&["vocabulary.txt"]) {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
    }

    #[test]
    fn missing_dirs_and_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let nowhere = tmp.path().join("nope");
        let e = check(&nowhere).unwrap_err().to_string();
        assert!(e.contains("nope: no such directory"), "{e}");
        assert!(e.contains("KIMAKI_WHISPER_MODEL_DIR"), "{e}");
        assert!(e.contains("scripts/fetch-whisper-model.sh"), "{e}");
        std::fs::write(tmp.path().join("model.bin"), b"x").unwrap();
        let e = check(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("missing config.json, tokenizer.json, vocabulary.txt"),
            "{e}"
        );
        assert!(!check(tmp.path()).unwrap_err().is_retryable());
    }

    #[test]
    fn a_complete_model_passes() {
        let tmp = tempfile::tempdir().unwrap();
        fake_model(tmp.path());
        check(tmp.path()).unwrap();
        std::fs::remove_file(tmp.path().join("vocabulary.txt")).unwrap();
        std::fs::write(tmp.path().join("vocabulary.json"), b"[]").unwrap();
        check(tmp.path()).unwrap();
    }
}

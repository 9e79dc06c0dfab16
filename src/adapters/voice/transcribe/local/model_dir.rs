//! The configured model directory: checked before the (slow, C++) loader sees it, so a wrong path
//! gets a message that names the setting and the fix. ct2rs also wants Hugging Face's
//! `preprocessor_config.json`, which CTranslate2 conversions often lack; kimaki writes the
//! standard Whisper one, so users only unpack a model. A read-only model dir is mirrored with
//! symlinks into kimaki's scratch space instead.

use std::path::{Path, PathBuf};

use crate::adapters::voice::transcribe::TranscribeError;

pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";

/// Whisper's feature extractor: 80 mel bins, 25 ms FFT, 10 ms hop, 30 s windows at 16 kHz.
pub const PREPROCESSOR_JSON: &str = r#"{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
"#;

/// Files the loader cannot do without.
const REQUIRED: [&str; 3] = ["model.bin", "config.json", "tokenizer.json"];

/// CTranslate2 accepts either vocabulary file.
const VOCABULARIES: [&str; 2] = ["vocabulary.txt", "vocabulary.json"];

/// Where a mirror of a read-only model dir goes, under the scratch dir.
const MIRROR_SUBDIR: &str = "whisper-model";

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

/// The directory to load: `dir` itself once it holds a preprocessor config (written here when
/// missing), or a mirror under `scratch` when `dir` cannot be written.
pub fn prepare(dir: &Path, scratch: &Path) -> Result<PathBuf, TranscribeError> {
    check(dir)?;
    if dir.join(PREPROCESSOR_CONFIG).is_file() {
        return Ok(dir.to_path_buf());
    }
    match write_atomically(&dir.join(PREPROCESSOR_CONFIG), PREPROCESSOR_JSON) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(e) => {
            tracing::info!(dir = %dir.display(), error = %e, "The Whisper model dir is not writable; loading it through a mirror.");
            mirror(dir, &scratch.join(MIRROR_SUBDIR))
        }
    }
}

/// Writes through a temporary name so a concurrent reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `mirror` rebuilt as symlinks to every file of `dir`, plus the preprocessor config.
fn mirror(dir: &Path, mirror: &Path) -> Result<PathBuf, TranscribeError> {
    let io = |what: &str, e: std::io::Error| {
        TranscribeError::LocalModel(format!("cannot {what} {}: {e}", mirror.display()))
    };
    if mirror.exists() {
        std::fs::remove_dir_all(mirror).map_err(|e| io("clear", e))?;
    }
    std::fs::create_dir_all(mirror).map_err(|e| io("create", e))?;
    let entries = std::fs::read_dir(dir).map_err(|e| unusable(dir, &e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| unusable(dir, &e.to_string()))?;
        let target =
            std::fs::canonicalize(entry.path()).map_err(|e| unusable(dir, &e.to_string()))?;
        std::os::unix::fs::symlink(&target, mirror.join(entry.file_name()))
            .map_err(|e| io("link into", e))?;
    }
    std::fs::write(mirror.join(PREPROCESSOR_CONFIG), PREPROCESSOR_JSON)
        .map_err(|e| io("write into", e))?;
    Ok(mirror.to_path_buf())
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
    fn writes_the_preprocessor_config_once() {
        let tmp = tempfile::tempdir().unwrap();
        fake_model(tmp.path());
        let scratch = tmp.path().join("scratch");
        assert_eq!(prepare(tmp.path(), &scratch).unwrap(), tmp.path());
        let written = std::fs::read_to_string(tmp.path().join(PREPROCESSOR_CONFIG)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(v["n_samples"], 480_000);
        assert_eq!(v["sampling_rate"], 16_000);
        // An existing file is the user's and stays as it is.
        std::fs::write(tmp.path().join(PREPROCESSOR_CONFIG), "{\"custom\":1}").unwrap();
        prepare(tmp.path(), &scratch).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(PREPROCESSOR_CONFIG)).unwrap(),
            "{\"custom\":1}"
        );
        assert!(!scratch.exists());
    }

    #[test]
    fn a_read_only_model_dir_is_mirrored() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        std::fs::create_dir(&model).unwrap();
        fake_model(&model);
        std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(model.join("probe"), b"").is_ok() {
            // Running as root: permissions do not stop writes, so there is nothing to test.
            std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o755)).unwrap();
            return;
        }
        let scratch = tmp.path().join("scratch");
        let loaded = prepare(&model, &scratch).unwrap();
        assert_eq!(loaded, scratch.join(MIRROR_SUBDIR));
        assert!(loaded.join("model.bin").is_file());
        assert!(loaded.join(PREPROCESSOR_CONFIG).is_file());
        check(&loaded).unwrap();
        std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_mirror_links_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        std::fs::create_dir(&model).unwrap();
        fake_model(&model);
        let target = tmp.path().join("mirror");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("stale.bin"), b"old").unwrap();
        assert_eq!(mirror(&model, &target).unwrap(), target);
        assert!(!target.join("stale.bin").exists());
        assert!(std::fs::symlink_metadata(target.join("model.bin"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(target.join(PREPROCESSOR_CONFIG).is_file());
        check(&target).unwrap();
    }
}

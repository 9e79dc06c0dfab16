//! Voice messages → prompts: decode Discord's Ogg/Opus recordings, add the workspace's vocabulary,
//! and transcribe with Gemini, OpenAI or a local command. Implements the core's `Transcriber`
//! (the dispatcher calls it in the job's place in its lane). Depends on `core` and `config` only,
//! never on another adapter; `codec` is pure and imports nothing from kimaki.
//!
//! # Layout
//! - `config`: `VoiceConfig` (providers in order, limits), built from settings.
//! - `transcriber`: `VoiceTranscriber`, the pipeline from a saved recording to a `Transcript`.
//! - `codec`: Ogg/Opus decode and encode, resampling, WAV, Discord's waveform.
//! - `context`: file tree and vocabulary hint from the job's workspace.
//! - `transcribe`: providers, the retrying chain, `TranscribeError`.

pub mod codec;
mod config;
pub mod context;
pub mod transcribe;
mod transcriber;

pub use config::{ProviderConfig, VoiceConfig, VoiceDisabled};
pub use transcribe::TranscribeError;
pub use transcriber::{VoiceTranscriber, META_AGENTS};

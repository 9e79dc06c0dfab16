//! `kimaki upload-to-discord`: post files to a Discord thread with the configured bot token.
//! Talks to Discord directly, so it works whether or not kimaki is running.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::discord::{self, DiscordConfig, UploadError, UploadedMessage};
use crate::config::Loaded;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki upload-to-discord --thread 1234567891 report.pdf screenshot.png
  kimaki upload-to-discord --thread 1234567891 dist/*.log --json      message ids as JSON

Each file may be at most 10 MiB; files go out ten at a time, at most 10 MiB per message. Every
file is checked before anything is sent, so one file over the limit uploads nothing.")]
pub struct UploadArgs {
    /// The Discord thread (or channel) id.
    #[arg(long, value_name = "ID")]
    pub thread: String,
    /// Files to upload.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print the posted messages as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    thread: &'a str,
    messages: &'a [UploadedMessage],
}

pub fn run(_global: &GlobalArgs, args: UploadArgs, loaded: Loaded) -> Result<u8, Failure> {
    let Some(config) =
        DiscordConfig::from_settings(&loaded.settings, &loaded.data_dir, &loaded.env)
    else {
        return Err(Failure::new(exit::CONFIG, "Discord is not configured")
            .hint("set KIMAKI_BOT_TOKEN (for example with `kimaki init`)"));
    };
    let rt = super::runtime()?;
    let messages = rt
        .block_on(discord::upload_files(&config, &args.thread, &args.files))
        .map_err(|e| {
            let code = match &e {
                UploadError::Rest { .. } | UploadError::Client(_) => exit::UNAVAILABLE,
                UploadError::BadThread(_)
                | UploadError::NoFiles
                | UploadError::Unreadable { .. }
                | UploadError::TooLarge { .. } => exit::USAGE,
            };
            Failure::new(code, e.to_string())
        })?;
    if args.json {
        print_json(&Report {
            thread: &args.thread,
            messages: &messages,
        })?;
    } else {
        for m in &messages {
            println!(
                "Uploaded {} to thread {} (message {}).",
                m.files.join(", "),
                args.thread,
                m.message_id
            );
        }
    }
    Ok(exit::OK)
}

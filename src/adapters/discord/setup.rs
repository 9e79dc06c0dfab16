//! Guild setup at READY, idempotent across restarts: the `Kimaki` role, guild slash commands
//! (only when their hash changed), the `Kimaki` category (`Kimaki 2`, … past 50 channels) and one
//! text channel per registered project. Stored ids are trusted first, then names; the channel ↔
//! directory mapping lives in the store, never in the topic (display only). A project channel a
//! user deleted is tombstoned and not recreated until `/add-project` asks for it.

use std::collections::HashMap;

use serenity::all::{ChannelId, ChannelType, CreateChannel, EditRole, GuildChannel, GuildId};

use super::client::Bot;
use super::commands;
use super::store::ChannelRecord;
use super::DiscordError;
use crate::core::{clock, Workspace};

/// The category project channels live in (then `Kimaki 2`, `Kimaki 3`, …).
pub const CATEGORY_NAME: &str = "Kimaki";

/// Discord allows 50 channels per category.
const CHANNELS_PER_CATEGORY: usize = 50;

/// Channel names are at most 100 characters.
const CHANNEL_NAME_CHARS: usize = 100;

/// Topics are at most 1024 characters.
const TOPIC_CHARS: usize = 1024;

/// A channel name from a directory's base name: lowercase, `[a-z0-9-]` only, ≤ 100.
pub fn channel_name(basename: &str) -> String {
    let name: String = basename
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(CHANNEL_NAME_CHARS)
        .collect();
    if name.trim_matches('-').is_empty() {
        "project".to_owned()
    } else {
        name
    }
}

/// `name`, or `name-2`, `name-3`, … when taken (always within 100 characters).
pub fn unique_name(name: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == name) {
        return name.to_owned();
    }
    for n in 2.. {
        let suffix = format!("-{n}");
        let base: String = name
            .chars()
            .take(CHANNEL_NAME_CHARS - suffix.len())
            .collect();
        let candidate = format!("{base}{suffix}");
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    name.to_owned()
}

/// The category to use after `existing` ones: `Kimaki`, `Kimaki 2`, …
pub fn category_name(index: usize) -> String {
    if index == 0 {
        CATEGORY_NAME.to_owned()
    } else {
        format!("{CATEGORY_NAME} {}", index + 1)
    }
}

fn is_our_category_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(CATEGORY_NAME) else {
        return false;
    };
    rest.is_empty() || rest.trim().parse::<u32>().is_ok()
}

/// Role, commands, channels for one guild.
pub async fn setup_guild(bot: &Bot, guild: u64) -> Result<(), DiscordError> {
    ensure_role(bot, guild).await;
    register_commands(bot, guild).await;
    sync_channels(bot, guild).await
}

async fn ensure_role(bot: &Bot, guild: u64) {
    let Some(wanted) = bot.config.access.allowed_roles.first().cloned() else {
        return;
    };
    let exists = bot.cache().and_then(|c| {
        c.guild(GuildId::new(guild.max(1))).map(|g| {
            g.roles
                .values()
                .any(|r| r.name.eq_ignore_ascii_case(&wanted))
        })
    });
    if exists != Some(false) {
        return;
    }
    match GuildId::new(guild.max(1))
        .create_role(
            &bot.http,
            EditRole::new().name(wanted.clone()).mentionable(false),
        )
        .await
    {
        Ok(_) => tracing::info!(guild, role = %wanted, "Created the access role."),
        Err(e) => {
            tracing::warn!(guild, error = %DiscordError::from(e), "Could not create the access role.")
        }
    }
}

async fn register_commands(bot: &Bot, guild: u64) {
    let hash = commands::definitions_hash();
    if bot.store.commands_hash(guild).ok().flatten().as_deref() == Some(hash.as_str()) {
        return;
    }
    match GuildId::new(guild.max(1))
        .set_commands(&bot.http, commands::definitions())
        .await
    {
        Ok(registered) => {
            tracing::info!(
                guild,
                count = registered.len(),
                "Registered slash commands."
            );
            if let Err(e) = bot.store.set_commands_hash(guild, &hash) {
                tracing::warn!(error = %e, "Could not record the command hash.");
            }
        }
        Err(e) => {
            tracing::error!(guild, error = %DiscordError::from(e), "Discord rejected the slash commands.")
        }
    }
}

/// Whether projects get channels in this guild automatically: the configured guild, or the only
/// guild the bot is in.
fn is_home_guild(bot: &Bot, guild: u64) -> bool {
    match bot.config.guild_id {
        Some(g) => g == guild,
        None => bot.cache().is_none_or(|c| c.guilds().len() <= 1),
    }
}

/// Whether a registered, not tombstoned project lacks a channel in `guild`.
pub fn has_unmapped_projects(bot: &Bot, guild: u64) -> bool {
    if !is_home_guild(bot, guild) {
        return false;
    }
    let mapped: Vec<String> = bot
        .store
        .channels()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.guild_id == guild)
        .map(|r| r.workspace_id)
        .collect();
    bot.workspaces
        .list()
        .unwrap_or_default()
        .iter()
        .any(|w| !mapped.contains(&w.id) && !bot.store.tombstoned(&w.id).unwrap_or(true))
}

/// Drops mappings of channels that vanished; gives every registered project a channel.
pub async fn sync_channels(bot: &Bot, guild: u64) -> Result<(), DiscordError> {
    let mut channels = GuildId::new(guild.max(1)).channels(&bot.http).await?;
    let now = clock::now_ms();
    for r in bot
        .store
        .channels()?
        .into_iter()
        .filter(|r| r.guild_id == guild)
    {
        if !channels.contains_key(&ChannelId::new(r.channel_id.max(1))) {
            tracing::info!(channel = r.channel_id, dir = %r.directory, "A project channel disappeared; its mapping is dropped.");
            bot.store.delete_channel(r.channel_id)?;
            bot.store.set_tombstone(&r.workspace_id, true, now)?;
        }
    }
    if !is_home_guild(bot, guild) {
        return Ok(());
    }
    let mapped: Vec<String> = bot
        .store
        .channels()?
        .into_iter()
        .filter(|r| r.guild_id == guild)
        .map(|r| r.workspace_id)
        .collect();
    let workspaces = bot
        .workspaces
        .list()
        .map_err(|e| DiscordError::Setup(e.to_string()))?;
    for ws in workspaces {
        if mapped.contains(&ws.id) || bot.store.tombstoned(&ws.id)? {
            continue;
        }
        let record = ensure_project_channel(bot, guild, &ws, &mut channels).await?;
        tracing::info!(channel = record.channel_id, name = %record.name, dir = %record.directory, "Project channel ready.");
    }
    Ok(())
}

/// The project's channel in `guild`: the mapped one, an unmapped one of the same name in our
/// categories (adopted), or a new one.
pub async fn ensure_project_channel(
    bot: &Bot,
    guild: u64,
    ws: &Workspace,
    channels: &mut HashMap<ChannelId, GuildChannel>,
) -> Result<ChannelRecord, DiscordError> {
    // The start-up setup, the channel sync (which wakes when a project is added) and
    // `/add-project` can ask for the same project's channel at once: one at a time, and a
    // channel another one created meanwhile (missing from this caller's older listing) is
    // looked up again rather than created twice.
    let _one_at_a_time = bot.channel_setup.lock().await;
    let records = bot.store.channels()?;
    if let Some(r) = records
        .iter()
        .find(|r| r.guild_id == guild && r.workspace_id == ws.id)
    {
        let id = ChannelId::new(r.channel_id.max(1));
        if !channels.contains_key(&id) {
            *channels = GuildId::new(guild.max(1)).channels(&bot.http).await?;
        }
        if channels.contains_key(&id) {
            return Ok(r.clone());
        }
    }
    bot.store.set_tombstone(&ws.id, false, clock::now_ms())?;
    let categories = our_categories(bot, guild, channels);
    let base = channel_name(
        &ws.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ws.name.clone()),
    );
    let mapped: Vec<u64> = records.iter().map(|r| r.channel_id).collect();
    let adoptable = channels.values().find(|c| {
        c.kind == ChannelType::Text
            && c.name == base
            && c.parent_id.is_some_and(|p| categories.contains(&p.get()))
            && !mapped.contains(&c.id.get())
    });
    let channel = match adoptable {
        Some(c) => c.clone(),
        None => {
            let category = category_with_room(bot, guild, categories, channels).await?;
            let taken: Vec<String> = channels.values().map(|c| c.name.clone()).collect();
            let name = unique_name(&base, &taken);
            let topic: String = format!("📁 {} · {}", ws.path.display(), bot.config.machine)
                .chars()
                .take(TOPIC_CHARS)
                .collect();
            let created = GuildId::new(guild.max(1))
                .create_channel(
                    &bot.http,
                    CreateChannel::new(name)
                        .kind(ChannelType::Text)
                        .category(ChannelId::new(category.max(1)))
                        .topic(topic),
                )
                .await?;
            channels.insert(created.id, created.clone());
            created
        }
    };
    let record = ChannelRecord {
        channel_id: channel.id.get(),
        guild_id: guild,
        workspace_id: ws.id.clone(),
        directory: ws.path.display().to_string(),
        name: channel.name.clone(),
        verbosity: None,
        mention_mode: None,
        model: None,
        agent: None,
    };
    bot.store.put_channel(&record).await?;
    Ok(record)
}

/// Our categories, in order: the stored ids that still exist, else those named `Kimaki…`.
fn our_categories(bot: &Bot, guild: u64, channels: &HashMap<ChannelId, GuildChannel>) -> Vec<u64> {
    let is_category = |id: u64| {
        channels
            .get(&ChannelId::new(id.max(1)))
            .is_some_and(|c| c.kind == ChannelType::Category)
    };
    let stored: Vec<u64> = bot
        .store
        .categories(guild)
        .unwrap_or_default()
        .into_iter()
        .filter(|id| is_category(*id))
        .collect();
    if !stored.is_empty() {
        return stored;
    }
    let mut named: Vec<(String, u64)> = channels
        .values()
        .filter(|c| c.kind == ChannelType::Category && is_our_category_name(&c.name))
        .map(|c| (c.name.clone(), c.id.get()))
        .collect();
    named.sort();
    named.into_iter().map(|(_, id)| id).collect()
}

/// A category with fewer than 50 channels, creating `Kimaki N` when all are full.
async fn category_with_room(
    bot: &Bot,
    guild: u64,
    mut categories: Vec<u64>,
    channels: &mut HashMap<ChannelId, GuildChannel>,
) -> Result<u64, DiscordError> {
    for id in &categories {
        let children = channels
            .values()
            .filter(|c| c.parent_id.map(|p| p.get()) == Some(*id))
            .count();
        if children < CHANNELS_PER_CATEGORY {
            bot.store.set_categories(guild, categories.clone())?;
            return Ok(*id);
        }
    }
    let name = category_name(categories.len());
    let created = GuildId::new(guild.max(1))
        .create_channel(
            &bot.http,
            CreateChannel::new(name).kind(ChannelType::Category),
        )
        .await?;
    categories.push(created.id.get());
    bot.store.set_categories(guild, categories)?;
    let id = created.id.get();
    channels.insert(created.id, created);
    Ok(id)
}

/// A deleted project channel drops its mapping and is not recreated automatically.
pub async fn on_channel_deleted(bot: &Bot, channel: u64) {
    match bot.store.channel(channel) {
        Ok(Some(r)) => {
            let _ = bot.store.delete_channel(channel);
            let _ = bot
                .store
                .set_tombstone(&r.workspace_id, true, clock::now_ms());
            tracing::info!(channel, dir = %r.directory, "Project channel deleted; mapping dropped.");
        }
        _ => super::inbound::on_thread_deleted(bot, channel).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_discord_rules() {
        assert_eq!(channel_name("My App"), "my-app");
        assert_eq!(channel_name("rust_proj.v2"), "rust-proj-v2");
        assert_eq!(channel_name("Ünïcode"), "-n-code");
        assert_eq!(channel_name("..."), "project");
        assert_eq!(channel_name(&"a".repeat(150)).len(), 100);
    }

    #[test]
    fn collisions_get_numbered_suffixes_within_the_limit() {
        let taken = vec!["app".to_owned(), "app-2".to_owned()];
        assert_eq!(unique_name("app", &taken), "app-3");
        assert_eq!(unique_name("web", &taken), "web");
        let long = "x".repeat(100);
        let n = unique_name(&long, std::slice::from_ref(&long));
        assert_eq!(n.len(), 100);
        assert!(n.ends_with("-2"));
    }

    #[test]
    fn categories_overflow_into_numbered_ones() {
        assert_eq!(category_name(0), "Kimaki");
        assert_eq!(category_name(1), "Kimaki 2");
        assert!(is_our_category_name("Kimaki 3"));
        assert!(!is_our_category_name("Kimaki stuff"));
    }
}

//! The slash command definitions: a fixed, small set, far below Discord's 100-command budget;
//! dynamic choices (sessions, models, agents, projects) are autocomplete values, never commands.
//! Registered per guild only when the definitions' hash changed.

use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption};

use super::outbound::fnv1a;
use super::render::Verbosity;

pub const NEW_SESSION: &str = "new-session";
pub const RESUME: &str = "resume";
pub const ABORT: &str = "abort";
pub const QUEUE: &str = "queue";
pub const CLEAR_QUEUE: &str = "clear-queue";
pub const MODEL: &str = "model";
pub const AGENT: &str = "agent";
pub const VERBOSITY: &str = "verbosity";
pub const MENTION_MODE: &str = "mention-mode";
pub const ADD_PROJECT: &str = "add-project";
pub const CREATE_NEW_PROJECT: &str = "create-new-project";
pub const STATUS: &str = "status";
pub const CONTEXT_USAGE: &str = "context-usage";
pub const TASKS: &str = "tasks";
pub const NEW_WORKTREE: &str = "new-worktree";
pub const MERGE_WORKTREE: &str = "merge-worktree";
pub const WORKTREES: &str = "worktrees";

fn string_opt(name: &str, description: &str, required: bool) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::String, name, description).required(required)
}

fn scope_opt() -> CreateCommandOption {
    string_opt(
        "scope",
        "Where it applies (default: this thread, or this channel)",
        false,
    )
    .add_string_choice("this session", "session")
    .add_string_choice("this channel", "channel")
}

/// Every command, in registration order (required options first, as Discord demands).
pub fn definitions() -> Vec<CreateCommand> {
    let mut verbosity = string_opt("level", "How much of the agent's work to show", true);
    for v in Verbosity::ALL {
        verbosity = verbosity.add_string_choice(v.as_str(), v.as_str());
    }
    vec![
        CreateCommand::new(NEW_SESSION)
            .description("Start a new session in a new thread")
            .add_option(string_opt("prompt", "What the agent should do", true).max_length(1800))
            .add_option(string_opt("agent", "Agent for this session", false).set_autocomplete(true))
            .add_option(
                string_opt("model", "Model for this session", false).set_autocomplete(true),
            ),
        CreateCommand::new(RESUME)
            .description("Continue an earlier session in a new thread")
            .add_option(
                string_opt("session", "The session to continue", true).set_autocomplete(true),
            ),
        CreateCommand::new(ABORT).description("Stop the running turn (queued messages still run)"),
        CreateCommand::new(QUEUE)
            .description("Queue a message to run after the current turn")
            .add_option(string_opt("message", "The message to queue", true).max_length(1800)),
        CreateCommand::new(CLEAR_QUEUE).description("Remove every queued message of this thread"),
        CreateCommand::new(MODEL)
            .description("Choose the model (applies to the next message)")
            .add_option(
                string_opt("model", "provider/model, or `default`", true).set_autocomplete(true),
            )
            .add_option(scope_opt()),
        CreateCommand::new(AGENT)
            .description("Choose the agent (applies to the next message)")
            .add_option(
                string_opt("agent", "Agent name, or `default`", true).set_autocomplete(true),
            )
            .add_option(scope_opt()),
        CreateCommand::new(VERBOSITY)
            .description("How much of the agent's work this channel shows")
            .add_option(verbosity),
        CreateCommand::new(MENTION_MODE)
            .description("Only start sessions from messages that mention the bot")
            .add_option(
                CreateCommandOption::new(CommandOptionType::Boolean, "enabled", "On or off")
                    .required(true),
            ),
        CreateCommand::new(ADD_PROJECT)
            .description("Create a channel for a project on this machine")
            .add_option(
                string_opt(
                    "project",
                    "A registered project or a folder in the projects directory",
                    true,
                )
                .set_autocomplete(true),
            ),
        CreateCommand::new(STATUS).description("Show the session or channel state"),
        CreateCommand::new(NEW_WORKTREE)
            .description("Start a session in a git worktree (branch opencode/NAME) in a new thread")
            .add_option(
                string_opt("name", "A new worktree name, or an existing worktree", true)
                    .set_autocomplete(true)
                    .max_length(64),
            )
            .add_option(string_opt("prompt", "What the agent should do", false).max_length(1800))
            .add_option(string_opt(
                "base",
                "Branch to start a new worktree from (default: the project's HEAD)",
                false,
            )),
        CreateCommand::new(MERGE_WORKTREE)
            .description("Merge this thread's worktree into the main branch")
            .add_option(string_opt(
                "into",
                "Branch to merge into (default: the main checkout's branch)",
                false,
            )),
        CreateCommand::new(CONTEXT_USAGE)
            .description("How much of the model's context this session uses, and what it cost"),
        CreateCommand::new(TASKS)
            .description("Scheduled sends of this project (kimaki send --send-at), next run first")
            .add_option(string_opt("delete", "Delete this task", false).set_autocomplete(true)),
        CreateCommand::new(CREATE_NEW_PROJECT)
            .description("Create a new project folder (a git repository) with its channel")
            .add_option(
                string_opt("name", "Folder name in the projects directory", true).max_length(64),
            ),
        CreateCommand::new(WORKTREES)
            .description("List the project's git worktrees")
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "auto",
                "Start every new session of this channel in its own worktree",
            )),
    ]
}

/// A stable hash of the definitions as sent: re-registration happens only when it changes.
pub fn definitions_hash() -> String {
    let json = serde_json::to_string(&definitions()).unwrap_or_default();
    format!("{:016x}", fnv1a(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Discord's per-guild command budget; the set must stay well below it.
    const COMMAND_BUDGET: usize = 100;

    #[test]
    fn definitions_respect_discord_limits() {
        let defs: Vec<Value> = definitions()
            .iter()
            .map(|d| serde_json::to_value(d).unwrap())
            .collect();
        assert!(
            defs.len() <= COMMAND_BUDGET / 5,
            "stay far below the budget"
        );
        let mut names = Vec::new();
        for d in &defs {
            let name = d["name"].as_str().unwrap();
            assert!((1..=32).contains(&name.len()), "{name}");
            assert_eq!(name, name.to_lowercase(), "{name}");
            let desc = d["description"].as_str().unwrap();
            assert!((1..=100).contains(&desc.chars().count()), "{name}: {desc}");
            let options = d["options"].as_array().cloned().unwrap_or_default();
            assert!(options.len() <= 25);
            let mut seen_optional = false;
            for o in &options {
                let required = o["required"].as_bool().unwrap_or(false);
                assert!(
                    !(required && seen_optional),
                    "{name}: required after optional"
                );
                seen_optional |= !required;
                assert!(o["description"].as_str().unwrap().chars().count() <= 100);
            }
            names.push(name.to_owned());
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(definitions_hash(), definitions_hash());
    }
}

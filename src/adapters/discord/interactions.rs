//! Interactions: permission buttons, question selects, slash commands and autocomplete.
//!
//! Answers go to the core (`JobQueue::answer`), which applies them to the running job or — after
//! a restart — continues the session with them. Every answer is recorded first (who, what), so a
//! double click answers once, the prompt's edited text is the same whichever path renders it,
//! and time-outs and dismissals are never overridden by a late click. Prompts that nobody answers
//! are denied after the configured time-out.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use serenity::all::{
    CommandInteraction, ComponentInteraction, ComponentInteractionDataKind, CreateAllowedMentions,
    CreateAutocompleteResponse, CreateInteractionResponse, CreateInteractionResponseMessage,
    EditInteractionResponse, GuildId, Interaction,
};

use super::access::Access;
use super::client::Bot;
use super::commands as cmd;
use super::inbound::{self, InboundMessage};
use super::outbound::{nonce_for, ChannelOp, Slot};
use super::render::{self, Verbosity};
use super::setup;
use super::sink::{custom_id, keys, permission_outcome, Address};
use super::store::{
    AnswerRecord, ChannelRecord, OtherAnswer, QuestionProgress, ThreadRecord, WorktreeState,
};
use super::voice_retry;
use super::worktrees;
use crate::core::events::PermissionDecision;
use crate::core::interactions::{
    self as core_interactions, InteractionKind, Lookup, PendingInteraction,
};
use crate::core::{
    clock, AnswerOutcome, Control, EnqueueMode, JobId, LaneId, QueueError, RequestId,
};

/// Autocomplete answers hold at most 25 choices.
const MAX_CHOICES: usize = 25;

/// `/tasks` lists at most this many (the rest are counted).
const MAX_LISTED_TASKS: usize = 15;

/// `/resume` replays this many of the old thread's rendered messages.
const RESUME_REPLAY_MESSAGES: u8 = 30;

/// Agents every runner knows; more can be typed.
const KNOWN_AGENTS: [&str; 2] = ["build", "plan"];

/// The pending-permission sweep runs this often at most / at least.
const MIN_SWEEP: Duration = Duration::from_millis(100);
const MAX_SWEEP: Duration = Duration::from_secs(30);

pub(super) fn ephemeral(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(render::truncate_chars(
                &text.into(),
                render::GENERATED_LIMIT,
            ))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

pub(super) fn visible(text: impl Into<String>) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(render::truncate_chars(
                &text.into(),
                render::GENERATED_LIMIT,
            ))
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

fn update(text: String) -> CreateInteractionResponse {
    CreateInteractionResponse::UpdateMessage(
        CreateInteractionResponseMessage::new()
            .content(text)
            .components(Vec::new())
            .allowed_mentions(CreateAllowedMentions::new()),
    )
}

pub(super) fn log_failure(what: &str, e: serenity::Error) {
    tracing::warn!(error = %super::DiscordError::from(e), what, "Could not answer an interaction.");
}

/// Dispatches one interaction.
pub async fn handle(bot: &Bot, i: Interaction) {
    match i {
        Interaction::Component(c) => on_component(bot, &c).await,
        Interaction::Command(c) => on_command(bot, &c).await,
        Interaction::Autocomplete(c) => on_autocomplete(bot, &c).await,
        _ => {}
    }
}

async fn allowed(
    bot: &Bot,
    guild: Option<GuildId>,
    user: &serenity::all::User,
    roles: Option<Vec<u64>>,
) -> Access {
    let Some(g) = guild else {
        return Access::Refused;
    };
    let who = bot.subject(g.get(), user.id.get(), user.bot, roles).await;
    bot.decide(&who)
}

fn member_roles(m: Option<&serenity::all::Member>) -> Option<Vec<u64>> {
    m.map(|m| m.roles.iter().map(|r| r.get()).collect())
}

fn refusal(bot: &Bot, access: Access) -> String {
    super::access::refusal_text(access, &bot.role_to_ask_for())
        .unwrap_or_else(|| "You may not use this bot.".to_owned())
}

// ----- permissions and questions -------------------------------------------------------------

async fn on_component(bot: &Bot, c: &ComponentInteraction) {
    let access = allowed(bot, c.guild_id, &c.user, member_roles(c.member.as_ref())).await;
    if access != Access::Allowed {
        if let Err(e) = c
            .create_response(&bot.http, ephemeral(refusal(bot, access)))
            .await
        {
            log_failure("refusal", e);
        }
        return;
    }
    let id = c.data.custom_id.as_str();
    if let Some(job) = id.strip_prefix(voice_retry::CUSTOM_ID_PREFIX) {
        voice_retry::on_click(bot, c, job).await;
        return;
    }
    if let Some(rest) = id.strip_prefix("perm:") {
        if let Some((request, choice)) = rest.rsplit_once(':') {
            on_permission(bot, c, request, choice).await;
            return;
        }
    }
    if let Some(rest) = id.strip_prefix("q:") {
        if let Some((request, index)) = rest.rsplit_once(':') {
            let values = match &c.data.kind {
                ComponentInteractionDataKind::StringSelect { values } => values.clone(),
                _ => Vec::new(),
            };
            if let Ok(index) = index.parse::<usize>() {
                on_question(bot, c, request, index, &values).await;
                return;
            }
        }
    }
    if let Err(e) = c
        .create_response(&bot.http, ephemeral("This button is no longer in use."))
        .await
    {
        log_failure("unknown component", e);
    }
}

fn permission_parts(p: &PendingInteraction) -> Option<(String, Option<String>, Vec<String>)> {
    match &p.kind {
        InteractionKind::Permission {
            tool,
            title,
            patterns,
            ..
        } => Some((tool.clone(), title.clone(), patterns.clone())),
        InteractionKind::Question { .. } => None,
    }
}

fn timeout_minutes(bot: &Bot) -> u64 {
    (bot.config.timings.permission_timeout.as_secs() / 60).max(1)
}

/// The text a permission prompt shows once answered (the sink renders the same).
fn answered_permission_text(
    bot: &Bot,
    p: &PendingInteraction,
    answer: &AnswerRecord,
) -> Option<String> {
    let (tool, title, patterns) = permission_parts(p)?;
    let outcome = permission_outcome(None, Some(answer), timeout_minutes(bot));
    Some(render::permission_text(
        &tool,
        title.as_deref(),
        &patterns,
        outcome.as_ref(),
    ))
}

async fn on_permission(bot: &Bot, c: &ComponentInteraction, request: &str, choice: &str) {
    let decision = match choice {
        "once" => PermissionDecision::Once,
        "always" => PermissionDecision::Always,
        _ => PermissionDecision::Reject,
    };
    let rid = RequestId::new(request);
    let pending = match core_interactions::lookup(bot.queue.store(), &rid) {
        Ok(Lookup::Pending(p)) => p,
        Ok(Lookup::Resolved(_)) | Ok(Lookup::Unknown) | Err(_) => {
            if let Err(e) = c
                .create_response(
                    &bot.http,
                    ephemeral("Permission expired and was already rejected."),
                )
                .await
            {
                log_failure("expired permission", e);
            }
            return;
        }
    };
    // The first answer recorded wins: a double click, or a click racing the time-out, answers
    // once and every later click sees the same outcome.
    let existing = bot.store.answer(request).ok().flatten();
    let deliver = existing.is_none();
    let answer = existing.unwrap_or_else(|| AnswerRecord {
        outcome: choice.to_owned(),
        by: Some(c.user.name.clone()),
        answers: None,
        at: clock::now_ms(),
    });
    if deliver {
        if let Err(e) = bot.store.put_answer(request, &answer).await {
            tracing::warn!(error = %e, "Could not record a permission answer.");
        }
    }
    let Some(text) = answered_permission_text(bot, &pending, &answer) else {
        return;
    };
    let key = keys::permission(pending.job_id.as_str(), request);
    // Told before the answer goes out, so the re-render it triggers finds the message already
    // showing the outcome (the interaction edits it) and sends nothing.
    shown(bot, c, key.clone(), Slot::new(key, text.clone()).hash()).await;
    if deliver {
        let control = Control::Permission {
            request_id: rid.clone(),
            decision,
        };
        match bot.queue.answer(control).await {
            Ok(AnswerOutcome::Continued(job)) => {
                tracing::info!(request, job_id = %job, "A permission answered after a restart continues the session.");
            }
            Ok(AnswerOutcome::Applied | AnswerOutcome::AlreadyResolved) => {}
            Err(QueueError::UnknownRequest(_)) => {
                if let Err(e) = c
                    .create_response(
                        &bot.http,
                        ephemeral("Permission expired and was already rejected."),
                    )
                    .await
                {
                    log_failure("expired permission", e);
                }
                return;
            }
            Err(e) => tracing::warn!(request, error = %e, "Could not deliver a permission answer."),
        }
    }
    if let Err(e) = c.create_response(&bot.http, update(text)).await {
        log_failure("permission update", e);
        unshown(bot, c, keys::permission(pending.job_id.as_str(), request)).await;
        update_prompt_slots(bot, &pending).await;
    }
}

/// Records that the component's message now shows content with `hash`.
async fn shown(bot: &Bot, c: &ComponentInteraction, key: String, hash: u64) {
    let op = ChannelOp::Shown {
        key,
        message_id: c.message.id.get(),
        hash,
    };
    bot.outbound.send(c.channel_id.get(), op).await;
}

/// The interaction could not edit the message: let the outbound layer do it.
async fn unshown(bot: &Bot, c: &ComponentInteraction, key: String) {
    shown(bot, c, key, 0).await;
}

/// Re-renders the prompt messages of a request from its recorded answer, through the outbound
/// layer (for answers that arrive without an interaction: time-outs, dismissals, typed ones).
async fn update_prompt_slots(bot: &Bot, p: &PendingInteraction) {
    let Some(answer) = bot.store.answer(p.request_id.as_str()).ok().flatten() else {
        return;
    };
    let Some(thread) = job_thread(bot, &p.job_id) else {
        return;
    };
    match &p.kind {
        InteractionKind::Permission { .. } => {
            if let Some(text) = answered_permission_text(bot, p, &answer) {
                let key = keys::permission(p.job_id.as_str(), p.request_id.as_str());
                let mut slot = Slot::new(key, text);
                slot.notify = true;
                bot.outbound.send(thread, ChannelOp::Upsert(slot)).await;
            }
        }
        InteractionKind::Question { questions } => {
            for (i, q) in questions.iter().enumerate() {
                let chosen = answer
                    .answers
                    .as_ref()
                    .map(|a| a.get(i).cloned().unwrap_or_default())
                    .unwrap_or_default();
                let key = keys::question(p.job_id.as_str(), p.request_id.as_str(), i);
                let mut slot = Slot::new(
                    key,
                    render::question_text(q.header.as_deref(), &q.question, Some(&chosen)),
                );
                slot.notify = true;
                bot.outbound.send(thread, ChannelOp::Upsert(slot)).await;
            }
        }
    }
}

fn job_thread(bot: &Bot, job: &JobId) -> Option<u64> {
    let record = bot.queue.get(job).ok().flatten()?;
    Address::of(&record)?.thread_id()
}

async fn on_question(
    bot: &Bot,
    c: &ComponentInteraction,
    request: &str,
    index: usize,
    values: &[String],
) {
    let rid = RequestId::new(request);
    let pending = match core_interactions::lookup(bot.queue.store(), &rid) {
        Ok(Lookup::Pending(p)) => p,
        _ => {
            if let Err(e) = c
                .create_response(&bot.http, ephemeral("This question was already answered."))
                .await
            {
                log_failure("answered question", e);
            }
            return;
        }
    };
    let InteractionKind::Question { questions } = &pending.kind else {
        return;
    };
    let Some(q) = questions.get(index) else {
        return;
    };
    if values.iter().any(|v| v == custom_id::OTHER) {
        let other = OtherAnswer {
            request_id: request.to_owned(),
            index,
            count: questions.len(),
        };
        let _ = bot.store.set_other_answer(c.channel_id.get(), Some(&other));
        if let Err(e) = c
            .create_response(
                &bot.http,
                ephemeral(
                    "Type your answer in this thread: your next message answers the question.",
                ),
            )
            .await
        {
            log_failure("other answer", e);
        }
        return;
    }
    let labels: Vec<String> = values
        .iter()
        .filter_map(|v| v.parse::<usize>().ok())
        .filter_map(|i| q.options.get(i).map(|o| o.label.clone()))
        .collect();
    let text = render::question_text(q.header.as_deref(), &q.question, Some(&labels));
    let key = keys::question(pending.job_id.as_str(), request, index);
    shown(
        bot,
        c,
        key.clone(),
        Slot::new(key.clone(), text.clone()).hash(),
    )
    .await;
    record_question_answer(bot, &pending, index, labels, &c.user.name).await;
    if let Err(e) = c.create_response(&bot.http, update(text.clone())).await {
        log_failure("question update", e);
        unshown(bot, c, key.clone()).await;
        let mut slot = Slot::new(key, text);
        slot.notify = true;
        bot.outbound
            .send(c.channel_id.get(), ChannelOp::Upsert(slot))
            .await;
    }
}

/// Stores one question's answer; once every question has one, answers the request.
async fn record_question_answer(
    bot: &Bot,
    p: &PendingInteraction,
    index: usize,
    labels: Vec<String>,
    by: &str,
) {
    let InteractionKind::Question { questions } = &p.kind else {
        return;
    };
    let request = p.request_id.as_str();
    let mut progress: QuestionProgress = bot.store.question_progress(request).unwrap_or_default();
    progress.answers.resize(questions.len(), None);
    if let Some(slot) = progress.answers.get_mut(index) {
        *slot = Some(labels);
    }
    if let Err(e) = bot.store.put_question_progress(request, &progress) {
        tracing::warn!(error = %e, "Could not record a question answer.");
    }
    if progress.answers.iter().any(Option::is_none) {
        return;
    }
    let answers: Vec<Vec<String>> = progress.answers.into_iter().flatten().collect();
    if bot.store.answer(request).ok().flatten().is_some() {
        return;
    }
    let record = AnswerRecord {
        outcome: "answered".into(),
        by: Some(by.to_owned()),
        answers: Some(answers.clone()),
        at: clock::now_ms(),
    };
    let _ = bot.store.put_answer(request, &record).await;
    let control = Control::Answer {
        request_id: p.request_id.clone(),
        answers,
    };
    match bot.queue.answer(control).await {
        Ok(o) => tracing::info!(request, outcome = ?o, "Question answered."),
        Err(e) => tracing::warn!(request, error = %e, "Could not deliver a question answer."),
    }
}

/// A message typed after "Other" answers the question it was picked for; `false` when that
/// question is no longer waiting (the message is then an ordinary prompt).
pub async fn answer_other(
    bot: &Bot,
    thread: &ThreadRecord,
    other: OtherAnswer,
    by: &str,
    text: &str,
) -> bool {
    let _ = bot.store.set_other_answer(thread.thread_id, None);
    let rid = RequestId::new(other.request_id.clone());
    let Ok(Lookup::Pending(p)) = core_interactions::lookup(bot.queue.store(), &rid) else {
        return false;
    };
    let InteractionKind::Question { questions } = &p.kind else {
        return false;
    };
    let labels = vec![render::truncate_chars(text.trim(), 1000)];
    if let Some(q) = questions.get(other.index) {
        let key = keys::question(p.job_id.as_str(), p.request_id.as_str(), other.index);
        let mut slot = Slot::new(
            key,
            render::question_text(q.header.as_deref(), &q.question, Some(&labels)),
        );
        slot.notify = true;
        bot.outbound
            .send(thread.thread_id, ChannelOp::Upsert(slot))
            .await;
    }
    record_question_answer(bot, &p, other.index, labels, by).await;
    true
}

/// A new message replaces whatever the lane was waiting for: prompts are dismissed (rejected
/// for the agent) and their messages say so.
pub async fn dismiss_pending(bot: &Bot, lane: &str) {
    let Ok(pending) = bot.queue.pending_interactions() else {
        return;
    };
    let active = bot.queue.active_job(&LaneId::new(lane));
    for p in pending.into_iter().filter(|p| p.lane.as_str() == lane) {
        let request = p.request_id.to_string();
        if bot.store.answer(&request).ok().flatten().is_some() {
            continue;
        }
        let record = AnswerRecord {
            outcome: "dismissed".into(),
            by: None,
            answers: None,
            at: clock::now_ms(),
        };
        let _ = bot.store.put_answer(&request, &record).await;
        // Only a running job can take the answer; a finished one would be continued, which a
        // dismissal must not do.
        if active.as_ref() == Some(&p.job_id) {
            let control = match &p.kind {
                InteractionKind::Permission { .. } => Control::Permission {
                    request_id: p.request_id.clone(),
                    decision: PermissionDecision::Reject,
                },
                InteractionKind::Question { .. } => Control::DismissQuestion {
                    request_id: p.request_id.clone(),
                },
            };
            let _ = bot.queue.answer(control).await;
        }
        update_prompt_slots(bot, &p).await;
    }
}

/// Denies permission prompts nobody answered within the time-out.
pub async fn run_timeouts(bot: Arc<Bot>) {
    let timeout = bot.config.timings.permission_timeout;
    let sweep = (timeout / 4).clamp(MIN_SWEEP, MAX_SWEEP);
    loop {
        tokio::select! {
            _ = bot.cancel.cancelled() => return,
            _ = tokio::time::sleep(sweep) => {}
        }
        let Ok(pending) = bot.queue.pending_interactions() else {
            continue;
        };
        let now = clock::now_ms();
        let limit = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        for p in pending {
            let is_ours = p.lane.as_str().starts_with("discord:");
            let is_permission = matches!(p.kind, InteractionKind::Permission { .. });
            if !is_ours || !is_permission || now - p.created_at < limit {
                continue;
            }
            let request = p.request_id.to_string();
            if bot.store.answer(&request).ok().flatten().is_some() {
                continue;
            }
            let record = AnswerRecord {
                outcome: "timeout".into(),
                by: None,
                answers: None,
                at: now,
            };
            let _ = bot.store.put_answer(&request, &record).await;
            let control = Control::Permission {
                request_id: p.request_id.clone(),
                decision: PermissionDecision::Reject,
            };
            match bot.queue.answer(control).await {
                Ok(o) => {
                    tracing::info!(request = %request, outcome = ?o, "A permission prompt timed out and was denied.")
                }
                Err(e) => {
                    tracing::warn!(request = %request, error = %e, "Could not deny a timed-out permission.")
                }
            }
            update_prompt_slots(bot.as_ref(), &p).await;
        }
    }
}

// ----- slash commands -------------------------------------------------------------------------

/// Where a command was run.
pub(super) enum Place {
    Thread(ThreadRecord, ChannelRecord),
    Channel(ChannelRecord),
    Elsewhere,
}

fn place_of(bot: &Bot, channel: u64) -> Place {
    if let Ok(Some(p)) = bot.store.channel(channel) {
        return Place::Channel(p);
    }
    if let Ok(Some(t)) = bot.store.thread(channel) {
        if let Ok(Some(p)) = bot.store.channel(t.channel_id) {
            return Place::Thread(t, p);
        }
    }
    Place::Elsewhere
}

pub(super) fn opt_str<'a>(c: &'a CommandInteraction, name: &str) -> Option<&'a str> {
    c.data
        .options
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.value.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) fn opt_bool(c: &CommandInteraction, name: &str) -> Option<bool> {
    c.data
        .options
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.value.as_bool())
}

async fn on_command(bot: &Bot, c: &CommandInteraction) {
    let access = allowed(bot, c.guild_id, &c.user, member_roles(c.member.as_deref())).await;
    if access != Access::Allowed {
        if let Err(e) = c
            .create_response(&bot.http, ephemeral(refusal(bot, access)))
            .await
        {
            log_failure("refusal", e);
        }
        return;
    }
    let place = place_of(bot, c.channel_id.get());
    let reply = match c.data.name.as_str() {
        cmd::NEW_SESSION => return new_session(bot, c, place).await,
        cmd::RESUME => return resume(bot, c, place).await,
        cmd::ADD_PROJECT => return add_project(bot, c).await,
        cmd::CREATE_NEW_PROJECT => return create_new_project(bot, c).await,
        cmd::NEW_WORKTREE => return worktrees::new_worktree(bot, c, place).await,
        cmd::MERGE_WORKTREE => return worktrees::merge_worktree(bot, c, place).await,
        cmd::WORKTREES => worktrees::list_worktrees(bot, c, place).await,
        cmd::ABORT => abort(bot, place).await,
        cmd::QUEUE => queue_message(bot, c, place).await,
        cmd::CLEAR_QUEUE => clear_queue(bot, place).await,
        cmd::MODEL | cmd::AGENT => set_choice(bot, c, place).await,
        cmd::VERBOSITY => set_verbosity(bot, c, place).await,
        cmd::MENTION_MODE => set_mention_mode(bot, c, place).await,
        cmd::STATUS => status(bot, place),
        cmd::TASKS => return tasks(bot, c, place).await,
        cmd::CONTEXT_USAGE => match place {
            Place::Thread(t, _) => ephemeral(context_usage(bot, &t.lane)),
            _ => ephemeral(NOT_A_THREAD),
        },
        _ => ephemeral("This command is not available any more."),
    };
    if let Err(e) = c.create_response(&bot.http, reply).await {
        log_failure("command", e);
    }
}

const NOT_A_THREAD: &str = "Use this in a session thread.";
pub(super) const NOT_A_PROJECT: &str = "Use this in a project channel or one of its threads.";

async fn abort(bot: &Bot, place: Place) -> CreateInteractionResponse {
    let Place::Thread(t, _) = place else {
        return ephemeral(NOT_A_THREAD);
    };
    let lane = LaneId::new(t.lane.clone());
    let running = bot.queue.abort_lane(&lane);
    dismiss_pending(bot, &t.lane).await;
    let queued = bot
        .queue
        .queued_in_lane(&lane)
        .map(|q| q.len())
        .unwrap_or(0);
    let mut text = match running {
        Some(_) => "🛑 Stopped the current run.".to_owned(),
        None => "Nothing is running.".to_owned(),
    };
    if queued > 0 {
        text.push_str(&format!(" {queued} queued message(s) will run next."));
    }
    visible(text)
}

async fn queue_message(
    bot: &Bot,
    c: &CommandInteraction,
    place: Place,
) -> CreateInteractionResponse {
    let Place::Thread(t, p) = place else {
        return ephemeral(NOT_A_THREAD);
    };
    let Some(text) = opt_str(c, "message") else {
        return ephemeral("The message is empty.");
    };
    let m = InboundMessage {
        id: c.id.get(),
        channel_id: t.thread_id,
        guild_id: c.guild_id.map(|g| g.get()),
        author_id: c.user.id.get(),
        author_name: c.user.name.clone(),
        ..InboundMessage::default()
    };
    match inbound::enqueue(bot, &m, &t, &p, text, EnqueueMode::Queue, false).await {
        Some(position) => {
            let line = format!(
                "» **{}:** {}",
                c.user.name.replace('*', ""),
                render::truncate_chars(text, 1000)
            );
            if position == 0 {
                visible(line)
            } else {
                visible(format!("Queued at position {position}.\n{line}"))
            }
        }
        None => ephemeral("Could not queue the message; try again in a moment."),
    }
}

async fn clear_queue(bot: &Bot, place: Place) -> CreateInteractionResponse {
    let Place::Thread(t, _) = place else {
        return ephemeral(NOT_A_THREAD);
    };
    match bot.queue.clear_lane(&LaneId::new(t.lane)).await {
        Ok(n) => visible(format!("Removed {n} queued message(s).")),
        Err(e) => ephemeral(format!("Could not clear the queue: {e}")),
    }
}

async fn set_choice(bot: &Bot, c: &CommandInteraction, place: Place) -> CreateInteractionResponse {
    let is_model = c.data.name == cmd::MODEL;
    let what = if is_model { "Model" } else { "Agent" };
    let Some(value) = opt_str(c, if is_model { "model" } else { "agent" }) else {
        return ephemeral("Give a value, or `default`.");
    };
    let value = (!value.eq_ignore_ascii_case("default")).then(|| value.to_owned());
    let shown = value.clone().unwrap_or_else(|| "default".into());
    let scope = opt_str(c, "scope");
    match place {
        Place::Thread(mut t, _) if scope != Some("channel") => {
            if is_model {
                t.model = value;
            } else {
                t.agent = value;
            }
            let _ = bot.store.touch_thread(&t);
            visible(format!(
                "{what} for this session: `{shown}` (from the next message)."
            ))
        }
        Place::Thread(_, mut p) | Place::Channel(mut p) => {
            if is_model {
                p.model = value;
            } else {
                p.agent = value;
            }
            match bot.store.put_channel(&p).await {
                Ok(()) => visible(format!(
                    "{what} for <#{}>: `{shown}` (from the next message).",
                    p.channel_id
                )),
                Err(e) => ephemeral(format!("Could not save it: {e}")),
            }
        }
        Place::Elsewhere => ephemeral(NOT_A_PROJECT),
    }
}

async fn set_verbosity(
    bot: &Bot,
    c: &CommandInteraction,
    place: Place,
) -> CreateInteractionResponse {
    let (Place::Thread(_, mut p) | Place::Channel(mut p)) = place else {
        return ephemeral(NOT_A_PROJECT);
    };
    let Some(v) = opt_str(c, "level").and_then(Verbosity::parse) else {
        return ephemeral("Unknown level.");
    };
    p.verbosity = Some(v.as_str().to_owned());
    match bot.store.put_channel(&p).await {
        Ok(()) => visible(format!(
            "Verbosity for <#{}>: **{}**.",
            p.channel_id,
            v.as_str()
        )),
        Err(e) => ephemeral(format!("Could not save it: {e}")),
    }
}

async fn set_mention_mode(
    bot: &Bot,
    c: &CommandInteraction,
    place: Place,
) -> CreateInteractionResponse {
    let (Place::Thread(_, mut p) | Place::Channel(mut p)) = place else {
        return ephemeral(NOT_A_PROJECT);
    };
    let on = opt_bool(c, "enabled").unwrap_or(false);
    p.mention_mode = Some(on);
    match bot.store.put_channel(&p).await {
        Ok(()) if on => visible(format!(
            "Mention mode is on in <#{}>: only messages that mention me start a session.",
            p.channel_id
        )),
        Ok(()) => visible(format!("Mention mode is off in <#{}>.", p.channel_id)),
        Err(e) => ephemeral(format!("Could not save it: {e}")),
    }
}

/// Tasks whose sends run in this place's project (its directory or a worktree inside it), next
/// due first; finished one-shots last.
fn project_tasks(bot: &Bot, place: &Place) -> Vec<crate::core::tasks::Task> {
    let dir = match place {
        Place::Thread(_, p) | Place::Channel(p) => std::path::PathBuf::from(&p.directory),
        Place::Elsewhere => return Vec::new(),
    };
    let mut tasks: Vec<_> = bot
        .tasks
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.template.workspace.starts_with(&dir))
        .collect();
    tasks.sort_by_key(|t| t.next_due_ms.unwrap_or(i64::MAX));
    tasks
}

/// One task on one line, within an autocomplete choice's 100 characters.
fn task_line(t: &crate::core::tasks::Task) -> String {
    let when = match &t.schedule {
        crate::core::tasks::Schedule::At { .. } => "once".to_owned(),
        crate::core::tasks::Schedule::Cron { expr, .. } => format!("cron {expr}"),
    };
    let prompt = render::truncate_chars(
        &t.template
            .prompt
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        60,
    );
    render::truncate_chars(&format!("{when}: {prompt}"), 100)
}

/// `/tasks`: the project's scheduled sends; `/tasks delete:<id>` removes one.
async fn tasks(bot: &Bot, c: &CommandInteraction, place: Place) {
    let text = if matches!(place, Place::Elsewhere) {
        NOT_A_PROJECT.to_owned()
    } else if let Some(id) = opt_str(c, "delete") {
        let ours = project_tasks(bot, &place).into_iter().any(|t| t.id == id);
        if !ours {
            format!("No task `{}` in this project.", id.replace('`', "'"))
        } else {
            match bot.tasks.delete(id).await {
                Ok(t) => format!("🗑️ Deleted `{}` ({}).", t.id, task_line(&t)),
                Err(e) => format!("❌ Could not delete it: {e}"),
            }
        }
    } else {
        let tasks = project_tasks(bot, &place);
        if tasks.is_empty() {
            "No scheduled tasks in this project. Schedule one with `kimaki send --project … --prompt … --send-at …`.".to_owned()
        } else {
            let mut lines = vec![format!("**Scheduled tasks** ({}):", tasks.len())];
            for t in tasks.iter().take(MAX_LISTED_TASKS) {
                let next = match t.next_due_ms {
                    Some(ms) => format!("next <t:{}:R>", ms / 1000),
                    None => "done".to_owned(),
                };
                lines.push(format!("• `{}` · {next} · {}", t.id, task_line(t)));
            }
            if tasks.len() > MAX_LISTED_TASKS {
                lines.push(format!(
                    "…and {} more (`kimaki task list`).",
                    tasks.len() - MAX_LISTED_TASKS
                ));
            }
            render::truncate_chars(&lines.join("\n"), render::GENERATED_LIMIT)
        }
    };
    if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
        log_failure("tasks", e);
    }
}

/// The session's context use as its runner last reported it (the last run's final `Usage`).
fn context_usage(bot: &Bot, lane: &str) -> String {
    let last_job = bot
        .queue
        .lane(&LaneId::new(lane))
        .ok()
        .flatten()
        .and_then(|l| l.last_job);
    let usage = last_job
        .and_then(|job| bot.queue.bus().job_events(&job, 0).ok())
        .and_then(|events| {
            events.into_iter().rev().find_map(|e| match e.kind {
                crate::core::EventKind::Usage {
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_usd,
                    context_percent,
                    model,
                } => Some((
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_usd,
                    context_percent,
                    model,
                )),
                _ => None,
            })
        });
    let Some((input, output, cached, cost, percent, model)) = usage else {
        return "Context: no usage reported yet in this session.".to_owned();
    };
    let mut text = match percent {
        Some(p) => format!("Context: {p:.0}% of the window"),
        None => "Context: window size unknown".to_owned(),
    };
    text.push_str(&format!(
        " · {} input, {} output, {} cached tokens",
        thousands(input),
        thousands(output),
        thousands(cached)
    ));
    if let Some(cost) = cost {
        text.push_str(&format!(" · ${cost:.4}"));
    }
    if let Some(model) = model {
        text.push_str(&format!(" · `{model}`"));
    }
    text
}

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn status(bot: &Bot, place: Place) -> CreateInteractionResponse {
    match place {
        Place::Thread(t, p) => {
            let lane = LaneId::new(t.lane.clone());
            let running = bot.queue.active_job(&lane);
            let queued = bot
                .queue
                .queued_in_lane(&lane)
                .map(|q| q.len())
                .unwrap_or(0);
            let session = bot
                .queue
                .lane(&lane)
                .ok()
                .flatten()
                .and_then(|l| l.runner_session_id)
                .unwrap_or_else(|| "none yet".into());
            let model = t
                .model
                .or(p.model)
                .or_else(|| bot.config.default_model.clone());
            let agent = t
                .agent
                .or(p.agent)
                .or_else(|| bot.config.default_agent.clone());
            ephemeral(format!(
                "**Session** in `{}`\nRunner: `{}` · session `{}`\nModel: `{}` · agent: `{}`\nState: {} · {} queued\n{}\nFrom the command line: `kimaki send --session {} --prompt …`",
                p.directory,
                bot.config.runner,
                session,
                model.unwrap_or_else(|| "default".into()),
                agent.unwrap_or_else(|| "default".into()),
                if running.is_some() { "running" } else { "idle" },
                queued,
                context_usage(bot, &t.lane),
                t.lane
            ))
        }
        Place::Channel(p) => {
            let sessions = bot
                .store
                .threads()
                .map(|t| t.iter().filter(|t| t.channel_id == p.channel_id).count())
                .unwrap_or(0);
            let verbosity = p
                .verbosity
                .as_deref()
                .and_then(Verbosity::parse)
                .unwrap_or(bot.config.default_verbosity);
            ephemeral(format!(
                "📁 `{}` on {}\nRunner: `{}` · model: `{}` · agent: `{}`\nVerbosity: {} · mention mode: {} · {} session(s)",
                p.directory,
                bot.config.machine,
                bot.config.runner,
                p.model.or_else(|| bot.config.default_model.clone()).unwrap_or_else(|| "default".into()),
                p.agent.or_else(|| bot.config.default_agent.clone()).unwrap_or_else(|| "default".into()),
                verbosity.as_str(),
                if p.mention_mode.unwrap_or(bot.config.default_mention_mode) { "on" } else { "off" },
                sessions
            ))
        }
        Place::Elsewhere => ephemeral(NOT_A_PROJECT),
    }
}

/// Posts a bot message in `channel` (idempotent by `key`) and returns its id.
pub(super) async fn post_starter(bot: &Bot, channel: u64, key: &str, content: &str) -> Option<u64> {
    let body = json!({
        "content": render::truncate_chars(content, render::GENERATED_LIMIT),
        "allowed_mentions": {"parse": []},
        "nonce": nonce_for(key),
        "enforce_nonce": true,
        "flags": 4 | 4096,
    });
    let reply = bot
        .rest
        .call(
            Method::POST,
            &format!("/channels/{channel}/messages"),
            Some(&body),
        )
        .await
        .ok()?;
    let id = reply.body.as_ref()?.get("id")?;
    id.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| id.as_u64())
}

pub(super) async fn start_thread(
    bot: &Bot,
    channel: u64,
    starter: u64,
    name: &str,
    user: u64,
) -> bool {
    let path = format!("/channels/{channel}/messages/{starter}/threads");
    let body = json!({"name": render::truncate_chars(name, 100), "auto_archive_duration": 1440});
    let ok = match bot.rest.call(Method::POST, &path, Some(&body)).await {
        Ok(_) => true,
        Err(e) => e.code() == Some(super::rest::code::THREAD_ALREADY_EXISTS),
    };
    if ok {
        let _ = bot
            .rest
            .call(
                Method::PUT,
                &format!("/channels/{starter}/thread-members/{user}"),
                None,
            )
            .await;
    }
    ok
}

pub(super) async fn finish_deferred(bot: &Bot, c: &CommandInteraction, text: String) {
    if let Err(e) = c
        .edit_response(
            &bot.http,
            EditInteractionResponse::new()
                .content(render::truncate_chars(&text, render::GENERATED_LIMIT)),
        )
        .await
    {
        log_failure("deferred reply", e);
    }
}

async fn new_session(bot: &Bot, c: &CommandInteraction, place: Place) {
    let (project, from_thread) = match place {
        Place::Thread(t, p) => (p, Some(t.thread_id)),
        Place::Channel(p) => (p, None),
        Place::Elsewhere => {
            if let Err(e) = c.create_response(&bot.http, ephemeral(NOT_A_PROJECT)).await {
                log_failure("new-session", e);
            }
            return;
        }
    };
    let Some(prompt) = opt_str(c, "prompt").map(str::to_owned) else {
        return;
    };
    if let Err(e) = c.defer_ephemeral(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let key = format!("i/{}/starter", c.id);
    let starter_text = format!("» **{}:** {}", c.user.name.replace('*', ""), prompt);
    let Some(starter) = post_starter(bot, project.channel_id, &key, &starter_text).await else {
        finish_deferred(bot, c, "❌ Could not post in the channel.".into()).await;
        return;
    };
    let name = inbound::thread_name(&prompt);
    if !start_thread(bot, project.channel_id, starter, &name, c.user.id.get()).await {
        finish_deferred(bot, c, "❌ Could not start a thread.".into()).await;
        return;
    }
    let now = clock::now_ms();
    let thread = ThreadRecord {
        thread_id: starter,
        channel_id: project.channel_id,
        guild_id: project.guild_id,
        lane: format!("discord:{starter}"),
        title: name,
        created_at: now,
        last_activity_at: now,
        model: opt_str(c, "model").map(str::to_owned),
        agent: opt_str(c, "agent").map(str::to_owned),
    };
    let _ = bot.store.put_thread(&thread).await;
    // Started from a worktree thread, the new session works in the same worktree.
    let inherited = from_thread
        .and_then(|t| bot.store.thread_worktree(t).ok().flatten())
        .filter(|w| w.state == WorktreeState::Ready);
    if let Some(w) = inherited {
        let _ = bot.store.put_thread_worktree(starter, &w).await;
    }
    let m = InboundMessage {
        id: starter,
        channel_id: project.channel_id,
        guild_id: Some(project.guild_id),
        author_id: c.user.id.get(),
        author_name: c.user.name.clone(),
        ..InboundMessage::default()
    };
    let _ = bot.store.mark_seen(starter, now);
    let text = match inbound::enqueue(
        bot,
        &m,
        &thread,
        &project,
        &prompt,
        EnqueueMode::Queue,
        false,
    )
    .await
    {
        Some(_) => format!("Started <#{starter}>."),
        None => "❌ Could not start the session; try again in a moment.".into(),
    };
    finish_deferred(bot, c, text).await;
}

async fn resume(bot: &Bot, c: &CommandInteraction, place: Place) {
    let respond = |text: &'static str| async move {
        if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
            log_failure("resume", e);
        }
    };
    let (Place::Thread(_, project) | Place::Channel(project)) = place else {
        return respond(NOT_A_PROJECT).await;
    };
    let wanted = opt_str(c, "session").unwrap_or("");
    let threads = bot.store.threads().unwrap_or_default();
    let old = threads
        .iter()
        .find(|t| t.thread_id.to_string() == wanted)
        .or_else(|| {
            threads
                .iter()
                .find(|t| t.title.eq_ignore_ascii_case(wanted))
        })
        .filter(|t| t.guild_id == project.guild_id)
        .cloned();
    let Some(old) = old else {
        return respond("No such session; pick one from the list.").await;
    };
    if let Err(e) = c.defer_ephemeral(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let title = old.title.trim_start_matches("Resume: ").to_owned();
    let key = format!("i/{}/starter", c.id);
    let Some(starter) = post_starter(
        bot,
        old.channel_id,
        &key,
        &format!("↪️ **Resume:** {title}"),
    )
    .await
    else {
        finish_deferred(bot, c, "❌ Could not post in the channel.".into()).await;
        return;
    };
    let name = render::truncate_chars(&format!("Resume: {title}"), 100);
    if !start_thread(bot, old.channel_id, starter, &name, c.user.id.get()).await {
        finish_deferred(bot, c, "❌ Could not start a thread.".into()).await;
        return;
    }
    let now = clock::now_ms();
    let thread = ThreadRecord {
        thread_id: starter,
        channel_id: old.channel_id,
        guild_id: old.guild_id,
        lane: old.lane.clone(),
        title: name,
        created_at: now,
        last_activity_at: now,
        model: old.model.clone(),
        agent: old.agent.clone(),
    };
    let _ = bot.store.put_thread(&thread).await;
    replay(bot, c.id.get(), old.thread_id, starter).await;
    finish_deferred(
        bot,
        c,
        format!("Resumed in <#{starter}>: new messages there continue the same session."),
    )
    .await;
}

/// Copies the last rendered messages of `from` into `to`, in batches under the limit.
async fn replay(bot: &Bot, interaction: u64, from: u64, to: u64) {
    let me = bot.bot_id();
    let Ok(mut history) = serenity::all::ChannelId::new(from.max(1))
        .messages(
            &bot.http,
            serenity::all::GetMessages::new().limit(RESUME_REPLAY_MESSAGES),
        )
        .await
    else {
        return;
    };
    history.sort_by_key(|m| m.id);
    let parts: Vec<String> = history
        .into_iter()
        .filter(|m| {
            m.author.id.get() == me && m.components.is_empty() && !m.content.trim().is_empty()
        })
        .map(|m| m.content)
        .collect();
    let mut batch = String::new();
    let mut n = 0;
    for p in parts {
        if !batch.is_empty() && batch.chars().count() + p.chars().count() + 2 > render::TARGET_LIMIT
        {
            bot.notice(
                to,
                format!("i/{interaction}/replay/{n}"),
                std::mem::take(&mut batch),
                None,
            )
            .await;
            n += 1;
        }
        if !batch.is_empty() {
            batch.push_str("\n\n");
        }
        batch.push_str(&render::truncate_chars(&p, render::TARGET_LIMIT));
    }
    if !batch.is_empty() {
        bot.notice(to, format!("i/{interaction}/replay/{n}"), batch, None)
            .await;
    }
}

async fn add_project(bot: &Bot, c: &CommandInteraction) {
    let respond = |text: String| async move {
        if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
            log_failure("add-project", e);
        }
    };
    let Some(guild) = c.guild_id.map(|g| g.get()) else {
        return respond(NOT_A_PROJECT.into()).await;
    };
    let wanted = opt_str(c, "project").unwrap_or("");
    let ws = match bot.workspaces.find(wanted) {
        Ok(Some(ws)) => ws,
        _ => {
            // Discord may register only folders directly inside the projects directory; any
            // other path must be added on the machine (`kimaki project add`).
            let name = wanted.strip_prefix("dir:").unwrap_or(wanted);
            let valid = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
            let dir = bot.config.projects_dir.join(name);
            if !valid || !dir.is_dir() {
                return respond(format!(
                    "Unknown project `{}`. Pick one from the list, or register it on {} with `kimaki project add <dir>`.",
                    wanted.replace('`', "'"),
                    bot.config.machine
                ))
                .await;
            }
            match bot.workspaces.add(&dir, None).await {
                Ok(ws) => ws,
                Err(e) => return respond(format!("Could not add it: {e}")).await,
            }
        }
    };
    if let Err(e) = c.defer_ephemeral(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let text = match GuildId::new(guild.max(1)).channels(&bot.http).await {
        Ok(mut channels) => {
            match setup::ensure_project_channel(bot, guild, &ws, &mut channels).await {
                Ok(r) => format!("📁 <#{}> → `{}`", r.channel_id, r.directory),
                Err(e) => format!("❌ Could not create the channel: {e}"),
            }
        }
        Err(e) => format!(
            "❌ Could not read the channels: {}",
            super::DiscordError::from(e)
        ),
    };
    finish_deferred(bot, c, text).await;
}

/// `/create-new-project name`: a new folder in the projects directory, made a git repository (so
/// worktrees work at once), registered, and given its channel.
async fn create_new_project(bot: &Bot, c: &CommandInteraction) {
    let respond = |text: String| async move {
        if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
            log_failure("create-new-project", e);
        }
    };
    let Some(guild) = c.guild_id.map(|g| g.get()) else {
        return respond(NOT_A_PROJECT.into()).await;
    };
    let wanted = opt_str(c, "name").unwrap_or("");
    // The worktree name rules make a safe folder name too: no separators, no dots-only names.
    let name = match crate::core::worktrees::sanitize_name(wanted) {
        Ok(n) => n,
        Err(crate::core::WorktreeError::BadName { reason, .. }) => {
            return respond(format!(
                "❌ `{}` cannot be a project name: {reason}",
                wanted.replace('`', "'")
            ))
            .await
        }
        Err(e) => return respond(format!("❌ {e}")).await,
    };
    let dir = bot.config.projects_dir.join(&name);
    if dir.exists() {
        return respond(format!(
            "`{name}` already exists in the projects directory; use /add-project to give it a channel."
        ))
        .await;
    }
    if let Err(e) = c.defer_ephemeral(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let made = match std::fs::create_dir_all(&dir) {
        Ok(()) => bot.worktrees.init(&dir).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = made {
        // Leave nothing half-made behind: the name stays free for another try.
        let _ = std::fs::remove_dir_all(&dir);
        return finish_deferred(bot, c, format!("❌ Could not create `{name}`: {e}")).await;
    }
    let ws = match bot.workspaces.add(&dir, None).await {
        Ok(ws) => ws,
        Err(e) => return finish_deferred(bot, c, format!("❌ Could not add it: {e}")).await,
    };
    let text = match GuildId::new(guild.max(1)).channels(&bot.http).await {
        Ok(mut channels) => {
            match setup::ensure_project_channel(bot, guild, &ws, &mut channels).await {
                Ok(r) => format!(
                    "📁 <#{}> → `{}` (new git repository); send a message there to start.",
                    r.channel_id, r.directory
                ),
                Err(e) => format!("❌ Could not create the channel: {e}"),
            }
        }
        Err(e) => format!(
            "❌ Could not read the channels: {}",
            super::DiscordError::from(e)
        ),
    };
    finish_deferred(bot, c, text).await;
}

// ----- autocomplete ---------------------------------------------------------------------------

async fn on_autocomplete(bot: &Bot, c: &CommandInteraction) {
    let Some(focused) = c.data.autocomplete() else {
        return;
    };
    let partial = focused.value.trim().to_lowercase();
    let access = allowed(bot, c.guild_id, &c.user, member_roles(c.member.as_deref())).await;
    let mut choices: Vec<(String, String)> = Vec::new();
    if access == Access::Allowed {
        let place = place_of(bot, c.channel_id.get());
        choices = match (c.data.name.as_str(), focused.name) {
            (cmd::RESUME, _) => sessions(bot, &place),
            (cmd::MODEL, _) | (cmd::NEW_SESSION, "model") => models(bot),
            (cmd::AGENT, _) | (cmd::NEW_SESSION, "agent") => agents(bot),
            (cmd::ADD_PROJECT, _) => projects(bot, c.guild_id.map(|g| g.get()).unwrap_or(0)),
            (cmd::TASKS, _) => project_tasks(bot, &place)
                .into_iter()
                .map(|t| (task_line(&t), t.id))
                .collect(),
            (cmd::NEW_WORKTREE, "name") => worktrees::existing_names(bot, &place).await,
            _ => Vec::new(),
        };
        if !partial.is_empty()
            && matches!(
                c.data.name.as_str(),
                cmd::MODEL | cmd::AGENT | cmd::NEW_SESSION | cmd::NEW_WORKTREE
            )
        {
            choices.insert(
                0,
                (
                    focused.value.trim().to_owned(),
                    focused.value.trim().to_owned(),
                ),
            );
        }
    }
    let mut response = CreateAutocompleteResponse::new();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in choices
        .into_iter()
        .filter(|(n, v)| {
            partial.is_empty()
                || n.to_lowercase().contains(&partial)
                || v.to_lowercase().contains(&partial)
        })
        .filter(|(_, v)| seen.insert(v.clone()))
        .take(MAX_CHOICES)
    {
        response = response.add_string_choice(
            render::truncate_chars(&name, 100),
            render::truncate_chars(&value, 100),
        );
    }
    if let Err(e) = c
        .create_response(&bot.http, CreateInteractionResponse::Autocomplete(response))
        .await
    {
        log_failure("autocomplete", e);
    }
}

fn sessions(bot: &Bot, place: &Place) -> Vec<(String, String)> {
    let channel = match place {
        Place::Thread(_, p) | Place::Channel(p) => Some(p.channel_id),
        Place::Elsewhere => None,
    };
    let mut threads: Vec<ThreadRecord> = bot
        .store
        .threads()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| channel.is_none_or(|c| t.channel_id == c))
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.last_activity_at));
    threads
        .into_iter()
        .map(|t| (t.title.clone(), t.thread_id.to_string()))
        .collect()
}

fn models(bot: &Bot) -> Vec<(String, String)> {
    let mut out: Vec<String> = bot.config.default_model.iter().cloned().collect();
    for c in bot.store.channels().unwrap_or_default() {
        out.extend(c.model);
    }
    for t in bot.store.threads().unwrap_or_default() {
        out.extend(t.model);
    }
    out.push("default".into());
    out.into_iter().map(|m| (m.clone(), m)).collect()
}

fn agents(bot: &Bot) -> Vec<(String, String)> {
    let mut out: Vec<String> = bot.config.default_agent.iter().cloned().collect();
    out.extend(KNOWN_AGENTS.iter().map(|s| (*s).to_owned()));
    out.push("default".into());
    out.into_iter().map(|a| (a.clone(), a)).collect()
}

fn projects(bot: &Bot, guild: u64) -> Vec<(String, String)> {
    let mapped: Vec<String> = bot
        .store
        .channels()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.guild_id == guild)
        .map(|c| c.workspace_id)
        .collect();
    let workspaces = bot.workspaces.list().unwrap_or_default();
    let mut out: Vec<(String, String)> = workspaces
        .iter()
        .filter(|w| !mapped.contains(&w.id))
        .map(|w| (format!("{} ({})", w.name, w.path.display()), w.id.clone()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(&bot.config.projects_dir) {
        for e in entries.flatten().take(200) {
            let path = e.path();
            if !path.is_dir() || workspaces.iter().any(|w| w.path == path) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((format!("{name} (new)"), format!("dir:{name}")));
        }
    }
    out
}

//! The Retry button of a voice message whose transcription failed (quota, 4xx/5xx, time-out).
//! A failed voice job keeps its recording (`Job::voice`, saved in the data dir) in the store, so
//! a click — also after a restart — enqueues the same spoken prompt again in its lane, and the
//! dispatcher transcribes it once more in that job's turn.

use serde_json::{json, Value};
use serenity::all::ComponentInteraction;

use super::client::Bot;
use super::interactions::{ephemeral, log_failure};
use super::render;
use super::sink::Address;
use crate::core::events::FailureKind;
use crate::core::{EnqueueMode, JobId, JobState, NewJob, QueueError};

/// `voice-retry:<job id>` (job ids are short, far under Discord's 100 characters).
pub const CUSTOM_ID_PREFIX: &str = "voice-retry:";

/// Marks the ids of retries: `<first job>-retry-<n>`.
const RETRY_MARK: &str = "-retry-";

/// Shown with the failure, so the user knows nothing is lost.
const FAILURE_HINT: &str = "The recording is kept: press **Retry** to transcribe it again.";

/// A failure the same recording can get past later: not one about the audio itself (corrupt,
/// unsupported, too long), which a retry would only repeat.
pub fn offers_retry(kind: FailureKind) -> bool {
    match kind {
        FailureKind::Protocol => false,
        FailureKind::RunnerUnavailable
        | FailureKind::RunnerCrashed
        | FailureKind::Auth
        | FailureKind::ModelUnreachable
        | FailureKind::Api
        | FailureKind::Timeout
        | FailureKind::Workspace
        | FailureKind::Internal => true,
    }
}

/// What a failed transcription shows in the thread.
pub fn failure_text(message: &str) -> String {
    render::truncate_chars(
        &format!(
            "✗ Could not transcribe the voice message: {}\n{FAILURE_HINT}",
            message.trim()
        ),
        render::GENERATED_LIMIT,
    )
}

/// The action row with the Retry button for job `job`.
pub fn button(job: &str) -> Value {
    json!([{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "Retry", "custom_id": format!("{CUSTOM_ID_PREFIX}{job}")},
    ]}])
}

/// The id of the retry of `job`: derived, so a double click (or a click on an older message's
/// button) enqueues it once.
fn retry_id(job: &str) -> JobId {
    let (first, n) = match job.rsplit_once(RETRY_MARK) {
        Some((first, n)) => match n.parse::<u32>() {
            Ok(n) => (first, n),
            Err(_) => (job, 0),
        },
        None => (job, 0),
    };
    JobId::new(format!("{first}{RETRY_MARK}{}", n.saturating_add(1)))
}

async fn answer(bot: &Bot, c: &ComponentInteraction, text: String) {
    if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
        log_failure("voice retry", e);
    }
}

/// Enqueues the failed voice job `job` again in its lane.
pub async fn on_click(bot: &Bot, c: &ComponentInteraction, job: &str) {
    let record = match bot.queue.get(&JobId::new(job)) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return answer(
                bot,
                c,
                "This voice message is no longer kept; please record it again.".into(),
            )
            .await
        }
        Err(e) => return answer(bot, c, format!("Could not read the voice message: {e}")).await,
    };
    let in_this_thread = Address::of(&record)
        .and_then(|a| a.thread_id())
        .is_some_and(|t| t == c.channel_id.get());
    let Some(voice) = record.job.voice.clone().filter(|_| in_this_thread) else {
        return answer(bot, c, "There is no recording to transcribe here.".into()).await;
    };
    if record.state != JobState::Failed {
        return answer(
            bot,
            c,
            "This voice message is not waiting for a retry.".into(),
        )
        .await;
    }
    if !voice.audio.path.is_file() {
        return answer(
            bot,
            c,
            "The recording is gone from this machine; please record it again.".into(),
        )
        .await;
    }
    let job = &record.job;
    let new = NewJob {
        id: Some(retry_id(job.id.as_str())),
        lane: job.lane.clone(),
        source: job.source,
        workspace: job.workspace.clone(),
        runner: job.runner.clone(),
        prompt: job.prompt.clone(),
        attachments: job.attachments.clone(),
        model: job.model.clone(),
        agent: job.agent.clone(),
        permission_policy: job.permission_policy,
        timeout_ms: job.timeout_ms,
        reply_to: job.reply_to.clone(),
        meta: job.meta.clone(),
        held: false,
        voice: Some(voice),
        notify_only: false,
    };
    let text = match bot.queue.enqueue(new, EnqueueMode::Queue).await {
        Ok(e) if e.existing => "This voice message is already being retried.".to_owned(),
        Ok(e) => {
            tracing::info!(job_id = %e.record.job.id, retried = %job.id, "A voice message is transcribed again.");
            let who = c.user.name.replace('*', "");
            let text = format!("🔁 **{who}** asked to transcribe the voice message again.");
            if let Err(e) = c
                .create_response(&bot.http, super::interactions::visible(text))
                .await
            {
                log_failure("voice retry", e);
            }
            return;
        }
        Err(QueueError::ShuttingDown) => "kimaki is restarting; try again in a moment.".to_owned(),
        Err(e) => format!("Could not queue the voice message again: {e}"),
    };
    answer(bot, c, text).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_number_up_from_the_first_job() {
        assert_eq!(retry_id("discord-5").as_str(), "discord-5-retry-1");
        assert_eq!(retry_id("discord-5-retry-1").as_str(), "discord-5-retry-2");
        assert_eq!(retry_id("a-retry-x").as_str(), "a-retry-x-retry-1");
    }

    #[test]
    fn audio_problems_offer_no_retry() {
        assert!(!offers_retry(FailureKind::Protocol));
        assert!(offers_retry(FailureKind::Api));
        assert!(offers_retry(FailureKind::Timeout));
        assert!(button("j")[0]["components"][0]["custom_id"] == "voice-retry:j");
    }
}

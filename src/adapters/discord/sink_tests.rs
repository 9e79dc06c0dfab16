use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::adapters::discord::store::AnswerRecord;
use crate::core::events::{Failure, FailureKind, QuestionOption};
use crate::core::{JobSource, LaneId, PermissionPolicy, ReplyTo, RequestId, RunnerId};
use crate::store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    store: DiscordStore,
    view: JobView,
    seq: u64,
    step: u32,
}

fn record(mode: Option<&str>) -> JobRecord {
    let address = Address {
        guild: "1".into(),
        channel: "2".into(),
        thread: "3".into(),
        message: Some("3".into()),
        author: Some("alice".into()),
        mode: mode.map(str::to_owned),
    };
    JobRecord {
        job: crate::core::Job {
            id: JobId::new("job1"),
            lane: LaneId::new("discord:3"),
            source: JobSource::Discord,
            workspace: PathBuf::from("/tmp/my-app"),
            runner: RunnerId::new("echo"),
            prompt: "fix the build".into(),
            attachments: Vec::new(),
            model: Some("fake-model".into()),
            agent: None,
            permission_policy: PermissionPolicy::Ask,
            timeout_ms: None,
            reply_to: Some(ReplyTo {
                adapter: ADAPTER.into(),
                address: serde_json::to_value(address).unwrap(),
            }),
            meta: Default::default(),
            created_at: 0,
            voice: None,
            notify_only: false,
        },
        state: crate::core::JobState::Queued,
        order: 1,
        front: false,
        last_seq: 1,
        updated_at: 0,
        reason: None,
        held: false,
    }
}

impl Fixture {
    fn new(mode: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = DiscordStore::new(Store::open(&dir.path().join("s")).unwrap());
        let r = record(mode);
        let view = JobView::new(&r, Address::of(&r).unwrap());
        Self {
            _dir: dir,
            store,
            view,
            seq: 0,
            step: 0,
        }
    }

    fn push(&mut self, kind: EventKind) {
        self.seq += 1;
        let ev = JobEvent {
            job_id: JobId::new("job1"),
            lane: LaneId::new("discord:3"),
            seq: self.seq,
            at: self.seq as i64 * 1000,
            kind,
        };
        assert!(self.view.apply(&ev, &mut self.step));
    }

    fn slots(&mut self, verbosity: Verbosity) -> (Vec<Slot>, Vec<String>) {
        let ctx = RenderCtx {
            verbosity,
            store: &self.store,
            timeout_minutes: 10,
        };
        self.view.slots(&ctx)
    }

    fn contents(&mut self, verbosity: Verbosity) -> Vec<(String, String)> {
        self.slots(verbosity)
            .0
            .into_iter()
            .map(|s| (s.key, s.content))
            .collect()
    }
}

fn started() -> EventKind {
    EventKind::Started {
        runner: "echo".into(),
        runner_version: None,
        runner_session_id: Some("s1".into()),
        pid: None,
    }
}

fn delta(part: &str, text: &str) -> EventKind {
    EventKind::TextDelta {
        part_id: part.into(),
        stream: TextStream::Assistant,
        delta: text.into(),
    }
}

fn part(p: &str, text: &str) -> EventKind {
    EventKind::TextPart {
        part_id: p.into(),
        stream: TextStream::Assistant,
        text: text.into(),
    }
}

fn finished(outcome: Outcome, reason: Option<&str>, error: Option<Failure>) -> EventKind {
    EventKind::Finished {
        outcome,
        summary: None,
        error,
        reason: reason.map(str::to_owned),
        exit_code: None,
        duration_ms: Some(1500),
    }
}

#[test]
fn streaming_text_grows_one_message_then_a_footer_follows() {
    let mut f = Fixture::new(None);
    f.push(EventKind::Queued { position: 0 });
    f.push(started());
    f.push(delta("p1", "Hel"));
    let (slots, _) = f.slots(Verbosity::default());
    assert_eq!(slots.len(), 1);
    assert_eq!(
        (
            slots[0].key.as_str(),
            slots[0].content.as_str(),
            slots[0].streaming
        ),
        ("job1/t/p1/0", "⬥ Hel", true)
    );
    f.push(delta("p1", "lo"));
    f.push(part("p1", "Hello"));
    f.push(finished(Outcome::Succeeded, None, None));
    let slots = f.slots(Verbosity::default()).0;
    assert_eq!(slots[0].content, "⬥ Hello");
    assert!(!slots[0].streaming);
    assert_eq!(slots[1].key, "job1/f");
    assert_eq!(slots[1].content, "*my-app ⋅ 1.5s ⋅ fake-model*");
    assert!(slots[1].notify && !slots[0].notify);
}

#[test]
fn tool_lines_group_between_texts_and_follow_the_verbosity() {
    let mut f = Fixture::new(None);
    f.push(started());
    f.push(part("p1", "Looking."));
    for (id, name, input) in [
        ("c1", "read", json!({"filePath": "a.rs"})),
        (
            "c2",
            "edit",
            json!({"filePath": "a.rs", "oldString": "x", "newString": "y"}),
        ),
    ] {
        f.push(EventKind::ToolStarted {
            call_id: id.into(),
            name: name.into(),
            input,
        });
    }
    f.push(EventKind::ToolFinished {
        call_id: "c2".into(),
        name: "edit".into(),
        output: String::new(),
        is_error: true,
        exit_code: None,
    });
    f.push(part("p2", "Done."));
    assert_eq!(
        f.contents(Verbosity::ToolsAndText),
        vec![
            ("job1/t/p1/0".to_owned(), "⬥ Looking.".to_owned()),
            (
                "job1/g/c1".to_owned(),
                "┣ read *a.rs*\n⨯ edit error".to_owned()
            ),
            ("job1/t/p2/0".to_owned(), "⬥ Done.".to_owned()),
        ]
    );
    assert_eq!(
        f.contents(Verbosity::TextAndEssentialTools)[1],
        ("job1/g/c2".to_owned(), "⨯ edit error".to_owned())
    );
    assert_eq!(f.contents(Verbosity::TextOnly).len(), 2);
}

#[tokio::test]
async fn a_permission_shows_buttons_until_answered_then_the_outcome() {
    let mut f = Fixture::new(None);
    f.push(started());
    f.push(EventKind::PermissionRequested {
        request_id: RequestId::new("per_1"),
        tool: "bash".into(),
        title: Some("run `ls`".into()),
        input: json!({}),
        patterns: vec!["ls".into()],
    });
    let slots = f.slots(Verbosity::TextOnly).0;
    assert_eq!(slots[0].key, "job1/p/per_1");
    assert!(slots[0].notify);
    let buttons = slots[0].components.clone().unwrap();
    assert_eq!(
        buttons[0]["components"][1]["custom_id"],
        "perm:per_1:always"
    );
    assert!(f.view.awaiting_answer());
    f.store
        .put_answer(
            "per_1",
            &AnswerRecord {
                outcome: "once".into(),
                by: Some("alice".into()),
                answers: None,
                at: 0,
            },
        )
        .await
        .unwrap();
    f.push(EventKind::PermissionResolved {
        request_id: RequestId::new("per_1"),
        resolution: PermissionResolution::Once,
    });
    let slots = f.slots(Verbosity::TextOnly).0;
    assert!(slots[0].components.is_none());
    assert!(
        slots[0].content.ends_with("✅ **Accepted** by alice"),
        "{}",
        slots[0].content
    );
    assert!(!f.view.awaiting_answer());
}

#[test]
fn questions_offer_their_options_plus_other() {
    let mut f = Fixture::new(None);
    f.push(started());
    f.push(EventKind::QuestionAsked {
        request_id: RequestId::new("q1"),
        questions: vec![Question {
            question: "Which?".into(),
            header: Some("Pick".into()),
            options: vec![
                QuestionOption {
                    label: "A".into(),
                    description: None,
                },
                QuestionOption {
                    label: "B".into(),
                    description: Some("the other".into()),
                },
            ],
            multiple: false,
        }],
    });
    let slots = f.slots(Verbosity::default()).0;
    assert_eq!(slots[0].content, "❓ **Pick**\nWhich?");
    let select = &slots[0].components.as_ref().unwrap()[0]["components"][0];
    assert_eq!(select["custom_id"], "q:q1:0");
    let values: Vec<&str> = select["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["0", "1", custom_id::OTHER]);
    f.push(EventKind::QuestionResolved {
        request_id: RequestId::new("q1"),
        answers: Some(vec![vec!["B".into()]]),
    });
    let slots = f.slots(Verbosity::default()).0;
    assert_eq!(slots[0].content, "❓ **Pick**\nWhich?\n✅ B");
    assert!(slots[0].components.is_none());
}

#[test]
fn endings_render_errors_and_restarts_but_not_interrupts() {
    let mut failed = Fixture::new(None);
    failed.push(started());
    failed.push(finished(
        Outcome::Failed,
        Some("model error"),
        Some(Failure::new(FailureKind::Api, "quota exceeded")),
    ));
    assert_eq!(
        failed.contents(Verbosity::default()),
        vec![(
            "job1/e".to_owned(),
            "✗ echo session error: quota exceeded".to_owned()
        )]
    );

    let mut interrupted = Fixture::new(None);
    interrupted.push(started());
    interrupted.push(part("p1", "partial"));
    interrupted.push(finished(
        Outcome::Interrupted,
        Some("interrupted by a new message (discord-9)"),
        None,
    ));
    assert_eq!(interrupted.contents(Verbosity::default()).len(), 1);

    let mut restarted = Fixture::new(None);
    restarted.push(started());
    restarted.push(finished(
        Outcome::Interrupted,
        Some("kimaki shut down while it ran; it was not re-run"),
        None,
    ));
    assert_eq!(
        restarted.contents(Verbosity::default())[0].1,
        "⬦ Stopped: kimaki shut down while it ran; it was not re-run"
    );
}

#[test]
fn a_queued_message_is_acknowledged_and_announced_when_it_starts() {
    let mut f = Fixture::new(Some("queue"));
    f.push(EventKind::Queued { position: 2 });
    let slots = f.slots(Verbosity::default()).0;
    assert_eq!(
        slots[0].content,
        "Queued at position 2. Delete your message to remove it from the queue."
    );
    assert_eq!(slots[0].reply_to, Some(3));
    f.push(started());
    let slots = f.slots(Verbosity::default()).0;
    assert_eq!(slots[1].content, "» **alice:** fix the build");
}

#[test]
fn replayed_events_are_ignored_and_shrinking_text_deletes_surplus_chunks() {
    let mut f = Fixture::new(None);
    f.push(started());
    f.push(delta("p1", &"word ".repeat(900)));
    let (slots, _) = f.slots(Verbosity::default());
    assert_eq!(slots.len(), 3);
    let replay = JobEvent {
        job_id: JobId::new("job1"),
        lane: LaneId::new("discord:3"),
        seq: 1,
        at: 0,
        kind: started(),
    };
    assert!(!f.view.apply(&replay, &mut f.step), "already applied");
    f.push(part("p1", "short"));
    let (slots, deletes) = f.slots(Verbosity::default());
    assert_eq!(slots.len(), 1);
    assert_eq!(deletes.len(), 2);
    assert!(deletes.contains(&"job1/t/p1/2".to_owned()));
}

#[test]
fn context_notices_appear_once_per_ten_percent_step() {
    let mut f = Fixture::new(None);
    f.push(started());
    for p in [5.0, 12.0, 18.0, 31.0] {
        f.push(EventKind::Usage {
            input_tokens: 1,
            output_tokens: 1,
            cached_tokens: 0,
            cost_usd: None,
            context_percent: Some(p),
            model: None,
        });
    }
    let notices: Vec<String> = f
        .contents(Verbosity::default())
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(notices, ["⬦ context usage 10%", "⬦ context usage 30%"]);
}

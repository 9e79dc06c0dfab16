//! `kimaki upload-to-discord`: files reach a thread as attachments (byte for byte, ten per
//! message), with kimaki not running; a file over Discord's limit or a missing file is refused
//! with its name before anything is posted, and the token never shows.

use serenity::all::MessageId;

use crate::support::discord_twin::{DiscordTwin, TwinConfig};
use crate::support::kimaki_bin::Kimaki;

const LIMIT: u64 = 10 * 1024 * 1024;

fn setup(rt: &tokio::runtime::Runtime) -> (DiscordTwin, Kimaki, serenity::all::ChannelId) {
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let k = Kimaki::new()
        .with_env("KIMAKI_BOT_TOKEN", &twin.bot_token())
        .with_env("KIMAKI_DISCORD_API_URL", &twin.api_base());
    let channel = twin.create_text_channel("uploads", None);
    let alice = twin.user("alice");
    let thread = alice.in_channel(channel).create_thread("results");
    (twin, k, thread)
}

fn posted_messages(twin: &DiscordTwin) -> usize {
    twin.rest_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .count()
}

#[test]
fn files_within_the_limit_arrive_byte_for_byte() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (twin, k, thread) = setup(&rt);
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("report.txt");
    std::fs::write(&text, "all green\n").unwrap();
    let binary = dir.path().join("data.bin");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&binary, &bytes).unwrap();
    // Exactly at the limit is still allowed.
    let edge = dir.path().join("edge.bin");
    std::fs::File::create(&edge)
        .unwrap()
        .set_len(LIMIT)
        .unwrap();

    let out = k.run(&[
        "upload-to-discord",
        "--thread",
        &thread.to_string(),
        text.to_str().unwrap(),
        binary.to_str().unwrap(),
        edge.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let report = out.json();
    let messages = report["messages"].as_array().unwrap();
    // 10 MiB per message: the two small files together, the 10 MiB one alone.
    assert_eq!(messages.len(), 2, "{report}");
    assert_eq!(
        messages[0]["files"],
        serde_json::json!(["report.txt", "data.bin"])
    );
    let id: u64 = messages[0]["message_id"].as_str().unwrap().parse().unwrap();
    let msg = twin
        .message(MessageId::new(id))
        .expect("the message exists");
    assert_eq!(msg.channel_id, thread);
    let stored: Vec<(String, Vec<u8>)> = msg
        .attachments
        .iter()
        .map(|a| {
            let a = twin.attachment(*a).unwrap();
            (a.filename.clone(), a.bytes.to_vec())
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            ("report.txt".to_owned(), b"all green\n".to_vec()),
            ("data.bin".to_owned(), bytes),
        ]
    );
    let id: u64 = messages[1]["message_id"].as_str().unwrap().parse().unwrap();
    let edge_msg = twin.message(MessageId::new(id)).unwrap();
    let edge_att = twin.attachment(edge_msg.attachments[0]).unwrap();
    assert_eq!(edge_att.bytes.len() as u64, LIMIT);

    // Twelve files go out as ten and two.
    let many: Vec<String> = (0..12)
        .map(|i| {
            let p = dir.path().join(format!("f{i}.txt"));
            std::fs::write(&p, format!("file {i}")).unwrap();
            p.display().to_string()
        })
        .collect();
    let mut args = vec!["upload-to-discord", "--thread"];
    let thread_id = thread.to_string();
    args.push(&thread_id);
    args.extend(many.iter().map(String::as_str));
    args.push("--json");
    let out = k.run(&args);
    assert_eq!(out.code(), 0, "{}", out.all());
    let counts: Vec<usize> = out.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["files"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, vec![10, 2]);
    twin.assert_clean();
}

#[test]
fn a_file_over_the_limit_or_missing_is_refused_and_nothing_is_posted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (twin, k, thread) = setup(&rt);
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "fine").unwrap();
    let big = dir.path().join("huge-build.log");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(LIMIT + 1)
        .unwrap();
    let before = posted_messages(&twin);

    let out = k.run(&[
        "upload-to-discord",
        "--thread",
        &thread.to_string(),
        small.to_str().unwrap(),
        big.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("huge-build.log"), "{}", out.stderr);
    assert!(out.stderr.contains("10 MiB"), "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing was uploaded"),
        "{}",
        out.stderr
    );

    let missing = dir.path().join("not-there.png");
    let out = k.run(&[
        "upload-to-discord",
        "--thread",
        &thread.to_string(),
        small.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("not-there.png"), "{}", out.stderr);
    assert!(out.stderr.contains("no such file"), "{}", out.stderr);

    assert_eq!(posted_messages(&twin), before, "nothing was posted");
    assert!(twin
        .messages(thread)
        .iter()
        .all(|m| m.attachments.is_empty()));

    // A thread Discord refuses: a clear error without the token.
    let out = k.run(&[
        "upload-to-discord",
        "--thread",
        "4242",
        small.to_str().unwrap(),
    ]);
    assert_ne!(out.code(), 0, "{}", out.all());
    assert!(out.stderr.contains("small.txt"), "{}", out.stderr);
    assert!(!out.all().contains(&twin.bot_token()));
    let _ = twin.take_violations();

    // Without a token there is nothing to upload with.
    let bare = Kimaki::new();
    let out = bare.run(&[
        "upload-to-discord",
        "--thread",
        &thread.to_string(),
        small.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 78, "{}", out.all());
    assert!(out.stderr.contains("KIMAKI_BOT_TOKEN"), "{}", out.stderr);
}

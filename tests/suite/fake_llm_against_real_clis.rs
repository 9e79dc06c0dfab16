//! The fake LLM speaks each wire format the way the runner CLIs expect: first its protocol, checked
//! with a plain HTTP client, then one short run of each real CLI (Codex `exec`, Claude `-p`,
//! OpenCode `serve`) against it, asserting the reply text and the file the tool call wrote.

use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::fake_llm::{self, FakeLlm, Route, Scenario};
use crate::support::runner_bins;

/// Upper bound for anything a healthy local request does.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound for one whole CLI run; a cold start on a loaded 2-core CI box takes a few seconds.
const RUNNER_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stalled stream is watched to show that nothing more arrives.
const STALL_WINDOW: Duration = Duration::from_millis(300);
/// OpenCode accepts requests during boot and never answers them, so each probe is short.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed health probes.
const HEALTH_RETRY_PAUSE: Duration = Duration::from_millis(200);

const FINAL_TOOL_TEXT: &str = "FINAL: tool output was tool-ran-ok";

// ---------------------------------------------------------------------------------------------
// Protocol: request builders and an SSE reader.

fn chat_request(messages: Value, tools: &[&str], stream: bool) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|name| json!({ "type": "function", "function": { "name": name, "parameters": {} } }))
        .collect();
    json!({
        "model": "fake-model", "stream": stream, "stream_options": { "include_usage": true },
        "messages": messages, "tools": tools,
    })
}

fn responses_request(input: Value, tools: &[&str]) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|name| json!({ "type": "function", "name": name, "parameters": {} }))
        .collect();
    json!({ "model": "fake-model", "stream": true, "store": false, "input": input, "tools": tools })
}

fn messages_request(messages: Value, tools: &[&str], stream: bool) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|name| json!({ "name": name, "input_schema": { "type": "object" } }))
        .collect();
    json!({
        "model": "fake-model", "max_tokens": 1024, "stream": stream,
        "messages": messages, "tools": tools,
    })
}

fn user(text: &str) -> Value {
    json!({ "role": "user", "content": text })
}

/// An assistant chat message calling `bash`, and the tool message answering it.
fn chat_tool_round(call_id: &str, output: &str) -> [Value; 2] {
    [
        json!({ "role": "assistant", "content": null, "tool_calls": [{
            "id": call_id, "type": "function", "function": { "name": "bash", "arguments": "{}" },
        }] }),
        json!({ "role": "tool", "tool_call_id": call_id, "content": output }),
    ]
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("build HTTP client")
}

async fn post(llm: &FakeLlm, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", llm.base_url()))
        .json(body)
        .send()
        .await
        .expect("fake LLM answers")
}

async fn post_json(llm: &FakeLlm, path: &str, body: &Value) -> Value {
    post(llm, path, body).await.json().await.expect("JSON body")
}

/// Parses tool-call arguments sent as JSON text.
fn arguments(text: &Value) -> Value {
    serde_json::from_str(text.as_str().expect("arguments are text")).expect("arguments are JSON")
}

fn scenarios_and_steps(llm: &FakeLlm) -> Vec<(Option<Scenario>, usize)> {
    llm.requests()
        .into_iter()
        .map(|r| (r.scenario, r.step))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    event: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.data))
    }
}

/// Reads SSE events from a streaming response, one at a time.
struct SseReader {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event; `Ok(None)` at a clean end of stream, `Err` when the connection broke.
    async fn next(&mut self) -> reqwest::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                match parse_sse_block(&block) {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            match self.stream.next().await {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk?)),
                None => return Ok(None),
            }
        }
    }

    /// The next event, which must come within `REQUEST_DEADLINE`.
    async fn expect_next(&mut self) -> SseEvent {
        tokio::time::timeout(REQUEST_DEADLINE, self.next())
            .await
            .expect("event in time")
            .expect("stream intact")
            .expect("stream not ended")
    }

    /// Every event until the end of the stream, which must be clean.
    async fn collect(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        while let Some(event) = tokio::time::timeout_at(deadline, self.next())
            .await
            .expect("stream ends in time")
            .expect("stream ends cleanly")
        {
            events.push(event);
        }
        events
    }
}

fn parse_sse_block(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = Some(name.trim().to_string());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (!data.is_empty()).then(|| SseEvent {
        event,
        data: data.join("\n"),
    })
}

async fn post_sse(llm: &FakeLlm, path: &str, body: &Value) -> Vec<SseEvent> {
    let response = post(llm, path, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseReader::new(response).collect().await
}

/// The chat chunks (all but `[DONE]`), after checking that `[DONE]` closes the stream.
fn chat_chunks(events: &[SseEvent]) -> Vec<Value> {
    let (last, chunks) = events.split_last().expect("at least one event");
    assert_eq!(last.data, "[DONE]");
    assert!(events.iter().all(|e| e.event.is_none()), "data lines only");
    chunks.iter().map(SseEvent::json).collect()
}

/// The strings at `pointer` in each value, joined: streamed text or streamed arguments.
fn joined<'a>(values: impl IntoIterator<Item = &'a Value>, pointer: &str) -> String {
    values
        .into_iter()
        .filter_map(|value| value.pointer(pointer).and_then(Value::as_str))
        .collect()
}

fn event_data(events: &[SseEvent]) -> Vec<Value> {
    events.iter().map(SseEvent::json).collect()
}

fn event_names(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.event.as_deref().unwrap_or_default())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Protocol: Chat Completions.

#[tokio::test]
async fn chat_completions_text_streams_role_pieces_stop_usage_and_done() {
    let llm = FakeLlm::start().await;
    let body = chat_request(json!([user("say hi [[fake:text]]")]), &["bash"], true);

    let chunks = chat_chunks(&post_sse(&llm, "/v1/chat/completions", &body).await);

    let deltas: Vec<(&Value, &Value)> = chunks
        .iter()
        .map(|c| (&c["choices"][0]["delta"], &c["choices"][0]["finish_reason"]))
        .collect();
    assert_eq!(deltas.len(), 8, "role, 5 pieces, finish, usage");
    assert_eq!(
        deltas[0],
        (&json!({ "role": "assistant", "content": "" }), &Value::Null)
    );
    assert!(deltas[1..6]
        .iter()
        .all(|(d, f)| d["content"].is_string() && f.is_null()));
    assert_eq!(
        joined(&chunks, "/choices/0/delta/content"),
        fake_llm::TEXT_REPLY
    );
    assert_eq!(deltas[6], (&json!({}), &json!("stop")));
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({ "prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30 })
    );
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
}

#[tokio::test]
async fn chat_completions_tool_call_then_final_text_echoing_the_tool_result() {
    let llm = FakeLlm::start().await;
    let body = chat_request(json!([user("[[fake:tool]]")]), &["read", "bash"], true);

    let chunks = chat_chunks(&post_sse(&llm, "/v1/chat/completions", &body).await);

    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert_eq!(calls.len(), 4, "opening and three argument fragments");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "bash");
    let call_id = calls[0]["id"].as_str().expect("call id");
    let streamed = json!(joined(calls.iter().copied(), "/function/arguments"));
    assert_eq!(arguments(&streamed)["command"], fake_llm::TOOL_COMMAND);
    assert!(arguments(&streamed)["description"].is_string());
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    let [call, result] = chat_tool_round(call_id, "tool-ran-ok\n");
    let body = chat_request(
        json!([user("[[fake:tool]]"), call, result]),
        &["bash"],
        true,
    );
    let chunks = chat_chunks(&post_sse(&llm, "/v1/chat/completions", &body).await);

    assert_eq!(joined(&chunks, "/choices/0/delta/content"), FINAL_TOOL_TEXT);
    assert_eq!(
        scenarios_and_steps(&llm),
        vec![(Some(Scenario::Tool), 0), (Some(Scenario::Tool), 1)]
    );
}

#[tokio::test]
async fn scenario_comes_from_the_last_marked_user_text_and_step_counts_tool_results_after_it() {
    let llm = FakeLlm::start().await;
    let [call, result] = chat_tool_round("c1", "tool-ran-ok");
    // A later marker wins over an earlier one and resets the step.
    let newer_marker = json!([
        user("[[fake:tool]]"),
        call,
        result,
        user("now [[fake:text]]")
    ]);
    // A user text without a marker changes nothing; content part arrays are read too.
    let parts =
        json!({ "role": "user", "content": [{ "type": "text", "text": "go [[fake:tool]]" }] });
    let unmarked_follow_up = json!([user("[[fake:text]]"), parts, call, result, user("thanks")]);

    let newer = chat_request(newer_marker, &["bash"], false);
    let newer = post_json(&llm, "/v1/chat/completions", &newer).await;
    let unmarked = chat_request(unmarked_follow_up, &["bash"], false);
    let unmarked = post_json(&llm, "/v1/chat/completions", &unmarked).await;

    assert_eq!(
        newer["choices"][0]["message"]["content"],
        fake_llm::TEXT_REPLY
    );
    assert_eq!(
        unmarked["choices"][0]["message"]["content"],
        FINAL_TOOL_TEXT
    );
    assert_eq!(unmarked["object"], "chat.completion");
    assert_eq!(unmarked["usage"]["total_tokens"], 30);
    assert_eq!(
        scenarios_and_steps(&llm),
        vec![(Some(Scenario::Text), 0), (Some(Scenario::Tool), 1)]
    );
}

#[tokio::test]
async fn tool_name_and_arguments_follow_the_offered_tools() {
    let llm = FakeLlm::start().await;
    let command = fake_llm::TOOL_COMMAND;
    let content = fake_llm::WRITE_CONTENT;
    let printf = "printf '%s\\n' 'written by the fake LLM' > 'notes.md'";
    let cases: [(&str, &[&str], &str, Value); 7] = [
        (
            "tool",
            &["read", "bash"],
            "bash",
            json!({ "command": command }),
        ),
        (
            "tool",
            &["Read", "Bash"],
            "Bash",
            json!({ "command": command }),
        ),
        (
            "tool",
            &["write_stdin", "exec_command"],
            "exec_command",
            json!({ "cmd": command }),
        ),
        (
            "tool",
            &["shell"],
            "shell",
            json!({ "command": ["bash", "-lc", command] }),
        ),
        (
            "write:notes.md",
            &["bash", "write"],
            "write",
            json!({ "filePath": "notes.md", "content": content }),
        ),
        (
            "write:notes.md",
            &["Bash", "Write"],
            "Write",
            json!({ "file_path": "notes.md", "content": content }),
        ),
        (
            "write:notes.md",
            &["exec_command"],
            "exec_command",
            json!({ "cmd": printf }),
        ),
    ];
    for (marker, tools, expected_name, expected) in cases {
        let body = chat_request(json!([user(&format!("[[fake:{marker}]]"))]), tools, false);
        let reply = post_json(&llm, "/v1/chat/completions", &body).await;

        let call = &reply["choices"][0]["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], expected_name, "{marker} with {tools:?}");
        let sent = arguments(&call["arguments"]);
        for (key, value) in expected.as_object().expect("object") {
            assert_eq!(&sent[key], value, "{marker} with {tools:?}: {key}");
        }
        assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    }

    let body = chat_request(json!([user("[[fake:tool]]")]), &["read"], false);
    let reply = post_json(&llm, "/v1/chat/completions", &body).await;
    let text = reply["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert!(text.starts_with("FAKE: no shell tool offered"), "{text}");
}

#[tokio::test]
async fn question_scenario_asks_with_the_offered_question_tool_then_echoes_the_answer() {
    let llm = FakeLlm::start().await;
    let body = chat_request(
        json!([user("[[fake:question]]")]),
        &["bash", "question"],
        false,
    );

    let reply = post_json(&llm, "/v1/chat/completions", &body).await;

    let call = &reply["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "question");
    let question = &arguments(&call["arguments"])["questions"][0];
    assert_eq!(question["question"], fake_llm::QUESTION);
    assert_eq!(question["multiple"], false);
    let labels: Vec<&Value> = question["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| &o["label"])
        .collect();
    assert_eq!(labels, fake_llm::QUESTION_OPTIONS);

    let [call, result] = chat_tool_round("q1", "\"Pick one\"=\"Alpha\"");
    let answered = json!([user("[[fake:question]]"), call, result]);
    let body = chat_request(answered, &["bash", "question"], false);
    let reply = post_json(&llm, "/v1/chat/completions", &body).await;
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "FINAL: answer was \"Pick one\"=\"Alpha\""
    );
}

#[tokio::test]
async fn side_calls_without_a_marker_or_without_tools_get_the_fixed_text() {
    let llm = FakeLlm::start().await;
    let no_tools = chat_request(json!([user("title for: [[fake:tool]]")]), &[], true);
    let no_marker = chat_request(json!([user("hello")]), &["bash"], true);
    let unknown = chat_request(json!([user("[[fake:nope]]")]), &["bash"], true);

    let mut texts = Vec::new();
    for body in [no_tools, no_marker, unknown] {
        let chunks = chat_chunks(&post_sse(&llm, "/v1/chat/completions", &body).await);
        texts.push(joined(&chunks, "/choices/0/delta/content"));
    }

    let side = fake_llm::SIDE_CALL_REPLY;
    assert_eq!(texts, vec![side, side, "FAKE: unknown scenario `nope`"]);
    let scenarios: Vec<Option<Scenario>> = llm.requests().into_iter().map(|r| r.scenario).collect();
    let unknown = Scenario::Unknown("nope".into());
    assert_eq!(scenarios, vec![Some(Scenario::Tool), None, Some(unknown)]);
}

// ---------------------------------------------------------------------------------------------
// Protocol: Responses.

#[tokio::test]
async fn responses_text_events_are_numbered_and_end_with_completed_usage() {
    let llm = FakeLlm::start().await;
    let input = json!([
        { "type": "message", "role": "developer",
          "content": [{ "type": "input_text", "text": "rules" }] },
        { "type": "message", "role": "user",
          "content": [{ "type": "input_text", "text": "[[fake:text]]" }] },
    ]);

    let events = post_sse(
        &llm,
        "/v1/responses",
        &responses_request(input, &["exec_command"]),
    )
    .await;

    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(["response.output_text.delta"; 5]);
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(event_names(&events), expected);
    let data = event_data(&events);
    for (n, (name, data)) in event_names(&events).into_iter().zip(&data).enumerate() {
        assert_eq!(
            (data["type"].as_str(), &data["sequence_number"]),
            (Some(name), &json!(n))
        );
    }
    assert_eq!(joined(&data[4..9], "/delta"), fake_llm::TEXT_REPLY);
    let response = &data[12]["response"];
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["output"][0]["content"][0]["text"],
        fake_llm::TEXT_REPLY
    );
    assert_eq!(
        response["usage"],
        json!({
            "input_tokens": 20, "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": 10, "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": 30,
        })
    );
}

#[tokio::test]
async fn responses_tool_call_is_an_exec_command_function_call_and_output_is_echoed() {
    let llm = FakeLlm::start().await;
    let prompt = json!({ "type": "message", "role": "user",
        "content": [{ "type": "input_text", "text": "[[fake:tool]]" }] });
    let tools = ["exec_command", "write_stdin"];
    let body = responses_request(json!([prompt]), &tools);

    let events = post_sse(&llm, "/v1/responses", &body).await;

    assert_eq!(
        event_names(&events),
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let data = event_data(&events);
    let item = data[7]["item"].clone();
    assert_eq!(
        (&item["type"], &item["name"]),
        (&json!("function_call"), &json!("exec_command"))
    );
    assert_eq!(
        arguments(&item["arguments"]),
        json!({ "cmd": fake_llm::TOOL_COMMAND })
    );
    assert_eq!(json!(joined(&data[3..6], "/delta")), item["arguments"]);
    assert_eq!(data[8]["response"]["output"][0], item);

    let codex_output = "Chunk ID: 1a2b\nWall time: 0.0 seconds\nProcess exited with code 0\n\
                        Output:\ntool-ran-ok\n";
    let output = json!({
        "type": "function_call_output", "call_id": item["call_id"], "output": codex_output,
    });
    let body = responses_request(json!([prompt, item, output]), &tools);
    let data = event_data(&post_sse(&llm, "/v1/responses", &body).await);
    let completed = data.last().expect("completed");
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        FINAL_TOOL_TEXT
    );
    assert_eq!(llm.requests()[1].step, 1);
}

#[tokio::test]
async fn long_reply_is_over_5000_chars_with_a_fence_and_arrives_whole() {
    let llm = FakeLlm::start().await;
    let body = responses_request(json!("[[fake:long]]"), &["exec_command"]);

    let events = post_sse(&llm, "/v1/responses", &body).await;

    let deltas: Vec<Value> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
        .map(SseEvent::json)
        .collect();
    let text = joined(&deltas, "/delta");
    assert_eq!(text, fake_llm::long_reply());
    assert!(text.len() > 5_000, "{} chars", text.len());
    assert!(deltas.len() > 10, "{} chunks", deltas.len());
    let fence_open = text.find("```rust").expect("fenced block");
    let fence_close = text[fence_open + 3..].find("```").expect("closed fence") + fence_open + 3;
    assert!(
        fence_open < 2_000 && fence_close > 2_000,
        "the fence straddles 2,000 chars"
    );
    assert!(text.contains("\n\nParagraph 2."), "paragraphs");
}

// ---------------------------------------------------------------------------------------------
// Protocol: Anthropic Messages.

#[tokio::test]
async fn anthropic_text_and_tool_use_streams_with_the_query_string_stripped() {
    let llm = FakeLlm::start().await;
    let prompt = json!({ "role": "user", "content": [
        { "type": "text", "text": "<system-reminder>context</system-reminder>" },
        { "type": "text", "text": "[[fake:tool]]" },
    ] });
    let body = messages_request(json!([prompt]), &["Read", "Bash"], true);

    let events = post_sse(&llm, "/v1/messages?beta=true", &body).await;

    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 4]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(event_names(&events), expected);
    let data = event_data(&events);
    assert!(event_names(&events)
        .iter()
        .zip(&data)
        .all(|(name, d)| d["type"] == *name));
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 20);
    let block = &data[1]["content_block"];
    assert_eq!(
        (&block["type"], &block["name"], &block["input"]),
        (&json!("tool_use"), &json!("Bash"), &json!({}))
    );
    let input = arguments(&json!(joined(&data[3..7], "/delta/partial_json")));
    assert_eq!(input["command"], fake_llm::TOOL_COMMAND);
    assert_eq!(data[8]["delta"]["stop_reason"], "tool_use");
    assert_eq!(data[8]["usage"]["output_tokens"], 10);

    let answered = json!([
        prompt,
        { "role": "assistant",
          "content": [{ "type": "tool_use", "id": block["id"], "name": "Bash", "input": input }] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": block["id"],
            "content": [{ "type": "text", "text": "tool-ran-ok" }] }] },
    ]);
    let body = messages_request(answered, &["Bash"], true);
    let data = event_data(&post_sse(&llm, "/v1/messages?beta=true", &body).await);

    assert_eq!(
        data[1]["content_block"],
        json!({ "type": "text", "text": "" })
    );
    assert_eq!(joined(&data, "/delta/text"), FINAL_TOOL_TEXT);
    assert_eq!(data[data.len() - 2]["delta"]["stop_reason"], "end_turn");
    let recorded = llm.requests();
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].query.as_deref(), Some("beta=true"));
    assert_eq!(recorded[0].route, Route::Messages);
    assert_eq!((recorded[0].step, recorded[1].step), (0, 1));
}

#[tokio::test]
async fn anthropic_non_streaming_count_tokens_and_models() {
    let llm = FakeLlm::start().await;
    let body = messages_request(json!([user("[[fake:text]]")]), &["Bash"], false);

    let message = post_json(&llm, "/v1/messages", &body).await;
    let count = post_json(&llm, "/v1/messages/count_tokens", &body).await;
    let models: Value = client()
        .get(format!("{}/v1/models", llm.base_url()))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON");

    assert_eq!(message["type"], "message");
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": fake_llm::TEXT_REPLY }])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["output_tokens"], 10);
    assert_eq!(count, json!({ "input_tokens": 20 }));
    assert_eq!(models["data"][0]["id"], fake_llm::MODEL);
    let routes: Vec<Route> = llm.requests().into_iter().map(|r| r.route).collect();
    assert_eq!(
        routes,
        vec![Route::Messages, Route::CountTokens, Route::Models]
    );
}

#[tokio::test]
async fn slow_sends_twenty_chunks_spaced_by_the_interval() {
    let llm = FakeLlm::start().await;
    let body = messages_request(json!([user("[[fake:slow:20]]")]), &["Bash"], true);
    let started = Instant::now();

    let data = event_data(&post_sse(&llm, "/v1/messages", &body).await);

    let chunks: Vec<&Value> = data
        .iter()
        .filter_map(|d| d.pointer("/delta/text"))
        .collect();
    assert_eq!(chunks.len(), fake_llm::SLOW_CHUNKS);
    assert_eq!(chunks[0], "slow-00 ");
    assert!(
        started.elapsed() >= Duration::from_millis(19 * 20),
        "{:?}",
        started.elapsed()
    );
    let interval = Duration::from_millis(20);
    assert_eq!(
        llm.requests()[0].scenario,
        Some(Scenario::Slow { interval })
    );

    let default_slow = messages_request(json!([user("[[fake:slow]]")]), &["Bash"], true);
    let response = post(&llm, "/v1/messages", &default_slow).await;
    assert_eq!(
        response.status(),
        200,
        "headers come before the first pause"
    );
    let interval = fake_llm::DEFAULT_SLOW_INTERVAL;
    assert_eq!(
        llm.requests()[1].scenario,
        Some(Scenario::Slow { interval })
    );
}

// ---------------------------------------------------------------------------------------------
// Protocol: failures.

#[tokio::test]
async fn error_scenarios_answer_with_the_status_and_each_provider_error_body() {
    let llm = FakeLlm::start().await;
    let cases = [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "invalid_request_error", "authentication_error"),
        (429, "requests", "rate_limit_error"),
        (500, "server_error", "api_error"),
    ];
    for (status, openai_type, anthropic_type) in cases {
        let prompt = format!("[[fake:error:{status}]]");
        let chat = chat_request(json!([user(&prompt)]), &["bash"], true);
        let responses = responses_request(json!(prompt), &["exec_command"]);
        let messages = messages_request(json!([user(&prompt)]), &["Bash"], true);
        for (path, body) in [("/v1/chat/completions", chat), ("/v1/responses", responses)] {
            let response = post(&llm, path, &body).await;
            assert_eq!(response.status(), status, "{path}");
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(body["error"]["type"], openai_type, "{path} {status}");
            let message = body["error"]["message"].as_str().expect("message");
            assert!(message.contains(&status.to_string()), "{message}");
        }
        let response = post(&llm, "/v1/messages", &messages).await;
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(
            (&body["type"], &body["error"]["type"]),
            (&json!("error"), &json!(anthropic_type))
        );
    }
}

#[tokio::test]
async fn hang_accepts_the_request_and_never_sends_headers() {
    let llm = FakeLlm::start().await;
    let impatient = reqwest::Client::builder()
        .timeout(STALL_WINDOW)
        .build()
        .expect("client");
    let body = chat_request(json!([user("[[fake:hang]]")]), &["bash"], true);

    let error = impatient
        .post(format!("{}/v1/chat/completions", llm.base_url()))
        .json(&body)
        .send()
        .await
        .expect_err("no response ever comes");

    assert!(error.is_timeout(), "{error}");
    let recorded = llm.wait_for_requests(1, REQUEST_DEADLINE).await;
    assert_eq!(recorded[0].scenario, Some(Scenario::Hang));
}

#[tokio::test]
async fn hang_mid_sends_two_chunks_then_stalls_until_the_server_stops() {
    let llm = FakeLlm::start().await;
    let body = chat_request(json!([user("[[fake:hang_mid]]")]), &["bash"], true);
    let response = post(&llm, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);

    let mut chunks = Vec::new();
    for _ in 0..1 + fake_llm::PARTIAL_CHUNKS {
        chunks.push(reader.expect_next().await.json());
    }
    let stalled = tokio::time::timeout(STALL_WINDOW, reader.next()).await;
    llm.stop().await;
    let after_stop = tokio::time::timeout(REQUEST_DEADLINE, reader.next())
        .await
        .expect("stop ends the stream");

    assert_eq!(
        joined(&chunks, "/choices/0/delta/content"),
        "FAKE:",
        "two of five"
    );
    assert!(
        stalled.is_err(),
        "nothing after the two chunks: {stalled:?}"
    );
    assert!(
        after_stop.is_err(),
        "the stream is cut, not finished: {after_stop:?}"
    );
}

#[tokio::test]
async fn drop_closes_the_connection_mid_stream() {
    let llm = FakeLlm::start().await;
    let body = responses_request(json!("[[fake:drop]]"), &["exec_command"]);
    let mut reader = SseReader::new(post(&llm, "/v1/responses", &body).await);

    let mut names = Vec::new();
    let ending = loop {
        let next = tokio::time::timeout(REQUEST_DEADLINE, reader.next()).await;
        match next.expect("stream ends in time") {
            Ok(Some(event)) => names.push(event.event.unwrap_or_default()),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };

    assert!(ending.is_err(), "the body breaks off instead of ending");
    let deltas = names.iter().filter(|n| *n == "response.output_text.delta");
    assert_eq!(deltas.count(), fake_llm::PARTIAL_CHUNKS);
    assert!(
        !names.iter().any(|n| n == "response.completed"),
        "{names:?}"
    );
}

#[tokio::test]
async fn requests_are_recorded_and_unknown_routes_get_a_json_404() {
    let llm = FakeLlm::start().await;

    let response = client()
        .post(format!("{}/v2/nothing-here?x=1", llm.base_url()))
        .bearer_auth("sk-test")
        .json(&json!({ "hello": "world" }))
        .send()
        .await
        .expect("answered");

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON 404");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("/v2/nothing-here"), "{message}");
    let recorded = llm.wait_for_requests(1, REQUEST_DEADLINE).await;
    let request = &recorded[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v2/nothing-here")
    );
    assert_eq!(request.query.as_deref(), Some("x=1"));
    assert_eq!(request.route, Route::Unknown);
    assert_eq!(request.header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(request.body, json!({ "hello": "world" }));
    assert_eq!((request.scenario.clone(), request.step), (None, 0));
}

#[tokio::test]
async fn stop_closes_the_port() {
    let llm = FakeLlm::start().await;
    let url = format!("{}/v1/models", llm.base_url());
    assert_eq!(client().get(&url).send().await.expect("up").status(), 200);

    llm.stop().await;

    let error = client().get(&url).send().await.expect_err("down");
    assert!(error.is_connect(), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Real CLIs.

/// A temp git repository for a runner to work in, and a temp HOME for it.
struct Workspace {
    repo: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Workspace {
    async fn new() -> Self {
        let repo = tempfile::Builder::new()
            .prefix("kimaki-repo-")
            .tempdir()
            .expect("temp repo");
        let home = runner_bins::isolated_home();
        let status = Command::new("git")
            .args(["init", "-q"])
            .current_dir(repo.path())
            .env_clear()
            .env("PATH", runner_bins::runner_path_env())
            .env("HOME", home.path())
            .status()
            .await
            .expect("run git init");
        assert!(status.success(), "git init failed");
        Self { repo, home }
    }

    fn repo(&self) -> &Path {
        self.repo.path()
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// A runner command with only PATH and HOME set, run in the repo, stdin closed.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.repo())
            .env_clear()
            .env("PATH", runner_bins::runner_path_env())
            .env("HOME", self.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn proof(&self) -> Option<String> {
        std::fs::read_to_string(self.repo().join("proof.txt")).ok()
    }
}

/// Runs a one-shot runner to the end and returns its stdout as JSON lines.
async fn run_to_end(mut command: Command, what: &str) -> Vec<Value> {
    let started = Instant::now();
    let output = tokio::time::timeout(RUNNER_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {RUNNER_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    eprintln!("{what}: {:?}", started.elapsed());
    stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: bad JSONL {line}: {e}"))
        })
        .collect()
}

fn codex_exec(llm: &FakeLlm, workspace: &Workspace, prompt: &str) -> Command {
    let codex_home = workspace.home().join(".codex");
    // Codex refuses a CODEX_HOME that does not exist.
    std::fs::create_dir_all(&codex_home).expect("create CODEX_HOME");
    let mut command = workspace.command(&runner_bins::codex_bin());
    command
        .env("CODEX_HOME", &codex_home)
        .env("FAKE_API_KEY", "sk-fake")
        .args([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            "-m",
            "fake-model",
        ])
        .args([
            "-c",
            "model_provider=fake",
            "-c",
            "model_providers.fake.name=fake",
        ])
        .arg("-c")
        .arg(format!(
            "model_providers.fake.base_url=\"{}/v1\"",
            llm.base_url()
        ))
        .args(["-c", "model_providers.fake.env_key=FAKE_API_KEY"])
        .args(["-c", "model_providers.fake.wire_api=responses"])
        .args(["-c", "model_providers.fake.request_max_retries=0"])
        .args(["-c", "model_providers.fake.stream_max_retries=0"])
        .args(["-c", "analytics.enabled=false", "--disable", "plugins"])
        .args(["--disable", "unbounded_connection_retries"])
        .arg("--dangerously-bypass-approvals-and-sandbox")
        .arg(prompt);
    command
}

fn codex_agent_messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == "agent_message")
        .filter_map(|e| e["item"]["text"].as_str())
        .collect()
}

#[tokio::test]
async fn codex_exec_streams_the_fake_text() {
    let llm = FakeLlm::start().await;
    let workspace = Workspace::new().await;

    let events = run_to_end(
        codex_exec(&llm, &workspace, "say hi [[fake:text]]"),
        "codex exec text",
    )
    .await;

    assert_eq!(codex_agent_messages(&events), vec![fake_llm::TEXT_REPLY]);
    let completed = events
        .iter()
        .find(|e| e["type"] == "turn.completed")
        .expect("turn.completed");
    assert_eq!(completed["usage"]["output_tokens"], 10);
    let requests = llm.requests_to(Route::Responses);
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].tools.iter().any(|t| t == "exec_command"),
        "{:?}",
        requests[0].tools
    );
}

#[tokio::test]
async fn codex_exec_runs_the_fake_tool_call_and_reports_its_output() {
    let llm = FakeLlm::start().await;
    let workspace = Workspace::new().await;

    let events = run_to_end(
        codex_exec(&llm, &workspace, "[[fake:tool]]"),
        "codex exec tool",
    )
    .await;

    assert_eq!(workspace.proof().as_deref(), Some("hi\n"));
    let command = events
        .iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "command_execution")
        .expect("command_execution item");
    assert_eq!(command["item"]["exit_code"], 0);
    assert_eq!(codex_agent_messages(&events), vec![FINAL_TOOL_TEXT]);
    let steps: Vec<usize> = llm
        .requests_to(Route::Responses)
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, vec![0, 1]);
}

fn claude_print(llm: &FakeLlm, workspace: &Workspace, prompt: &str) -> Command {
    let mut command = workspace.command(&runner_bins::claude_bin());
    command
        .env("ANTHROPIC_BASE_URL", llm.base_url())
        .env("ANTHROPIC_API_KEY", "sk-fake")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        // bypassPermissions is refused as root unless the process is told it runs in a sandbox.
        .env("IS_SANDBOX", "1")
        .args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "fake-model",
        ])
        .args(["--permission-mode", "bypassPermissions"])
        .arg(prompt);
    command
}

fn claude_result(events: &[Value]) -> &Value {
    let result = events
        .iter()
        .find(|e| e["type"] == "result")
        .expect("result line");
    assert_eq!(result["is_error"], false, "{result}");
    result
}

#[tokio::test]
async fn claude_print_streams_the_fake_text() {
    let llm = FakeLlm::start().await;
    let workspace = Workspace::new().await;

    let events = run_to_end(
        claude_print(&llm, &workspace, "say hi [[fake:text]]"),
        "claude -p text",
    )
    .await;

    assert_eq!(claude_result(&events)["result"], fake_llm::TEXT_REPLY);
    let requests = llm.requests_to(Route::Messages);
    assert_eq!(requests.len(), 1, "one model call");
    assert!(
        requests[0].tools.iter().any(|t| t == "Bash"),
        "{:?}",
        requests[0].tools
    );
}

#[tokio::test]
async fn claude_print_runs_the_fake_tool_call_and_reports_its_output() {
    let llm = FakeLlm::start().await;
    let workspace = Workspace::new().await;

    let events = run_to_end(
        claude_print(&llm, &workspace, "[[fake:tool]]"),
        "claude -p tool",
    )
    .await;

    assert_eq!(workspace.proof().as_deref(), Some("hi\n"));
    let tool_use = events
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|block| block["type"] == "tool_use")
        .expect("tool_use");
    assert_eq!(tool_use["name"], "Bash");
    assert_eq!(claude_result(&events)["result"], FINAL_TOOL_TEXT);
    let steps: Vec<usize> = llm
        .requests_to(Route::Messages)
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, vec![0, 1]);
}

fn opencode_config(llm: &FakeLlm) -> String {
    json!({
        "autoupdate": false, "share": "disabled", "snapshot": false,
        "enabled_providers": ["fake"], "model": "fake/fake-model", "small_model": "fake/fake-model",
        "provider": { "fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake LLM",
            "options": { "baseURL": format!("{}/v1", llm.base_url()), "apiKey": "sk-fake" },
            "models": { "fake-model": {
                "name": "Fake Model", "tool_call": true,
                "limit": { "context": 100_000, "output": 4_096 },
            } },
        } },
    })
    .to_string()
}

/// A port nobody listens on right now (`opencode serve --port 0` means its default, 4096).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a probe port");
    listener.local_addr().expect("probe port").port()
}

/// Spawns `opencode serve` and returns it once it says it listens.
async fn spawn_opencode(llm: &FakeLlm, workspace: &Workspace, port: u16) -> tokio::process::Child {
    let home = workspace.home();
    let mut command = workspace.command(&runner_bins::opencode_bin());
    command
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("OPENCODE_CONFIG_CONTENT", opencode_config(llm))
        .stderr(Stdio::null());
    for flag in [
        "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_MODELS_FETCH",
        "OPENCODE_DISABLE_LSP_DOWNLOAD",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
        "OPENCODE_DISABLE_CLAUDE_CODE",
        "OPENCODE_DISABLE_SHARE",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS",
    ] {
        command.env(flag, "1");
    }
    command.args([
        "serve",
        "--hostname",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    let mut child = command.spawn().expect("spawn opencode serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = format!("listening on http://127.0.0.1:{port}");
    let waited = tokio::time::timeout(RUNNER_DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read opencode stdout") {
            if line.contains(&listening) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(waited, Ok(true), "opencode serve never said `{listening}`");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Probes `/global/health` with short timeouts until it answers healthy.
async fn wait_until_healthy(base: &str) {
    let probe = reqwest::Client::builder()
        .timeout(HEALTH_PROBE_TIMEOUT)
        .build()
        .expect("client");
    let deadline = Instant::now() + RUNNER_DEADLINE;
    loop {
        let health = probe.get(format!("{base}/global/health")).send().await;
        if let Ok(response) = health {
            let body: Value = response.json().await.unwrap_or_default();
            if body["healthy"] == true {
                return;
            }
        }
        assert!(Instant::now() < deadline, "opencode never became healthy");
        tokio::time::sleep(HEALTH_RETRY_PAUSE).await;
    }
}

#[tokio::test]
async fn opencode_serve_runs_the_fake_tool_call_and_streams_the_final_text() {
    let llm = FakeLlm::start().await;
    let workspace = Workspace::new().await;
    let started = Instant::now();
    let port = free_port();
    let _server = spawn_opencode(&llm, &workspace, port).await;
    let base = format!("http://127.0.0.1:{port}");
    wait_until_healthy(&base).await;
    let healthy_at = started.elapsed();
    let directory = workspace.repo().to_string_lossy().into_owned();

    // Events get their own client, so prompts never wait behind the open stream.
    let events = reqwest::Client::new()
        .get(format!("{base}/event"))
        .query(&[("directory", &directory)])
        .send()
        .await
        .expect("subscribe to events");
    let mut events = SseReader::new(events);
    let first = events.expect_next().await.json();
    assert_eq!(first["type"], "server.connected");
    let session: Value = client()
        .post(format!("{base}/session"))
        .query(&[("directory", &directory)])
        .json(&json!({}))
        .send()
        .await
        .expect("create session")
        .json()
        .await
        .expect("session JSON");
    let session_id = session["id"].as_str().expect("session id").to_string();
    let prompt = client()
        .post(format!("{base}/session/{session_id}/prompt_async"))
        .query(&[("directory", &directory)])
        .json(&json!({ "parts": [{ "type": "text", "text": "[[fake:tool]]" }] }))
        .send()
        .await
        .expect("prompt");
    assert_eq!(prompt.status(), 204);

    let mut final_text = None;
    let mut tool_states = Vec::new();
    let deadline = tokio::time::Instant::now() + RUNNER_DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("session.idle in time")
            .expect("event stream open")
            .expect("event stream not ended")
            .json();
        let properties = &event["properties"];
        match event["type"].as_str().unwrap_or_default() {
            "message.part.updated" if properties["part"]["type"] == "text" => {
                final_text = properties["part"]["text"].as_str().map(str::to_string);
            }
            "message.part.updated" if properties["part"]["type"] == "tool" => {
                tool_states.push(properties["part"]["state"]["status"].clone());
            }
            "session.error" => panic!("opencode reported an error: {event}"),
            "session.idle" if properties["sessionID"] == session_id.as_str() => break,
            _ => {}
        }
    }
    eprintln!(
        "opencode: healthy after {healthy_at:?}, idle after {:?}",
        started.elapsed()
    );

    assert_eq!(workspace.proof().as_deref(), Some("hi\n"));
    assert_eq!(tool_states.last(), Some(&json!("completed")));
    assert_eq!(final_text.as_deref(), Some(FINAL_TOOL_TEXT));
    let turns: Vec<usize> = llm
        .requests_to(Route::ChatCompletions)
        .iter()
        .filter(|r| r.tools.iter().any(|t| t == "bash"))
        .map(|r| r.step)
        .collect();
    assert_eq!(turns, vec![0, 1]);
}

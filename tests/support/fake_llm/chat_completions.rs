//! OpenAI Chat Completions, as OpenCode's `@ai-sdk/openai-compatible` provider uses it:
//! `data:`-only chunks, the role first, then content or tool-call fragments, the finish reason, a
//! usage chunk with `choices: []` when asked for, and `data: [DONE]`.

use serde_json::{json, Value};

use super::scenario::{Item, Output, ToolCall, Transcript};
use super::{
    content_texts, cut_short, data_frame, text_deltas, Frame, ReplyContext, CREATED, INPUT_TOKENS,
    OUTPUT_TOKENS,
};

pub(super) fn transcript(body: &Value) -> Transcript {
    let mut items = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        match message["role"].as_str() {
            Some("user") => items.extend(
                content_texts(&message["content"])
                    .into_iter()
                    .map(Item::UserText),
            ),
            Some("tool") => items.push(Item::ToolResult(
                content_texts(&message["content"]).join("\n"),
            )),
            _ => {}
        }
    }
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["function"]["name"].as_str().map(str::to_string))
        .collect();
    Transcript { items, tools }
}

pub(super) fn stream(ctx: &ReplyContext, output: &Output, include_usage: bool) -> Vec<Frame> {
    let chunk = |delta: Value, finish: Option<&str>| {
        data_frame(&json!({
            "id": id(ctx), "object": "chat.completion.chunk", "created": CREATED,
            "model": ctx.model, "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        }))
    };
    let mut frames = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
    let finish = match output {
        Output::Text(text) => {
            frames.extend(text_deltas(text, |piece| {
                chunk(json!({ "content": piece }), None)
            }));
            if let Some(cut) = cut_short(text.ending) {
                frames.push(cut);
                return frames;
            }
            "stop"
        }
        Output::ToolCall(call) => {
            let opening = json!({ "tool_calls": [{
                "index": 0, "id": call_id(ctx), "type": "function",
                "function": { "name": call.name, "arguments": "" },
            }] });
            frames.push(chunk(opening, None));
            for fragment in call.argument_fragments() {
                let delta = json!({ "tool_calls": [{
                    "index": 0, "function": { "arguments": fragment },
                }] });
                frames.push(chunk(delta, None));
            }
            "tool_calls"
        }
    };
    frames.push(chunk(json!({}), Some(finish)));
    if include_usage {
        frames.push(data_frame(&json!({
            "id": id(ctx), "object": "chat.completion.chunk", "created": CREATED,
            "model": ctx.model, "system_fingerprint": null, "choices": [], "usage": usage(),
        })));
    }
    frames.push(Frame::Bytes("data: [DONE]\n\n".into()));
    frames
}

/// The non-streamed `chat.completion` object.
pub(super) fn message(ctx: &ReplyContext, output: &Output) -> Value {
    let (message, finish) = match output {
        Output::ToolCall(call) => (
            json!({ "role": "assistant", "content": null, "tool_calls": [tool_call(ctx, call)] }),
            "tool_calls",
        ),
        Output::Text(text) => (
            json!({ "role": "assistant", "content": text.text() }),
            "stop",
        ),
    };
    json!({
        "id": id(ctx), "object": "chat.completion", "created": CREATED, "model": ctx.model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": usage(),
    })
}

fn tool_call(ctx: &ReplyContext, call: &ToolCall) -> Value {
    json!({
        "id": call_id(ctx), "type": "function",
        "function": { "name": call.name, "arguments": call.arguments },
    })
}

fn id(ctx: &ReplyContext) -> String {
    format!("chatcmpl-fake-{}", ctx.seq)
}

fn call_id(ctx: &ReplyContext) -> String {
    format!("call_fake_{}", ctx.seq)
}

fn usage() -> Value {
    json!({
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    })
}

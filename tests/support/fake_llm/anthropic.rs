//! Anthropic Messages, as Claude Code uses it: `message_start`, one content block (`text` or
//! `tool_use`) with `ping` after its start, its deltas and stop, `message_delta` with the stop
//! reason and usage, `message_stop`. Tool results arrive as `tool_result` blocks in user messages.

use serde_json::{json, Value};

use super::scenario::{Item, Output, Transcript};
use super::{
    content_texts, cut_short, event_frame, text_deltas, Frame, ReplyContext, INPUT_TOKENS,
    OUTPUT_TOKENS,
};

pub(super) fn transcript(body: &Value) -> Transcript {
    let mut items = Vec::new();
    let user_messages = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|message| message["role"] == "user");
    for message in user_messages {
        match &message["content"] {
            Value::String(text) => items.push(Item::UserText(text.clone())),
            Value::Array(blocks) => {
                for block in blocks {
                    match block["type"].as_str() {
                        Some("text") => {
                            let text = block["text"].as_str().unwrap_or_default();
                            items.push(Item::UserText(text.to_string()));
                        }
                        Some("tool_result") => items.push(Item::ToolResult(
                            content_texts(&block["content"]).join("\n"),
                        )),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["name"].as_str().map(str::to_string))
        .collect();
    Transcript { items, tools }
}

/// Anthropic's error body.
pub(super) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    json!({
        "type": "error",
        "error": { "type": kind, "message": message },
        "request_id": "req_fake",
    })
}

pub(super) fn stream(ctx: &ReplyContext, output: &Output) -> Vec<Frame> {
    let event = |kind: &str, mut data: Value| {
        data["type"] = kind.into();
        event_frame(kind, &data)
    };
    let mut opening = message_object(ctx, &[], Value::Null);
    opening["usage"]["output_tokens"] = 1.into();
    let mut frames = vec![event("message_start", json!({ "message": opening }))];
    let (block, stop_reason) = start_block(ctx, output);
    frames.push(event(
        "content_block_start",
        json!({ "index": 0, "content_block": block }),
    ));
    frames.push(event("ping", json!({})));
    match output {
        Output::Text(text) => {
            frames.extend(text_deltas(text, |delta| {
                event(
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "text_delta", "text": delta } }),
                )
            }));
            if let Some(cut) = cut_short(text.ending) {
                frames.push(cut);
                return frames;
            }
        }
        Output::ToolCall(call) => {
            let fragments = std::iter::once(String::new()).chain(call.argument_fragments());
            for fragment in fragments {
                frames.push(event(
                    "content_block_delta",
                    json!({
                        "index": 0,
                        "delta": { "type": "input_json_delta", "partial_json": fragment },
                    }),
                ));
            }
        }
    }
    frames.push(event("content_block_stop", json!({ "index": 0 })));
    frames.push(event(
        "message_delta",
        json!({
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": OUTPUT_TOKENS },
        }),
    ));
    frames.push(event("message_stop", json!({})));
    frames
}

/// The non-streamed message.
pub(super) fn message(ctx: &ReplyContext, output: &Output) -> Value {
    let (mut block, stop_reason) = start_block(ctx, output);
    match output {
        Output::Text(text) => block["text"] = text.text().into(),
        Output::ToolCall(call) => {
            block["input"] = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
        }
    }
    message_object(ctx, &[block], stop_reason.into())
}

/// The content block as `content_block_start` announces it, and the stop reason it leads to.
fn start_block(ctx: &ReplyContext, output: &Output) -> (Value, &'static str) {
    match output {
        Output::ToolCall(call) => (
            json!({
                "type": "tool_use", "id": format!("toolu_fake_{}", ctx.seq),
                "name": call.name, "input": {},
            }),
            "tool_use",
        ),
        Output::Text(_) => (json!({ "type": "text", "text": "" }), "end_turn"),
    }
}

fn message_object(ctx: &ReplyContext, content: &[Value], stop_reason: Value) -> Value {
    json!({
        "id": format!("msg_fake_{}", ctx.seq), "type": "message", "role": "assistant",
        "model": ctx.model, "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        },
    })
}

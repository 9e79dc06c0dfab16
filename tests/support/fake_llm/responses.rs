//! OpenAI Responses, the only wire API Codex speaks: `event: <type>` + `data:` pairs numbered by
//! `sequence_number`, one output item (a message or a `function_call`), then `response.completed`
//! carrying the output and the usage.

use serde_json::{json, Value};

use super::scenario::{Item, Output, Transcript};
use super::{
    content_texts, cut_short, event_frame, text_deltas, Frame, ReplyContext, CREATED, INPUT_TOKENS,
    OUTPUT_TOKENS,
};

/// Input item types that carry a tool's result back to the model.
const TOOL_OUTPUT_ITEMS: [&str; 3] = [
    "function_call_output",
    "custom_tool_call_output",
    "local_shell_call_output",
];

pub(super) fn transcript(body: &Value) -> Transcript {
    let mut items = Vec::new();
    match &body["input"] {
        Value::String(text) => items.push(Item::UserText(text.clone())),
        Value::Array(input) => {
            for item in input {
                let kind = item["type"].as_str().unwrap_or("message");
                if kind == "message" && item["role"] == "user" {
                    items.extend(
                        content_texts(&item["content"])
                            .into_iter()
                            .map(Item::UserText),
                    );
                } else if TOOL_OUTPUT_ITEMS.contains(&kind) {
                    let output = match &item["output"] {
                        Value::Object(output) => output
                            .get("content")
                            .map(content_texts)
                            .unwrap_or_default()
                            .join("\n"),
                        output => content_texts(output).join("\n"),
                    };
                    items.push(Item::ToolResult(output));
                }
            }
        }
        _ => {}
    }
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["name"].as_str().map(str::to_string))
        .collect();
    Transcript { items, tools }
}

/// Numbers events in order, as `sequence_number` requires.
struct Events {
    frames: Vec<Frame>,
    next: u64,
}

impl Events {
    fn frame(&mut self, kind: &str, mut data: Value) -> Frame {
        data["type"] = kind.into();
        data["sequence_number"] = self.next.into();
        self.next += 1;
        event_frame(kind, &data)
    }

    fn push(&mut self, kind: &str, data: Value) {
        let frame = self.frame(kind, data);
        self.frames.push(frame);
    }
}

pub(super) fn stream(ctx: &ReplyContext, output: &Output) -> Vec<Frame> {
    let mut events = Events {
        frames: Vec::new(),
        next: 0,
    };
    events.push(
        "response.created",
        json!({ "response": response_object(ctx, "in_progress", &[], None) }),
    );
    events.push(
        "response.in_progress",
        json!({ "response": response_object(ctx, "in_progress", &[], None) }),
    );
    let item = match output {
        Output::Text(text) => {
            let item_id = format!("msg_fake_{}", ctx.seq);
            let empty = json!({ "type": "output_text", "text": "", "annotations": [] });
            events.push(
                "response.output_item.added",
                json!({ "output_index": 0, "item": {
                    "id": item_id, "type": "message", "status": "in_progress",
                    "role": "assistant", "content": [],
                } }),
            );
            events.push(
                "response.content_part.added",
                json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "part": empty }),
            );
            let deltas = text_deltas(text, |delta| {
                events.frame(
                    "response.output_text.delta",
                    json!({
                        "item_id": item_id, "output_index": 0, "content_index": 0,
                        "delta": delta, "logprobs": [],
                    }),
                )
            });
            events.frames.extend(deltas);
            if let Some(cut) = cut_short(text.ending) {
                events.frames.push(cut);
                return events.frames;
            }
            let full = text.text();
            let part = json!({ "type": "output_text", "text": full, "annotations": [] });
            events.push(
                "response.output_text.done",
                json!({
                    "item_id": item_id, "output_index": 0, "content_index": 0,
                    "text": full, "logprobs": [],
                }),
            );
            events.push(
                "response.content_part.done",
                json!({ "item_id": item_id, "output_index": 0, "content_index": 0, "part": part }),
            );
            json!({
                "id": item_id, "type": "message", "status": "completed",
                "role": "assistant", "content": [part],
            })
        }
        Output::ToolCall(call) => {
            let item_id = format!("fc_fake_{}", ctx.seq);
            let call_id = format!("call_fake_{}", ctx.seq);
            events.push(
                "response.output_item.added",
                json!({ "output_index": 0, "item": {
                    "id": item_id, "type": "function_call", "status": "in_progress",
                    "call_id": call_id, "name": call.name, "arguments": "",
                } }),
            );
            for fragment in call.argument_fragments() {
                events.push(
                    "response.function_call_arguments.delta",
                    json!({ "item_id": item_id, "output_index": 0, "delta": fragment }),
                );
            }
            events.push(
                "response.function_call_arguments.done",
                json!({ "item_id": item_id, "output_index": 0, "arguments": call.arguments }),
            );
            json!({
                "id": item_id, "type": "function_call", "status": "completed",
                "call_id": call_id, "name": call.name, "arguments": call.arguments,
            })
        }
    };
    events.push(
        "response.output_item.done",
        json!({ "output_index": 0, "item": item }),
    );
    events.push(
        "response.completed",
        json!({ "response": response_object(ctx, "completed", &[item], Some(usage())) }),
    );
    events.frames
}

/// The non-streamed response object.
pub(super) fn response(ctx: &ReplyContext, output: &Output) -> Value {
    let item = match output {
        Output::ToolCall(call) => json!({
            "id": format!("fc_fake_{}", ctx.seq), "type": "function_call", "status": "completed",
            "call_id": format!("call_fake_{}", ctx.seq), "name": call.name,
            "arguments": call.arguments,
        }),
        Output::Text(text) => json!({
            "id": format!("msg_fake_{}", ctx.seq), "type": "message", "status": "completed",
            "role": "assistant",
            "content": [{ "type": "output_text", "text": text.text(), "annotations": [] }],
        }),
    };
    response_object(ctx, "completed", &[item], Some(usage()))
}

fn response_object(
    ctx: &ReplyContext,
    status: &str,
    output: &[Value],
    usage: Option<Value>,
) -> Value {
    json!({
        "id": format!("resp_fake_{}", ctx.seq), "object": "response", "created_at": CREATED,
        "status": status, "model": ctx.model, "output": output, "usage": usage,
        "error": null, "incomplete_details": null,
    })
}

fn usage() -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    })
}

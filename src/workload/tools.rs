//! The function tools a workload offers (`--tools N`) and their deterministic outputs,
//! so that a run with tools repeats byte for byte like any other.

use crate::client::{Api, ToolCall};

/// Names and descriptions of the tools, taken in order.
const TOOLS: &[(&str, &str)] = &[
    (
        "lookup_document_section",
        "Return the section of the document under discussion that matches a query.",
    ),
    (
        "search_knowledge_base",
        "Search the team's knowledge base for articles about a topic.",
    ),
    (
        "get_ticket_status",
        "Return the status of a support ticket by its id.",
    ),
    (
        "convert_units",
        "Convert a quantity from one unit to another.",
    ),
    (
        "list_recent_changes",
        "List the most recent changes to a file or a page.",
    ),
    (
        "estimate_reading_time",
        "Estimate how long a text takes to read.",
    ),
    (
        "translate_phrase",
        "Translate a short phrase into another language.",
    ),
    ("calculate", "Evaluate a simple arithmetic expression."),
];

/// The largest `--tools`.
pub const MAX_TOOLS: usize = 64;

/// Name of tool `i` (names repeat with a number beyond the list).
fn name(i: usize) -> String {
    let (n, _) = TOOLS[i % TOOLS.len()];
    if i < TOOLS.len() {
        n.to_string()
    } else {
        format!("{n}_{}", i / TOOLS.len())
    }
}

/// The tools of every request, as `api` takes them: `n` function tools, and with the
/// Responses API one MCP tool per server (run by the server, not by turnbench).
pub fn tool_definitions(
    api: Api,
    n: usize,
    mcp_servers: &[reqwest::Url],
) -> Vec<serde_json::Value> {
    let parameters = serde_json::json!({
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look up"}},
        "required": ["query"],
    });
    let mut out: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let (_, description) = TOOLS[i % TOOLS.len()];
            match api {
                Api::Chat => serde_json::json!({"type": "function", "function": {
                    "name": name(i), "description": description, "parameters": parameters}}),
                Api::Responses => serde_json::json!({"type": "function",
                    "name": name(i), "description": description, "parameters": parameters}),
            }
        })
        .collect();
    if api == Api::Responses {
        for (i, url) in mcp_servers.iter().enumerate() {
            out.push(
                serde_json::json!({"type": "mcp", "server_label": format!("mcp{i}"),
                "server_url": url.as_str(), "require_approval": "never"}),
            );
        }
    }
    out
}

/// The output turnbench returns for a tool call: a function of the call alone.
pub fn tool_output(call: &ToolCall) -> String {
    let digest = call
        .arguments
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    serde_json::json!({
        "tool": call.name,
        "result": format!("Found 3 matching entries (reference {digest:016x}). The first says the behaviour is expected and documented; the second lists two known limits; the third links the owning team."),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_deterministic_and_take_each_api_s_shape() {
        let chat = tool_definitions(Api::Chat, 10, &[]);
        assert_eq!(chat.len(), 10);
        assert_eq!(chat[0]["function"]["name"], "lookup_document_section");
        assert_eq!(chat[8]["function"]["name"], "lookup_document_section_1");
        let mcp: reqwest::Url = "http://mcp.local:8000/sse".parse().unwrap();
        let resp = tool_definitions(Api::Responses, 1, &[mcp]);
        assert_eq!(resp[0]["name"], "lookup_document_section");
        assert_eq!(resp[1]["type"], "mcp");
        assert!(tool_definitions(Api::Chat, 0, &[]).is_empty());
        let call = ToolCall {
            id: "c".into(),
            name: "calculate".into(),
            arguments: "{\"query\":\"1+1\"}".into(),
        };
        assert_eq!(tool_output(&call), tool_output(&call.clone()));
    }
}

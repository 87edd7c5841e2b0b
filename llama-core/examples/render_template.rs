//! Renders a Jinja chat template with llama-core's renderer, for comparison with Hugging Face
//! transformers (scripts/compare_templates.py). Reads one JSON object from stdin:
//! `{"template", "messages", "tools"?, "add_generation_prompt", "bos_token", "eos_token",
//! "extra"?}` with messages in OpenAI's shape, and prints the prompt, or `ERROR: ...`.
//!
//!     cargo run -p llama-core --no-default-features --example render_template < case.json

use llama_core::chat::jinja::{JinjaTemplate, RenderVars};
use serde_json::Value;

fn main() {
    let mut input = String::new();
    if std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).is_err() {
        println!("ERROR: cannot read stdin");
        return;
    }
    let case: Value = match serde_json::from_str(&input) {
        Ok(v) => v,
        Err(e) => {
            println!("ERROR: {e}");
            return;
        }
    };
    let text = |k: &str| {
        case.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let template =
        match JinjaTemplate::new(text("template"), &text("bos_token"), &text("eos_token")) {
            Ok(t) => t,
            Err(e) => {
                println!("ERROR: {e}");
                return;
            }
        };
    let vars = RenderVars {
        tools: case.get("tools").cloned().filter(|t| !t.is_null()),
        add_generation_prompt: case
            .get("add_generation_prompt")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        extra: case
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    match template.render_json(&case["messages"], &vars) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("ERROR: {e}"),
    }
}

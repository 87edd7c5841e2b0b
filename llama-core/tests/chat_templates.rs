//! Jinja chat templates rendered by llama-core against Hugging Face transformers' rendering
//! (Python's jinja2 with transformers' settings, scripts/compare_templates.py), over the
//! real templates of llama.cpp's `models/templates` (from the reference tree that
//! shared/tools/build-llama-cpp-reference.sh unpacks; `LLAMA_CPP_TEMPLATES` names another
//! directory). Prints "skipped" when Python's jinja2 or the templates are not there.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use llama_core::chat::jinja::{JinjaTemplate, RenderVars};
use serde_json::{json, Value};

fn templates_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("LLAMA_CPP_TEMPLATES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/llama-cpp-reference/llama.cpp/models/templates"),
    };
    dir.is_dir().then_some(dir)
}

fn python_has_jinja2() -> bool {
    Command::new("python3")
        .args(["-c", "import jinja2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn transformers(case: &Value) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/compare_templates.py"
    );
    let mut child = Command::new("python3")
        .args([script, "--transformers"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), case.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn real_templates_render_as_transformers_renders_them() {
    let (Some(dir), true) = (templates_dir(), python_has_jinja2()) else {
        println!("skipped: no llama.cpp templates directory or no Python jinja2");
        return;
    };
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let conversations = [
        (json!([{"role": "user", "content": "Say hi"}]), Value::Null),
        (
            json!([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"},
                   {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Weather?"}]),
            tools.clone(),
        ),
        (
            json!([{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": "", "tool_calls": [{"id": "call123456", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                   {"role": "tool", "tool_call_id": "call123456", "name": "get_weather", "content": "21 C"}]),
            tools,
        ),
    ];
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    paths.sort();
    let (mut same, mut compared, mut failures) = (0, 0, Vec::new());
    for path in &paths {
        let source = std::fs::read_to_string(path).unwrap();
        for (messages, tools) in &conversations {
            // The date variables llama.cpp's templating adds (and ours): fixed, and given to
            // transformers too.
            let extra = json!({"date_string": "26 Jul 2024", "datetime": "Jul 26 2024"});
            let case =
                json!({"template": source, "messages": messages, "tools": tools, "extra": extra});
            let expected = transformers(&case);
            if expected.starts_with("SKIP:") {
                continue;
            }
            compared += 1;
            let got = JinjaTemplate::new(source.as_str(), "<s>", "</s>").and_then(|t| {
                let vars = RenderVars {
                    tools: (!tools.is_null()).then(|| tools.clone()),
                    add_generation_prompt: true,
                    extra: extra.as_object().unwrap().clone(),
                };
                t.render_json(messages, &vars)
            });
            match got {
                Ok(text) if text == expected => same += 1,
                other => failures.push(format!("{}: {other:?}", path.display())),
            }
        }
    }
    println!("{same} of {compared} renders identical to transformers'");
    // Known difference: functionary v3.1 relies on jinja2's HTML escaping of `tojson()`.
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|f| !f.contains("functionary-medium-v3.1"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(compared >= 100, "only {compared} renders compared");
}

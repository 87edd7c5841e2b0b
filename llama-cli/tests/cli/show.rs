//! `show` reads the model with our GGUF reader.

use super::support::{llama_cli, model};

#[test]
fn show_reports_the_models_shape() {
    let output = llama_cli()
        .args(["show", "--json", "-m"])
        .arg(model())
        .output()
        .unwrap();
    assert!(output.status.success());
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["summary"]["architecture"], "llama");
    assert_eq!(v["summary"]["block_count"], 30);
    assert_eq!(v["summary"]["context_length"], 8192);
    assert_eq!(v["summary"]["has_chat_template"], true);
    assert_eq!(v["layers"].as_array().unwrap().len(), 30);
    let f16 = &v["kv_per_token"][0];
    assert_eq!(f16["cache_type"], "f16");
    // 30 layers x 3 KV heads x 64 dims x (K + V) x 2 bytes.
    assert_eq!(f16["bytes_per_token"], 30 * 3 * 64 * 2 * 2);
    let text = llama_cli()
        .args(["show", "--tensors", "-m"])
        .arg(model())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("token_embd.weight"), "{text}");
}

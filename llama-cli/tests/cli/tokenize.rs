//! `tokenize` (issue 17): ids and pieces from the model's tokenizer, special tokens, the BOS
//! switch, stdin, JSON, and bad input.

use super::support::{assert_clean_failure, llama_cli, model};

fn tokens(args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    let mut cmd = llama_cli();
    cmd.arg("tokenize")
        .arg("-m")
        .arg(model())
        .arg("--json")
        .args(args);
    if let Some(s) = stdin {
        cmd.write_stdin(s);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokenize_prints_ids_and_pieces() {
    let text = "The capital of France is Paris.";
    let v = tokens(&[text], None);
    let list = v["tokens"].as_array().unwrap();
    assert_eq!(v["count"].as_u64().unwrap() as usize, list.len());
    assert!(list.len() > 3 && list.len() < text.len());
    let joined: String = list.iter().map(|t| t["piece"].as_str().unwrap()).collect();
    assert_eq!(joined, text, "the pieces spell the text");
    // The same from stdin and as llama-tokenize's lines and id list.
    assert_eq!(tokens(&[], Some(text))["tokens"], v["tokens"]);
    let lines = llama_cli()
        .arg("tokenize")
        .arg("-m")
        .arg(model())
        .arg(text)
        .output()
        .unwrap();
    let lines = String::from_utf8(lines.stdout).unwrap();
    let first = &list[0];
    assert!(
        lines.lines().next().unwrap().ends_with(&format!(
            "{} -> '{}'",
            first["id"],
            first["piece"].as_str().unwrap()
        )),
        "{lines}"
    );
    let ids = llama_cli()
        .arg("tokenize")
        .arg("-m")
        .arg(model())
        .args(["--ids", text])
        .output()
        .unwrap();
    let ids: Vec<i64> = serde_json::from_slice(&ids.stdout).unwrap();
    let expected: Vec<i64> = list.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, expected);
    // Special-token text is one token, unless parsing it is turned off.
    let special = tokens(&["<|im_start|>user"], None);
    assert_eq!(special["tokens"][0]["piece"], "<|im_start|>");
    let plain = tokens(&["--no-parse-special", "<|im_start|>user"], None);
    assert!(plain["count"].as_u64() > special["count"].as_u64());
}

#[test]
fn tokenize_bad_input_is_a_clean_error() {
    let stderr = assert_clean_failure(
        &llama_cli()
            .args(["tokenize", "-m", "/no/model.gguf", "hi"])
            .output()
            .unwrap(),
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    let stderr = assert_clean_failure(&llama_cli().args(["tokenize", "hi"]).output().unwrap());
    assert!(stderr.contains("no model"), "{stderr}");
    let stderr = assert_clean_failure(
        &llama_cli()
            .arg("tokenize")
            .arg("-m")
            .arg(model())
            .args(["-f", "/no/such.txt"])
            .output()
            .unwrap(),
    );
    assert!(stderr.contains("cannot read"), "{stderr}");
}

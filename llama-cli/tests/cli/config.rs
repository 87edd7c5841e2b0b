//! Config files and precedence: flag > config file > default.

use std::io::Write;

use super::support::llama_cli;

fn print_config(args: &[&str]) -> toml::Table {
    let output = llama_cli()
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().parse().unwrap()
}

#[test]
fn flag_beats_config_beats_default() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "ctx-size = 1024\ntemp = 0.3\ntop-k = 7\nmax-mem = \"2G\"\nstop = [\"END\"]"
    )
    .unwrap();
    let path = f.path().to_str().unwrap();
    let t = print_config(&["prompt", "--config", path, "--temp", "0.9", "x"]);
    assert_eq!(t["ctx-size"].as_integer(), Some(1024), "from the file");
    assert!(
        (t["temp"].as_float().unwrap() - 0.9).abs() < 1e-6,
        "flag wins"
    );
    assert_eq!(t["top-k"].as_integer(), Some(7), "from the file");
    assert!(
        (t["top-p"].as_float().unwrap() - 0.95).abs() < 1e-6,
        "default"
    );
    assert_eq!(t["batch-size"].as_integer(), Some(2048), "default");
    assert_eq!(t["max-mem"].as_integer(), Some(2 << 30));
    assert_eq!(t["stop"].as_array().unwrap()[0].as_str(), Some("END"));
}

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            print_config(&["chat", "--config", path.to_str().unwrap()]);
            n += 1;
        }
    }
    assert!(n > 0, "no example configs");
}

#[test]
fn llama_cpp_short_flags() {
    let t = print_config(&[
        "chat", "-ub", "128", "-ngl", "0", "-c", "256", "-b", "256", "-t", "1",
    ]);
    assert_eq!(t["ubatch-size"].as_integer(), Some(128));
    assert_eq!(t["ctx-size"].as_integer(), Some(256));
    assert_eq!(t["threads"].as_integer(), Some(1));
}

#[test]
fn one_config_file_serves_prompt_chat_and_serve() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "ctx-size = 768\nport = 8099\nparallel = 2\nhost = \"127.0.0.1\""
    )
    .unwrap();
    let path = f.path().to_str().unwrap();
    for args in [
        ["prompt", "--config", path, "x"].as_slice(),
        &["chat", "--config", path],
    ] {
        let t = print_config(args);
        assert_eq!(t["ctx-size"].as_integer(), Some(768), "{args:?}");
    }
    let t = print_config(&["serve", "--config", path]);
    assert_eq!(t["ctx-size"].as_integer(), Some(768), "{t:?}");
    assert_eq!(t["port"].as_integer(), Some(8099), "{t:?}");
    assert_eq!(t["parallel"].as_integer(), Some(2), "{t:?}");
}

/// What --print-config prints, as text.
fn printed(args: &[&str]) -> String {
    let output = llama_cli()
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn print_config_output_is_a_config_file() {
    let cases: [&[&str]; 3] = [
        &[
            "prompt",
            "-c",
            "1234",
            "--temp",
            "0.2",
            "--stop",
            "END",
            "--max-mem",
            "1G",
            "x",
        ],
        &["chat", "-ctk", "q8_0", "--no-repack", "-s", "be brief"],
        &[
            "serve",
            "--port",
            "9123",
            "--parallel",
            "3",
            "--alias",
            "m",
            "-c",
            "512",
        ],
    ];
    for args in cases {
        let first = printed(args);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(first.as_bytes()).unwrap();
        let path = f.path().to_str().unwrap();
        // Only the subcommand (and the prompt text) again: everything else from the file.
        let mut again: Vec<&str> = vec![args[0], "--config", path];
        if args[0] == "prompt" {
            again.push("x");
        }
        assert_eq!(
            printed(&again),
            first,
            "{args:?} does not round-trip:\n{first}"
        );
    }
}

//! `completions` and `man` (issue 17): scripts for bash, zsh and fish and manual pages that
//! cover every command and its flags, built from the same clap definition as `--help`.

use super::support::llama_cli;

/// The subcommands `--help` lists.
fn subcommands() -> Vec<String> {
    let help = llama_cli().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_cover_every_command() {
    let commands = subcommands();
    assert!(commands.len() >= 17, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let out = llama_cli().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell}: {c} missing");
        }
        assert!(script.contains("max-mem") && script.contains("kl-divergence-base"));
        // The shell itself accepts the script, where it is installed.
        let check = match shell {
            "bash" => Some(("bash", vec!["-n"])),
            "zsh" => Some(("zsh", vec!["-n"])),
            _ => Some(("fish", vec!["--no-execute"])),
        };
        if let Some((program, args)) = check {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("script");
            std::fs::write(&path, &script).unwrap();
            match std::process::Command::new(program)
                .args(&args)
                .arg(&path)
                .output()
            {
                Ok(o) => assert!(
                    o.status.success(),
                    "{program}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(_) => {
                    eprintln!("skipped: {program} is not installed, its syntax check does not run")
                }
            }
        }
    }
    let bad = llama_cli()
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_command() {
    let out = llama_cli().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH llama-cli 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let out = llama_cli()
        .arg("man")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in subcommands() {
        let file = dir.path().join(format!("llama-cli-{c}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} missing", file.display()));
        assert!(
            text.contains(".SH OPTIONS") || text.contains(".SH SYNOPSIS"),
            "{c}"
        );
    }
    let quantize = std::fs::read_to_string(dir.path().join("llama-cli-quantize.1")).unwrap();
    assert!(quantize.contains("Q4_K_M") && quantize.contains("allow\\-requantize"));
    // man itself renders a page, where it is installed.
    match std::process::Command::new("man")
        .arg("-l")
        .arg(dir.path().join("llama-cli-perplexity.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("--kl-divergence-base"), "{text}");
        }
        _ => eprintln!("skipped: man is not installed, the page is not rendered"),
    }
}

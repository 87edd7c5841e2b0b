//! The machine's real limits (issue 12): a `--max-mem` above the physical memory is clamped
//! with a message, planning never asks llama.cpp for a context whose KV alone exceeds the
//! budget, and inside a memory cgroup with a limit a run without `--max-mem` plans for that
//! limit (with a real cgroup where the test may create one, and a stand-in `/proc` otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::{assert_clean_failure, llama_cli, model};

fn plan_json(args: &[&str]) -> (serde_json::Value, String) {
    let output = llama_cli()
        .args(["plan", "--json", "-m", model().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

#[test]
fn a_budget_above_the_machine_is_clamped_with_a_message() {
    let (v, _) = plan_json(&["--max-mem", "100T", "-c", "4096"]);
    let physical = v["machine"]["physical"].as_u64().unwrap();
    assert!(physical > 0, "{v}");
    let limit = v["machine"]["cgroup"]["bytes"].as_u64().unwrap_or(physical);
    assert_eq!(v["budget"].as_u64(), Some(limit), "{v}");
    let notes = v["notes"].to_string();
    assert!(notes.contains("is more than"), "{notes}");
    let text = llama_cli()
        .args(["plan", "-m", model().to_str().unwrap(), "--max-mem", "100T"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("machine: "),
        "plan shows the machine's figure: {text}"
    );
}

#[test]
fn planning_an_absurd_context_stays_small_and_inside_the_budget() {
    // A dry run at 100M cells would allocate gigabytes of llama.cpp's per-cell bookkeeping.
    let (v, _) = plan_json(&["--max-mem", "1G", "-c", "100000000"]);
    let peak = v["planner_peak_rss"].as_u64().unwrap();
    assert!(peak < 256 << 20, "the planner's own peak RSS: {peak}");
    let n_ctx = v["plan"]["candidate"]["n_ctx"].as_u64().unwrap();
    assert!((512..100_000_000).contains(&n_ctx), "{v}");
    assert!(v["total"].as_u64().unwrap() <= 1 << 30);
    assert!(
        v["notes"].to_string().contains("from 100000000"),
        "says what was asked: {v}"
    );
    // --strict refuses, and the context it suggests runs.
    let refused = llama_cli()
        .args(["prompt", "-m", model().to_str().unwrap(), "--max-mem", "1G"])
        .args(["-c", "100000000", "--strict", "-n", "2", "hi"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&refused);
    let suggested = stderr
        .split("fits with --ctx-size ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no suggestion: {stderr}"))
        .to_string();
    let output = llama_cli()
        .args(["prompt", "-m", model().to_str().unwrap(), "--max-mem", "1G"])
        .args(["-c", &suggested, "--strict", "-n", "2", "-t", "2", "hi"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stand-in `/proc` (meminfo, self/cgroup, self/mountinfo) and cgroup v2 file system with a
/// `memory.max` of `limit`.
fn fake_proc(dir: &Path, limit: u64) -> PathBuf {
    let proc_root = dir.join("proc");
    let cgroup = dir.join("cgroup");
    std::fs::create_dir_all(proc_root.join("self")).unwrap();
    std::fs::create_dir_all(cgroup.join("box")).unwrap();
    std::fs::write(proc_root.join("meminfo"), "MemTotal:       25165824 kB\n").unwrap();
    std::fs::write(proc_root.join("self/cgroup"), "0::/box\n").unwrap();
    std::fs::write(
        proc_root.join("self/mountinfo"),
        format!(
            "30 23 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n",
            cgroup.display()
        ),
    )
    .unwrap();
    std::fs::write(cgroup.join("box/memory.max"), format!("{limit}\n")).unwrap();
    proc_root
}

#[test]
fn without_max_mem_a_cgroup_limit_is_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 384u64 << 20;
    let proc_root = fake_proc(dir.path(), limit);
    let output = llama_cli()
        .env("LLAMA_RS_PROC_ROOT", &proc_root)
        .args([
            "plan",
            "--json",
            "-m",
            model().to_str().unwrap(),
            "-c",
            "32768",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let budget = v["budget"].as_u64().unwrap();
    assert!(budget < limit && budget >= limit - (64 << 20), "{v}");
    assert!(v["notes"].to_string().contains("no --max-mem"), "{v}");
    assert_eq!(v["machine"]["cgroup"]["bytes"].as_u64(), Some(limit));
}

/// The memory cgroup (v1) directory of this process, when this process may create children in
/// it (as root on a host with the v1 memory controller).
fn own_v1_memory_cgroup() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    dir.join("memory.limit_in_bytes").exists().then_some(dir)
}

#[test]
fn a_run_in_a_small_cgroup_without_max_mem_is_not_killed() {
    let Some(parent) = own_v1_memory_cgroup() else {
        eprintln!("skipped: no writable cgroup v1 memory controller here (the stand-in /proc test covers the planning)");
        return;
    };
    let group = parent.join(format!("llama-rs-test-{}", std::process::id()));
    if std::fs::create_dir(&group).is_err() {
        eprintln!(
            "skipped: cannot create a memory cgroup under {}",
            parent.display()
        );
        return;
    }
    let limit = 320u64 << 20;
    std::fs::write(group.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    // -c 32768 needs 720 MiB of KV cache alone: without a budget the kernel would kill it.
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(&group)
        .arg(assert_cmd::cargo::cargo_bin("llama-cli"))
        .args(["prompt", "-m", model().to_str().unwrap(), "-c", "32768"])
        .args(["-n", "8", "--temp", "0", "-t", "2", "--stats", "Hi"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let failcnt = std::fs::read_to_string(group.join("memory.failcnt")).unwrap_or_default();
    let _ = std::fs::remove_dir(&group);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(
        stderr.contains("no --max-mem: planning for the memory limit"),
        "{stderr}"
    );
    assert!(stderr.contains("reduced --ctx-size from 32768"), "{stderr}");
    assert!(!stderr.contains("budget exceeded"), "{stderr}");
    eprintln!("cgroup memory.failcnt after the run: {}", failcnt.trim());
}

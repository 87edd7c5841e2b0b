//! `pull`, `list`, `rm`, `show REPO` and `-hf` against the fake hub on loopback: the cache
//! layout, resume after a cut or an interrupted run, checksum refusal, the Hub's errors, the
//! token's reach, offline use, split files, free space, locks and plain URLs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use llama_core::gguf::GgmlType;

use super::fake_hub::{FakeFile, FakeRepo, Faults, TOKEN};
use super::store_support::{ok, texts, tiny_model, tiny_repo, Sandbox};
use super::support::assert_clean_failure;

fn q4_file() -> FakeFile {
    tiny_repo().files[1].clone()
}

#[test]
fn store_pull_fills_the_hub_cache_layout_and_verifies() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let file = q4_file();
    let out = sandbox
        .cli()
        .args(["pull", "test/tiny:q4_0"])
        .output()
        .unwrap();
    let (stdout, stderr) = ok(&out);
    let repo = tiny_repo();
    let entry = sandbox
        .repo_dir("test/tiny")
        .join("snapshots")
        .join(&repo.commit)
        .join("tiny-Q4_0.gguf");
    assert_eq!(stdout.trim(), entry.display().to_string());
    assert!(stderr.contains("sha256 verified"), "{stderr}");
    // A relative symlink to the blob named by its sha256, and refs/main naming the commit.
    assert_eq!(
        std::fs::read_link(&entry).unwrap(),
        PathBuf::from(format!("../../blobs/{}", file.sha256()))
    );
    assert_eq!(std::fs::read(&entry).unwrap(), *file.content);
    assert_eq!(
        std::fs::read_to_string(sandbox.repo_dir("test/tiny").join("refs/main")).unwrap(),
        repo.commit
    );
    assert!(sandbox
        .files_ending(&sandbox.cache(), ".incomplete")
        .is_empty());
    assert_eq!(
        sandbox.hub.served("test/tiny", "tiny-Q4_0.gguf"),
        file.content.len() as u64
    );
    // The tree listing was read page by page (two files a page).
    let seen = sandbox.hub.seen();
    assert!(seen.iter().any(|s| s.path.contains("cursor=1")), "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.method == "HEAD" && s.path.contains("/resolve/")),
        "{seen:?}"
    );
    // Pulled again: nothing is downloaded.
    sandbox.hub.reset_counts();
    let (_, stderr) = ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    assert!(stderr.contains("already in the cache"), "{stderr}");
    assert_eq!(sandbox.hub.served("test/tiny", "tiny-Q4_0.gguf"), 0);
}

#[test]
fn store_resume_after_a_dropped_connection_fetches_one_files_worth() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let size = q4_file().content.len() as u64;
    sandbox.hub.set_faults(
        "test/tiny",
        "tiny-Q4_0.gguf",
        Faults {
            cut_after: Some(size / 3),
            cuts: 2,
            ..Faults::default()
        },
    );
    let (_, stderr) = ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    assert!(stderr.contains("resuming"), "{stderr}");
    // Two responses cut after a third of the file each, then the rest. The client fetched the
    // file once; the server's count also holds what was lost in flight at each cut (its
    // buffers), still far from the 1.5 files a restart from zero would cost.
    assert!(
        stderr.contains(&format!("fetched {}", llama_core::ByteSize(size))),
        "{stderr}"
    );
    let served = sandbox.hub.served("test/tiny", "tiny-Q4_0.gguf");
    assert!(
        served >= size && served < size + size / 4,
        "served {served} bytes for a file of {size}"
    );
    let blob = sandbox.blob("test/tiny", &q4_file().sha256());
    assert_eq!(std::fs::read(blob).unwrap(), *q4_file().content);
}

#[test]
fn store_resume_after_an_interrupted_run() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let file = q4_file();
    let size = file.content.len() as u64;
    sandbox.hub.set_faults(
        "test/tiny",
        "tiny-Q4_0.gguf",
        Faults {
            stall_after: Some(size / 2),
            ..Faults::default()
        },
    );
    let mut child = sandbox
        .command()
        .args(["pull", "test/tiny:Q4_0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = sandbox
        .repo_dir("test/tiny")
        .join("blobs")
        .join(format!("{}.incomplete", file.sha256()));
    let started = Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < size / 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no partial file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), size / 2);
    let (_, stderr) = ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    assert!(stderr.contains("resuming at"), "{stderr}");
    let served = sandbox.hub.served("test/tiny", "tiny-Q4_0.gguf");
    assert!(
        served >= size && served <= size + size / 50,
        "served {served} bytes over both runs for a file of {size}"
    );
    assert!(!partial.exists());
    assert_eq!(
        std::fs::read(sandbox.blob("test/tiny", &file.sha256())).unwrap(),
        *file.content
    );
}

#[test]
fn store_checksum_mismatch_is_refused_and_the_partial_file_deleted() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    sandbox.hub.set_faults(
        "test/tiny",
        "tiny-Q4_0.gguf",
        Faults {
            corrupt: true,
            ..Faults::default()
        },
    );
    let out = sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    let expected = q4_file().sha256();
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains(&expected),
        "names the Hub's digest: {stderr}"
    );
    let actual = {
        let mut bytes = (*q4_file().content).clone();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        llama_core::store::digest::sha256_hex(&bytes)
    };
    assert!(
        stderr.contains(&actual),
        "names the download's digest: {stderr}"
    );
    let blobs = sandbox.repo_dir("test/tiny").join("blobs");
    assert!(
        sandbox.files_ending(&blobs, "").is_empty(),
        "nothing kept in {blobs:?}"
    );
    assert!(!sandbox.repo_dir("test/tiny").join("snapshots").exists());
}

#[test]
fn store_hub_errors_are_typed_and_name_the_fix() {
    let mut gated = FakeRepo::new("test/gated", vec![q4_file()]);
    gated.gated = true;
    let sandbox = Sandbox::new(vec![tiny_repo(), gated]);
    let fail = |args: &[&str]| {
        let out = sandbox.cli().args(args).output().unwrap();
        assert_clean_failure(&out)
    };
    let stderr = fail(&["pull", "test/missing"]);
    assert!(stderr.contains("test/missing not found"), "{stderr}");
    let stderr = fail(&["pull", "test/tiny:Q2_K"]);
    assert!(stderr.contains("available: Q4_0, Q8_0"), "{stderr}");
    let stderr = fail(&["pull", "test/tiny:nothere.gguf"]);
    assert!(stderr.contains("tiny-Q4_0.gguf"), "{stderr}");
    let stderr = fail(&["pull", "not-a-repo"]);
    assert!(stderr.contains("invalid model reference"), "{stderr}");
    let stderr = fail(&["pull", "test/gated:Q4_0"]);
    assert!(
        stderr.contains("refused (401)") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
    let out = sandbox
        .cli()
        .args(["pull", "test/tiny"])
        .env("HF_ENDPOINT", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:1"),
        "{stderr}"
    );
    let out = sandbox
        .cli()
        .args(["pull", "test/tiny"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
}

#[test]
fn store_token_reaches_only_the_hub_and_is_never_printed() {
    let mut gated = FakeRepo::new("test/gated", vec![q4_file()]);
    gated.gated = true;
    let sandbox = Sandbox::new(vec![gated]);
    let out = sandbox
        .cli()
        .args(["-vv", "pull", "test/gated:Q4_0"])
        .env("HF_TOKEN", TOKEN)
        .output()
        .unwrap();
    let (stdout, stderr) = ok(&out);
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "{stderr}"
    );
    let seen = sandbox.hub.seen();
    assert!(
        seen.iter().filter(|s| !s.cdn).all(|s| s.authorized),
        "{seen:?}"
    );
    let cdn: Vec<_> = seen.iter().filter(|s| s.cdn).collect();
    assert!(
        !cdn.is_empty() && cdn.iter().all(|s| !s.authorized),
        "{seen:?}"
    );
    // The token file huggingface-cli login writes works too.
    let sandbox = Sandbox::new(vec![{
        let mut r = FakeRepo::new("test/gated", vec![q4_file()]);
        r.gated = true;
        r
    }]);
    let home = sandbox
        .vars()
        .into_iter()
        .find(|(k, _)| *k == "HF_HOME")
        .unwrap()
        .1;
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(PathBuf::from(&home).join("token"), format!("{TOKEN}\n")).unwrap();
    ok(&sandbox
        .cli()
        .args(["pull", "test/gated:Q4_0"])
        .output()
        .unwrap());
}

#[test]
fn store_offline_hf_runs_from_the_cache() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = sandbox.cli();
        cmd.args([
            "prompt",
            "-hf",
            "test/tiny:Q4_0",
            "--temp",
            "0",
            "-n",
            "4",
            "-c",
            "256",
            "-t",
            "2",
            "--raw",
            "hello",
        ]);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // Not cached and offline: a clear error, nothing asked of the Hub.
    let out = run(&[("HF_HUB_OFFLINE", "1")]);
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("not in the cache"), "{stderr}");
    assert!(sandbox.hub.seen().is_empty());
    // Online, -hf pulls it, then runs it.
    let (_, stderr) = ok(&run(&[]));
    assert!(stderr.contains("downloaded tiny-Q4_0.gguf"), "{stderr}");
    // Offline (and with the Hub unreachable), it runs from the cache.
    sandbox.hub.reset_counts();
    ok(&run(&[
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "http://127.0.0.1:1"),
    ]));
    // Cached and online: still no request at all.
    ok(&run(&[]));
    assert!(sandbox.hub.seen().is_empty(), "{:?}", sandbox.hub.seen());
    // `show REPO:QUANT` reads the stored model.
    let out = sandbox
        .cli()
        .args(["show", "test/tiny:Q4_0", "--json"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["summary"]["architecture"], "llama");
    let out = sandbox
        .cli()
        .args(["show", "test/tiny:Q8_0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("not in the cache"), "{stderr}");
}

#[test]
fn store_list_and_rm_collect_unreferenced_blobs() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    ok(&sandbox
        .cli()
        .args(["pull", "test/tiny:Q8_0"])
        .output()
        .unwrap());
    let (stdout, _) = ok(&sandbox.cli().args(["list", "--json"]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test/tiny:Q4_0", "test/tiny:Q8_0"]);
    let q4 = &v["models"][0];
    assert_eq!(q4["size"], q4_file().content.len());
    assert_eq!(q4["quant"], "Q4_0");
    assert!(q4["last_used"].as_u64().is_some());
    let (table, _) = ok(&sandbox.cli().arg("list").output().unwrap());
    assert!(
        table.starts_with("NAME") && table.contains("LAST USED"),
        "{table}"
    );
    assert!(table.contains("test/tiny:Q8_0"), "{table}");

    let (stdout, _) = ok(&sandbox
        .cli()
        .args(["rm", "test/tiny:Q4_0"])
        .output()
        .unwrap());
    assert!(stdout.contains("1 blob(s)"), "{stdout}");
    assert!(!sandbox.blob("test/tiny", &q4_file().sha256()).exists());
    assert!(sandbox
        .blob("test/tiny", &tiny_repo().files[2].sha256())
        .exists());
    let out = sandbox
        .cli()
        .args(["rm", "test/tiny:Q4_0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("not in the cache"), "{stderr}");
    let (stdout, _) = ok(&sandbox.cli().args(["rm", "test/tiny"]).output().unwrap());
    assert!(stdout.contains("repository folder removed"), "{stdout}");
    assert!(!sandbox.repo_dir("test/tiny").exists());
}

#[test]
fn store_split_files_are_fetched_together() {
    use llama_core::gguf::{synthetic::SyntheticModel, writer::GgufWriter, GgufFile, Value};
    // Split the generated model's tensors over two files, as gguf-split does.
    let model = SyntheticModel::llama(GgmlType::Q4_0);
    let whole = GgufFile::parse(&model.to_writer().to_bytes()).unwrap();
    let bytes = model.to_writer().to_bytes();
    let n = whole.tensors.len();
    let mut parts = Vec::new();
    for (index, range) in [(0u16, 0..n / 2), (1, n / 2..n)] {
        let mut w = GgufWriter::new();
        if index == 0 {
            for (k, v) in whole.metadata.iter() {
                w.add(k, v.clone());
            }
        }
        w.add("split.no", Value::U16(index))
            .add("split.count", Value::U16(2))
            .add("split.tensors.count", Value::I32(n as i32));
        for t in &whole.tensors[range] {
            let data = bytes[t.file_offset as usize..(t.file_offset + t.n_bytes) as usize].to_vec();
            w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, data);
        }
        parts.push(w.to_bytes());
    }
    let repo = FakeRepo::new(
        "test/split",
        vec![
            FakeFile::lfs("m-Q4_0-00001-of-00002.gguf", parts[0].clone()),
            FakeFile::lfs("m-Q4_0-00002-of-00002.gguf", parts[1].clone()),
        ],
    );
    let sandbox = Sandbox::new(vec![repo]);
    let (stdout, _) = ok(&sandbox
        .cli()
        .args(["pull", "test/split:Q4_0"])
        .output()
        .unwrap());
    assert!(
        stdout.trim().ends_with("m-Q4_0-00001-of-00002.gguf"),
        "{stdout}"
    );
    assert_eq!(
        sandbox
            .hub
            .served("test/split", "m-Q4_0-00002-of-00002.gguf"),
        parts[1].len() as u64
    );
    let (stdout, _) = ok(&sandbox
        .cli()
        .args(["show", "--json", "-hf", "test/split:Q4_0"])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["summary"]["n_splits"], 2);
    assert_eq!(v["summary"]["n_tensors"], n);
}

#[test]
fn store_free_space_is_checked_before_downloading() {
    let mut huge = FakeFile::lfs("huge-Q4_0.gguf", tiny_model(GgmlType::Q4_0));
    huge.advertised_size = 1 << 60;
    let sandbox = Sandbox::new(vec![FakeRepo::new("test/huge", vec![huge])]);
    let out = sandbox
        .cli()
        .args(["pull", "test/huge:Q4_0"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("not enough disk space"), "{stderr}");
    assert_eq!(sandbox.hub.served("test/huge", "huge-Q4_0.gguf"), 0);
}

#[test]
fn store_two_pulls_of_one_file_download_it_once() {
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    let size = q4_file().content.len() as u64;
    sandbox.hub.set_faults(
        "test/tiny",
        "tiny-Q4_0.gguf",
        Faults {
            chunk_delay: Some(Duration::from_millis(25)),
            ..Faults::default()
        },
    );
    let spawn = || {
        sandbox
            .command()
            .args(["pull", "test/tiny:Q4_0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (out_a, err_a) = ok(&a);
    let (out_b, err_b) = ok(&b);
    assert_eq!(out_a, out_b);
    assert_eq!(
        sandbox.hub.served("test/tiny", "tiny-Q4_0.gguf"),
        size,
        "{err_a}\n{err_b}"
    );
    assert!(
        format!("{err_a}{err_b}").contains("another process is downloading"),
        "{err_a}\n{err_b}"
    );
}

#[test]
fn store_plain_urls_are_downloaded_and_listed() {
    let sandbox = Sandbox::new(vec![]);
    let content = tiny_model(GgmlType::Q4_0);
    let url = sandbox.hub.add_plain("plain-Q4_0.gguf", content.clone());
    let (stdout, stderr) = ok(&sandbox.cli().args(["pull", &url]).output().unwrap());
    assert!(stderr.contains("no published checksum"), "{stderr}");
    assert_eq!(std::fs::read(stdout.trim()).unwrap(), content);
    let (listing, _) = ok(&sandbox.cli().args(["list", "--json"]).output().unwrap());
    assert!(listing.contains(&url), "{listing}");
    let (stdout, stderr) = texts(&sandbox.cli().args(["pull", &url]).output().unwrap());
    assert!(stderr.contains("already in the cache"), "{stdout}{stderr}");
    ok(&sandbox.cli().args(["rm", &url]).output().unwrap());
    assert!(!std::path::Path::new(stdout.trim()).exists());
}

#[test]
fn store_progress_bar_on_a_terminal_shows_bytes_rate_and_eta() {
    // `script` (util-linux) gives the binary a pseudo-terminal for stderr.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed, no pseudo-terminal to draw on");
        return;
    }
    let sandbox = Sandbox::new(vec![tiny_repo()]);
    sandbox.hub.set_faults(
        "test/tiny",
        "tiny-Q4_0.gguf",
        Faults {
            chunk_delay: Some(Duration::from_millis(40)),
            ..Faults::default()
        },
    );
    let binary = assert_cmd::cargo::cargo_bin("llama-cli");
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qefc",
        &format!("{} pull test/tiny:Q4_0", binary.display()),
        "/dev/null",
    ]);
    for (k, v) in sandbox.vars() {
        cmd.env(k, v);
    }
    let out = cmd
        .env_remove("HF_TOKEN")
        .env_remove("LLAMA_CACHE")
        .output()
        .unwrap();
    let (screen, _) = ok(&out);
    assert!(screen.contains("tiny-Q4_0.gguf ["), "{screen}");
    assert!(screen.contains("/s eta "), "{screen}");
    assert!(screen.contains("iB/s"), "a rate: {screen}");
}

//! Shared pieces of the model-store tests: generated models, a fake hub serving them, and the
//! binary run against a private cache.

use std::path::{Path, PathBuf};
use std::process::Output;

use llama_core::gguf::{synthetic::SyntheticModel, GgmlType};

use super::fake_hub::{FakeFile, FakeHub, FakeRepo};
use super::support::llama_cli;

/// A small generated model of weight type `t`.
pub fn tiny_model(t: GgmlType) -> Vec<u8> {
    SyntheticModel::llama(t).to_writer().to_bytes()
}

/// The `test/tiny` repository: Q4_0 and Q8_0 models and a README kept in git.
pub fn tiny_repo() -> FakeRepo {
    FakeRepo::new(
        "test/tiny",
        vec![
            FakeFile::git("README.md", b"# tiny test models\n".to_vec()),
            FakeFile::lfs("tiny-Q4_0.gguf", tiny_model(GgmlType::Q4_0)),
            FakeFile::lfs("tiny-Q8_0.gguf", tiny_model(GgmlType::Q8_0)),
        ],
    )
}

/// A private cache (and URL cache, and HF_HOME without a token) for one test.
pub struct Sandbox {
    /// The fake hub.
    pub hub: FakeHub,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A hub serving `repos`, and empty caches.
    pub fn new(repos: Vec<FakeRepo>) -> Sandbox {
        Sandbox {
            hub: FakeHub::start(repos),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The hub cache (`HF_HUB_CACHE`).
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    /// `llama-cli` with this sandbox's environment.
    pub fn cli(&self) -> assert_cmd::Command {
        let mut cmd = llama_cli();
        self.apply(&mut cmd);
        cmd
    }

    /// A `std::process::Command` of the binary with this sandbox's environment.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("llama-cli"));
        cmd.env_remove("RUST_LOG");
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        for k in REMOVED {
            cmd.env_remove(k);
        }
        cmd
    }

    fn apply(&self, cmd: &mut assert_cmd::Command) {
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        for k in REMOVED {
            cmd.env_remove(k);
        }
    }

    /// The environment variables the sandbox sets.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HF_HUB_CACHE", self.cache().display().to_string()),
            (
                "HF_HOME",
                self.dir.path().join("hf-home").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME",
                self.dir.path().join("xdg").display().to_string(),
            ),
            ("HF_ENDPOINT", self.hub.endpoint.clone()),
        ]
    }

    /// The blob of `sha256` in `repo`'s cache folder.
    pub fn blob(&self, repo: &str, sha256: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(sha256)
    }

    /// `models--org--name`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache()
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// Files under `dir` whose name ends with `suffix`.
    pub fn files_ending(&self, dir: &Path, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().ends_with(suffix) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// Variables that would point the binary elsewhere.
const REMOVED: [&str; 6] = [
    "LLAMA_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "MODEL_ENDPOINT",
];

/// stdout and stderr as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts success and returns (stdout, stderr).
pub fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = texts(out);
    assert!(
        out.status.success(),
        "failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

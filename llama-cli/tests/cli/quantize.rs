//! `quantize` (issue 17): the same output as llama.cpp's llama-quantize for the same input and
//! type (generated F16 models), an importance matrix, the memory budget (row buffers shrink to
//! fit, the output does not change, the peak stays under it; below the minimum it is refused
//! before anything is written), and bad input that never loses a file.

use std::path::{Path, PathBuf};

use llama_core::gguf::synthetic::SyntheticModel;
use llama_core::gguf::writer::GgufWriter;
use llama_core::gguf::{ArrayValue, GgmlType, GgufModel, Value};

use super::support::{assert_clean_failure, llama_cli, model, reference_tool};

/// `(name, type)` of every tensor of a GGUF file.
fn tensor_types(path: &Path) -> Vec<(String, String)> {
    GgufModel::open(path)
        .unwrap()
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.ggml_type.ggml_name().to_string()))
        .collect()
}

fn quantize_json(args: &[&str]) -> serde_json::Value {
    let output = llama_cli()
        .arg("quantize")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

fn generated(dir: &Path, model: &SyntheticModel, name: &str) -> PathBuf {
    let path = dir.join(name);
    model.write_to(&path).unwrap();
    path
}

/// Files in `dir` whose names end with `.partial` (left-over temporary files).
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

#[test]
fn quantize_writes_what_llama_quantize_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(
        dir.path(),
        &SyntheticModel::llama(GgmlType::F16),
        "f16.gguf",
    );
    for target in ["Q4_K_M", "Q8_0"] {
        let ours = dir.path().join(format!("ours-{target}.gguf"));
        let v = quantize_json(&[
            input.to_str().unwrap(),
            ours.to_str().unwrap(),
            target,
            "-t",
            "2",
        ]);
        assert_eq!(v["file_type"], target, "{v}");
        assert_eq!(v["output_bytes"], std::fs::metadata(&ours).unwrap().len());
        let types = tensor_types(&ours);
        assert!(types
            .iter()
            .all(|(n, t)| t == "f32" || !n.ends_with("norm.weight")));
        assert!(
            v["peak_rss"].as_u64().unwrap()
                <= v["planned"]["process"].as_u64().unwrap()
                    + v["planned"]["metadata"].as_u64().unwrap()
                    + v["planned"]["mapped_tensor"].as_u64().unwrap()
                    + v["planned"]["buffers"].as_u64().unwrap()
                    + v["planned"]["slack"].as_u64().unwrap(),
            "{v}"
        );
        let Some(mut reference) = reference_tool("llama-quantize") else {
            continue;
        };
        let theirs = dir.path().join(format!("ref-{target}.gguf"));
        let out = reference
            .args([input.as_os_str(), theirs.as_os_str()])
            .args([target, "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::metadata(&ours).unwrap().len(),
            std::fs::metadata(&theirs).unwrap().len(),
            "{target}: output sizes differ"
        );
        assert_eq!(tensor_types(&ours), tensor_types(&theirs), "{target}");
        let identical = std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap();
        eprintln!(
            "{target}: same size and tensor types as llama-quantize; byte-identical: {identical}"
        );
    }
    assert!(partials(dir.path()).is_empty());
}

/// An importance matrix in llama-imatrix's GGUF format for the 2-D weights of `model`.
fn write_imatrix(path: &Path, model: &Path) {
    let gguf = GgufModel::open(model).unwrap();
    let mut w = GgufWriter::new();
    w.add("general.type", "imatrix");
    w.add(
        "imatrix.datasets",
        Value::Array(ArrayValue::String(vec!["test.txt"].into())),
    );
    w.add("imatrix.chunk_count", Value::U32(4));
    w.add("imatrix.chunk_size", Value::U32(512));
    for t in gguf.tensors().iter().filter(|t| t.dims.len() == 2) {
        let n = t.dims[0] as usize;
        let sums: Vec<u8> = (0..n)
            .flat_map(|i| (1.0f32 + (i * 7 % 13) as f32).to_le_bytes())
            .collect();
        w.add_tensor(
            format!("{}.in_sum2", t.name),
            &[n as u64, 1],
            GgmlType::F32,
            sums,
        );
        w.add_tensor(
            format!("{}.counts", t.name),
            &[1, 1],
            GgmlType::F32,
            2.0f32.to_le_bytes().to_vec(),
        );
    }
    w.write_to_path(path).unwrap();
}

#[test]
fn quantize_uses_an_importance_matrix_as_llama_quantize_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(
        dir.path(),
        &SyntheticModel::llama(GgmlType::F16),
        "f16.gguf",
    );
    let imatrix = dir.path().join("imatrix.gguf");
    write_imatrix(&imatrix, &input);
    let plain = dir.path().join("plain.gguf");
    let with = dir.path().join("with.gguf");
    quantize_json(&[input.to_str().unwrap(), plain.to_str().unwrap(), "Q4_K_M"]);
    quantize_json(&[
        input.to_str().unwrap(),
        with.to_str().unwrap(),
        "Q4_K_M",
        "--imatrix",
        imatrix.to_str().unwrap(),
    ]);
    let g = GgufModel::open(&with).unwrap();
    assert!(g.get_u64("quantize.imatrix.entries_count").unwrap() > 0);
    assert_eq!(g.get_str("quantize.imatrix.dataset"), Some("test.txt"));
    assert_eq!(g.get_u64("quantize.imatrix.chunks_count"), Some(4));
    // The weights are quantized differently with the matrix.
    let data = |p: &Path| {
        let g = GgufModel::open(p).unwrap();
        let t = g.tensor("blk.0.attn_q.weight").unwrap().clone();
        std::fs::read(p).unwrap()[t.file_offset as usize..(t.file_offset + t.n_bytes) as usize]
            .to_vec()
    };
    assert_ne!(data(&plain), data(&with));
    if let Some(mut reference) = reference_tool("llama-quantize") {
        let theirs = dir.path().join("ref.gguf");
        let out = reference
            .arg("--imatrix")
            .arg(&imatrix)
            .args([input.as_os_str(), theirs.as_os_str()])
            .arg("Q4_K_M")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(tensor_types(&with), tensor_types(&theirs));
        assert_eq!(
            data(&with),
            data(&theirs),
            "the matrix is applied as llama-quantize applies it"
        );
    }
    // A matrix that is not one is refused before anything is written.
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"not an imatrix").unwrap();
    let out = llama_cli()
        .arg("quantize")
        .args([input.as_os_str(), dir.path().join("x.gguf").as_os_str()])
        .args(["Q4_K_M", "--imatrix"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(assert_clean_failure(&out).contains("importance matrix"));
    assert!(!dir.path().join("x.gguf").exists());
}

/// `needs at least X ...; pass --max-mem N or more` → N.
fn minimum_flag(stderr: &str) -> String {
    stderr
        .split("pass --max-mem ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no minimum in: {stderr}"))
        .to_string()
}

#[test]
fn quantize_fits_max_mem_or_refuses_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    // 262,144 tokens x 64: the embeddings are the largest tensor (32 MiB of F16).
    let input = generated(
        dir.path(),
        &SyntheticModel::large_vocab(GgmlType::F16),
        "lv.gguf",
    );
    let out = dir.path().join("out.gguf");
    let args = |extra: &[&str]| {
        let mut a = vec![
            input.to_str().unwrap().to_string(),
            out.to_str().unwrap().to_string(),
            "Q4_K_M".to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let refused = llama_cli()
        .arg("quantize")
        .args(args(&["--max-mem", "40M"]))
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&refused);
    assert!(stderr.contains("needs at least"), "{stderr}");
    assert!(!out.exists(), "nothing is written when refused");
    // The process measured at planning time varies a little between runs: a few MiB more.
    let minimum: llama_core::ByteSize = minimum_flag(&stderr).parse().unwrap();
    let minimum = format!("{}", minimum.0 + (4 << 20));
    let unlimited = quantize_json(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let reference = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let tight = quantize_json(
        &args(&["--max-mem", &minimum])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let budget: llama_core::ByteSize = minimum.parse().unwrap();
    let planned = &tight["planned"];
    assert!(
        planned["max_buffer_bytes"].as_u64().unwrap()
            < unlimited["planned"]["max_buffer_bytes"].as_u64().unwrap(),
        "{tight}"
    );
    assert!(
        tight["peak_rss"].as_u64().unwrap() <= budget.0,
        "peak over --max-mem {minimum}: {tight}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        reference,
        "slabs of rows do not change the result"
    );
}

#[test]
fn quantize_bad_input_is_refused_and_no_file_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(
        dir.path(),
        &SyntheticModel::llama(GgmlType::F16),
        "f16.gguf",
    );
    let original = std::fs::read(&input).unwrap();
    let existing = dir.path().join("existing.gguf");
    std::fs::write(&existing, b"keep me").unwrap();
    let run = |args: &[&std::ffi::OsStr]| llama_cli().arg("quantize").args(args).output().unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![input.clone().into(), input.clone().into(), os("Q8_0")],
            "is the input",
        ),
        (
            vec![
                input.clone().into(),
                input.clone().into(),
                os("Q8_0"),
                os("--force"),
            ],
            "is the input",
        ),
        (
            vec![input.clone().into(), existing.clone().into(), os("Q8_0")],
            "already exists",
        ),
        (
            vec![
                input.clone().into(),
                dir.path().join("x.gguf").into(),
                os("Q9_9"),
            ],
            "TYPE",
        ),
        (
            vec![
                dir.path().join("missing.gguf").into(),
                dir.path().join("x.gguf").into(),
                os("Q8_0"),
            ],
            "does not exist",
        ),
        (
            vec![
                existing.clone().into(),
                dir.path().join("x.gguf").into(),
                os("Q8_0"),
            ],
            "not a valid GGUF",
        ),
        (
            vec![
                input.clone().into(),
                dir.path().join("no/such/dir/x.gguf").into(),
                os("Q8_0"),
            ],
            "cannot write into",
        ),
        (
            vec![input.clone().into(), dir.path().into(), os("Q8_0")],
            "is a directory",
        ),
    ];
    for (args, expected) in cases {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let stderr = assert_clean_failure(&run(&refs));
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // llama.cpp's own refusal: requantizing the Q4_1 model needs --allow-requantize.
    let out = dir.path().join("requantized.gguf");
    let stderr = assert_clean_failure(&run(&[
        model().as_os_str(),
        out.as_os_str(),
        std::ffi::OsStr::new("Q8_0"),
    ]));
    assert!(stderr.contains("--allow-requantize"), "{stderr}");
    assert!(!out.exists());
    assert!(
        partials(dir.path()).is_empty(),
        "{:?}",
        partials(dir.path())
    );
    assert_eq!(std::fs::read(&input).unwrap(), original);
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    // --force replaces an existing output, atomically.
    let forced = run(&[
        input.as_os_str(),
        existing.as_os_str(),
        std::ffi::OsStr::new("Q8_0"),
        std::ffi::OsStr::new("--force"),
    ]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(
        GgufModel::open(&existing).unwrap().file_type_name(),
        Some("Q8_0")
    );
}

#[test]
fn ctrl_c_while_quantizing_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    // Requantizing SmolLM2 takes about half a second; the signal comes as soon as the
    // temporary file exists.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_llama-cli"))
        .arg("quantize")
        .arg("--allow-requantize")
        .arg(model())
        .arg(&out)
        .arg("Q5_K_M")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while partials(dir.path()).is_empty() && started.elapsed().as_secs() < 30 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(130) => {
            assert!(stderr.contains("interrupted"), "{stderr}");
            assert!(!out.exists());
            assert!(
                partials(dir.path()).is_empty(),
                "{:?}",
                partials(dir.path())
            );
        }
        Some(0) => eprintln!("skipped: quantizing finished before the signal arrived"),
        other => panic!("exit {other:?}: {stderr}"),
    }
}

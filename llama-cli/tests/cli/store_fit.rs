//! The fit check of `pull --max-mem`: the model is planned from its GGUF headers (fetched by
//! ranged requests into a sparse file) and refused before the download when it cannot run,
//! naming a smaller quantisation of the same repository that fits, or a smaller context.

use llama_core::gguf::{synthetic::SyntheticModel, GgmlType};

use super::fake_hub::{FakeFile, FakeRepo};
use super::store_support::{ok, Sandbox};
use super::support::assert_clean_failure;

/// A generated model large enough that its quantisations differ by tens of MB.
fn big_model(t: GgmlType) -> Vec<u8> {
    SyntheticModel {
        n_layer: 8,
        n_embd: 512,
        n_head: 8,
        n_head_kv: 4,
        n_ff: 2048,
        ..SyntheticModel::llama(t)
    }
    .to_writer()
    .to_bytes()
}

fn big_repo() -> FakeRepo {
    FakeRepo::new(
        "test/big",
        vec![
            FakeFile::lfs("big-Q8_0.gguf", big_model(GgmlType::Q8_0)),
            FakeFile::lfs("big-Q4_1.gguf", big_model(GgmlType::Q4_1)),
        ],
    )
}

/// The bytes `plan` says `model` needs with `args`, read from a local copy of it.
fn planned_total(sandbox: &Sandbox, model: &[u8], args: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, model).unwrap();
    let out = sandbox
        .cli()
        .args([
            "plan",
            "--json",
            "--max-mem",
            "100G",
            "--stream",
            "off",
            "--no-repack",
            "-m",
        ])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["total"].as_u64().expect("plan total")
}

#[test]
fn store_fit_refusal_downloads_under_one_percent_and_names_a_smaller_quant() {
    let sandbox = Sandbox::new(vec![big_repo()]);
    let repo = big_repo();
    let (q8, q4) = (&repo.files[0], &repo.files[1]);
    assert!(q4.path.ends_with("Q4_1.gguf"));
    // Each model's smallest configuration (the planner's floors): the context, micro-batch
    // and KV cache type it degrades to.
    let args = ["-c", "512", "-ub", "32", "--cache-type", "q4_0"];
    let need_q8 = planned_total(&sandbox, &q8.content, &args);
    let need_q4 = planned_total(&sandbox, &q4.content, &args);
    assert!(need_q8 > need_q4 + (10 << 20), "q8 {need_q8}, q4 {need_q4}");
    // Q4_1 fits (degraded as far as needed), Q8_0 does not even at its smallest.
    let budget = format!("{}", (need_q4 + need_q8) / 2);
    let out = sandbox
        .cli()
        .args([
            "pull",
            "test/big:Q8_0",
            "--max-mem",
            &budget,
            "--stream",
            "off",
            "-nr",
        ])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("does not fit --max-mem"), "{stderr}");
    assert!(stderr.contains("llama-cli pull test/big:Q4_1"), "{stderr}");
    assert!(stderr.contains("nothing was downloaded"), "{stderr}");
    let served = sandbox.hub.served("test/big", "big-Q8_0.gguf");
    let size = q8.content.len() as u64;
    assert!(
        served > 0 && served * 100 < size,
        "served {served} of {size} bytes"
    );
    assert!(!sandbox.repo_dir("test/big").join("blobs").exists());
    // The suggestion is right: the smaller quantisation passes the same check and downloads.
    let (_, stderr) = ok(&sandbox
        .cli()
        .args([
            "pull",
            "test/big:Q4_1",
            "--max-mem",
            &budget,
            "--stream",
            "off",
            "-nr",
        ])
        .output()
        .unwrap());
    assert!(stderr.contains("runs under --max-mem"), "{stderr}");
    let blob = sandbox.blob("test/big", &q4.sha256());
    assert_eq!(
        std::fs::metadata(blob).unwrap().len(),
        q4.content.len() as u64
    );
}

#[test]
fn store_fit_refusal_under_strict_names_a_smaller_context() {
    let sandbox = Sandbox::new(vec![big_repo()]);
    let q4 = &big_repo().files[1];
    let small = planned_total(&sandbox, &q4.content, &["-c", "512"]);
    let large = planned_total(&sandbox, &q4.content, &["-c", "4096"]);
    assert!(large > small + (8 << 20), "c=512 {small}, c=4096 {large}");
    let budget = format!("{}", (small + large) / 2);
    let out = sandbox
        .cli()
        .args([
            "pull",
            "test/big:Q4_1",
            "--max-mem",
            &budget,
            "--strict",
            "-c",
            "4096",
        ])
        .args(["--stream", "off", "-nr"])
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&out);
    assert!(stderr.contains("--ctx-size"), "{stderr}");
    assert!(sandbox.hub.served("test/big", "big-Q4_1.gguf") * 100 < q4.content.len() as u64);
}

#[test]
fn store_fit_plans_a_sparse_header_copy_as_the_real_file() {
    // What the fit check relies on: llama.cpp's dry run on the header alone, in a sparse file
    // of the full size, plans the same buffers as on the real file.
    let sandbox = Sandbox::new(vec![]);
    let model = big_model(GgmlType::Q4_1);
    let header = llama_core::gguf::GgufFile::parse(&model)
        .unwrap()
        .data_offset as usize;
    let dir = tempfile::tempdir().unwrap();
    let (real, sparse) = (dir.path().join("real.gguf"), dir.path().join("sparse.gguf"));
    std::fs::write(&real, &model).unwrap();
    let file = std::fs::File::create(&sparse).unwrap();
    file.set_len(model.len() as u64).unwrap();
    std::io::Write::write_all(&mut &file, &model[..header]).unwrap();
    let plan = |path: &std::path::Path| {
        let out = sandbox
            .cli()
            .args(["plan", "--json", "--max-mem", "1G", "-c", "1024", "-m"])
            .arg(path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&ok(&out).0).unwrap();
        let b = &v["plan"]["breakdown"];
        (
            b["weights"].clone(),
            b["kv"].clone(),
            b["compute"].clone(),
            b["output"].clone(),
        )
    };
    assert_eq!(plan(&sparse), plan(&real));
}

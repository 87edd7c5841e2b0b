//! `batched-bench` (issue 17): llama-batched-bench's table, with its columns and meanings
//! (N_KV, tokens per second over all sequences), rows that exceed the context skipped, JSON
//! rows, and the context planned under --max-mem.

use super::support::{assert_clean_failure, llama_cli, model};

fn run(args: &[&str]) -> std::process::Output {
    llama_cli()
        .arg("batched-bench")
        .arg("-m")
        .arg(model())
        .args(["-t", "2"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn batched_bench_prints_llama_batched_benchs_table() {
    let out = run(&["-c", "512", "-npp", "16,32", "-ntg", "4", "-npl", "1,2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("n_kv_max = 512"), "{stdout}");
    let header = "|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |";
    assert!(stdout.contains(header), "{stdout}");
    let rows: Vec<Vec<f64>> = stdout
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("PP") && !l.contains("---"))
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| c.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for (row, (pp, pl)) in rows
        .iter()
        .zip([(16.0, 1.0), (16.0, 2.0), (32.0, 1.0), (32.0, 2.0)])
    {
        let [p, tg, b, n_kv, t_pp, s_pp, t_tg, s_tg, t, s] = row[..] else {
            panic!("{row:?}")
        };
        assert_eq!((p, tg, b), (pp, 4.0, pl));
        assert_eq!(
            n_kv,
            pl * (pp + tg),
            "N_KV is every sequence's prompt and generation"
        );
        // The speeds are the tokens of all sequences over the times (to the printed digits).
        let close = |a: f64, b: f64| (a - b).abs() <= 0.02 * b.max(1.0);
        assert!(close(s_pp, pl * pp / t_pp), "{row:?}");
        assert!(close(s_tg, pl * tg / t_tg), "{row:?}");
        assert!(close(t, t_pp + t_tg), "{row:?}");
        assert!(close(s, pl * (pp + tg) / t), "{row:?}");
    }
    // A row whose cells exceed the context is skipped, as llama-batched-bench does (with
    // -kvu the sequences share the 256 cells; without, each would have 128).
    let out = run(&[
        "-c", "256", "-npp", "200", "-ntg", "8", "-npl", "1,2", "-kvu", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["pl"], 1);
    assert_eq!(rows[0]["n_kv"], 208);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 rows"));
}

#[test]
fn batched_bench_is_planned_under_max_mem_and_checks_its_flags() {
    let stderr = assert_clean_failure(&run(&["-c", "4096", "-npl", "1,8", "--max-mem", "60M"]));
    assert!(
        stderr.contains("--max-mem") || stderr.contains("budget"),
        "{stderr}"
    );
    let stderr = assert_clean_failure(&run(&["-npl", "0"]));
    assert!(stderr.contains("n-pl"), "{stderr}");
}

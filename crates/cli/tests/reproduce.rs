//! `fuseflow reproduce` end to end at small scale: every experiment (fig12's GCN rows only in
//! one test, the other models in another); records, tables, the agreement column, the `--from`
//! re-render (same bytes), resuming, and bad input. The whole small set (`reproduce all`) takes
//! seconds in a release build (docs/reproduce.md).

mod common;

use std::path::{Path, PathBuf};

use common::cli;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseflow-reproduce-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn records(dir: &Path, exp: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(exp).join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read(dir: &Path, exp: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(exp).join(file)).unwrap_or_else(|e| panic!("{exp}/{file}: {e}"))
}

#[test]
fn records_tables_rerender_and_resume() {
    let out = scratch("run");
    let dir = out.display().to_string();
    let (code, stdout, stderr) = cli(&["reproduce", "fig14", "--out", &dir, "--jobs", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let recs = records(&out, "fig14");
    assert_eq!(recs.len(), 5);
    for r in &recs {
        assert_eq!(r["verified"], true, "{r}");
        assert!(r["cycles"].as_u64().unwrap() > 0 && r["bytes"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["scale"], "small");
    }
    let md = String::from_utf8(read(&out, "fig14", "table.md")).unwrap();
    assert!(md.contains("| data | variant | fusion | FLOPs | bytes |"), "{md}");
    // Every row carries a verdict; the unfused baseline has nothing to compare with.
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| default")).collect();
    assert_eq!(rows.len(), 5, "{md}");
    assert!(rows[0].ends_with("| no paper value |"), "{}", rows[0]);
    for r in &rows[1..] {
        assert!(r.ends_with("| agrees |") || r.ends_with("| differs |"), "{r}");
    }
    // Layer 1 fused: bytes fall at unchanged FLOPs, as the paper says.
    assert!(rows[1].contains("| 1.00× |") && rows[1].ends_with("| agrees |"), "{}", rows[1]);
    assert!(stdout.contains(&md), "the table is printed");
    let csv = String::from_utf8(read(&out, "fig14", "table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.lines().next().unwrap().ends_with(",agreement"), "{csv}");
    assert!(String::from_utf8(read(&out, "fig14", "plot.svg")).unwrap().starts_with("<svg"));

    // fig17: every order verifies, and the spread row compares with the paper's.
    let (code, stdout, stderr) = cli(&["reproduce", "fig17", "--out", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let recs = records(&out, "fig17");
    assert_eq!(recs.len(), 24);
    assert!(recs.iter().all(|r| r["verified"] == true && r["order"].is_string()));
    let md = String::from_utf8(read(&out, "fig17", "table.md")).unwrap();
    let spread = md.lines().find(|l| l.starts_with("| best over worst")).unwrap();
    assert!(spread.contains("(paper ≈29×)"), "{spread}");

    // fig12's GCN rows only (the rest is too slow for a debug build): the other rows say
    // missing, and --only makes that no failure.
    let (code, stdout, stderr) = cli(&["reproduce", "fig12", "--only", "gcn/", "--out", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let md = String::from_utf8(read(&out, "fig12", "table.md")).unwrap();
    let gcn = md.lines().find(|l| l.starts_with("| gcn | default (paper: cora) | ideal |")).unwrap();
    assert!(gcn.contains("| partial | 1.63× | 0.29× | partial |"), "{gcn}");
    assert!(!gcn.contains("missing"), "{gcn}");
    assert!(md.lines().any(|l| l.starts_with("| sae") && l.ends_with("| missing |")), "{md}");

    // Resuming: nothing is simulated again.
    let (code, stdout, stderr) = cli(&["reproduce", "fig14", "--out", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(records(&out, "fig14").len(), 5);

    // --from: the same bytes, from the records alone.
    let again = scratch("again");
    std::fs::create_dir_all(&again).unwrap();
    let (code, stdout, stderr) = cli(&["reproduce", "all", "--from", &dir, "--out", &again.display().to_string()]);
    // fig12's other rows are missing: exit 1, and the tables are still written.
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("re-rendered from records"), "{stdout}");
    for exp in ["fig12", "fig14", "fig17"] {
        for file in ["table.md", "table.csv", "plot.svg"] {
            assert_eq!(read(&out, exp, file), read(&again, exp, file), "{exp}/{file}");
        }
    }
    assert!(!again.join("fig15").exists(), "no records, nothing rendered");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn a_run_another_experiment_recorded_is_not_simulated_again() {
    // fig14's unfused, both-layers and fully fused GCN are fig12's `ideal` unfused, partial and
    // full runs: recorded by fig12 in the same directory, they are taken over under fig14's
    // name (same figures), not simulated.
    let out = scratch("reuse");
    let dir = out.display().to_string();
    let (code, stdout, stderr) = cli(&["reproduce", "fig12", "--only", "gcn/default/", "--out", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = cli(&["reproduce", "fig14", "--out", &dir, "--jobs", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "fig14: gcn/default/unfused/ideal, gcn/default/both/ideal, gcn/default/full/ideal already recorded by \
             another experiment"
        ),
        "{stderr}"
    );
    let fig12 = records(&out, "fig12");
    let fig14 = records(&out, "fig14");
    assert_eq!(fig14.len(), 5);
    for (ours, theirs) in [("unfused", "unfused"), ("both", "partial"), ("full", "full")] {
        let id = format!("gcn/default/{ours}/ideal");
        let a = fig12.iter().find(|r| r["id"] == format!("gcn/default/{theirs}/ideal").as_str()).unwrap();
        let b = fig14.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(b["experiment"], "fig14");
        for field in ["cycles", "flops", "bytes", "groups", "params", "verified", "wall_seconds"] {
            assert_eq!(a[field], b[field], "{id}: {field}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn every_experiment_path_at_small_scale() {
    let out = scratch("paths");
    let dir = out.display().to_string();
    for only in ["graphsage/", "sae/", "gpt3/"] {
        let (code, stdout, stderr) = cli(&["reproduce", "fig12", "--only", only, "--out", &dir]);
        assert_eq!(code, 0, "{only}: {stdout}{stderr}");
    }
    let recs = records(&out, "fig12");
    assert_eq!(recs.len(), 30);
    assert!(recs.iter().all(|r| r["verified"] == true), "{recs:?}");
    let md = String::from_utf8(read(&out, "fig12", "table.md")).unwrap();
    for hw in ["ideal", "rda"] {
        // GPT-3's whole-model totals are composed from the chain program's groups.
        let row = md.lines().find(|l| l.starts_with(&format!("| gpt3 | B=2 (paper: B=16) | {hw} |"))).unwrap();
        assert!(!row.contains("missing") && row.contains("| — | 2.70× | full |"), "{row}");

        let sage =
            md.lines().find(|l| l.starts_with(&format!("| graphsage | default (paper: cora) | {hw} |"))).unwrap();
        assert!(sage.contains("| partial | 2.10× | 0.48× | partial |"), "{sage}");
    }
    // Full fusion wins at every block size on both machines, as in the paper: c3′ contracts
    // the next QKV projection's d above (h, e), so the fused row is not recomputed per column.
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| gpt3 |")).collect();
    assert_eq!(rows.len(), 6, "{md}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[9], "full", "our best: {row}");
    }
    let gpt3 = recs.iter().find(|r| r["id"] == "gpt3/B=2/full/ideal").unwrap();
    let labels: Vec<&str> = gpt3["groups"].as_array().unwrap().iter().map(|g| g["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["0-3", "4-7", "8-17"]);
    for exp in ["fig15", "fig16"] {
        let (code, stdout, stderr) = cli(&["reproduce", exp, "--out", &dir]);
        assert_eq!(code, 0, "{exp}: {stdout}{stderr}");
        assert_eq!(records(&out, exp).len(), 6);
        assert!(records(&out, exp).iter().all(|r| r["verified"] == true));
    }
    let md = String::from_utf8(read(&out, "fig15", "table.md")).unwrap();
    assert!(md.lines().any(|l| l.contains("| h=4,i=4 | 16 |")), "{md}");
    let md = String::from_utf8(read(&out, "fig16", "table.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.starts_with("| B=")).count(), 3, "{md}");
    let _ = std::fs::remove_dir_all(&out);
}

/// One reproduction split over shards into one directory (by `--shard` and by a Slurm array's
/// environment) renders the tables and plot of one process, byte for byte; `--list` names
/// each shard's configurations, which together are the plan's.
#[test]
fn shards_render_what_one_process_renders() {
    let one = scratch("one");
    let (code, _, err) = cli(&["reproduce", "fig14", "--out", &one.display().to_string(), "--jobs", "1"]);
    assert_eq!(code, 0, "{err}");
    let sharded = scratch("sharded");
    let dir = sharded.display().to_string();
    let (code, out0, err) = cli(&["reproduce", "fig14", "--out", &dir, "--shard", "0/2", "--jobs", "1"]);
    // The other shard's rows are missing, which is not a failure of this one.
    assert_eq!(code, 0, "{out0}{err}");
    assert!(out0.contains("missing"), "{out0}");
    let out = common::bin()
        .args(["reproduce", "fig14", "--out", &dir, "--jobs", "1"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 0..2 {
        let f = sharded.join("fig14").join(format!("records.shard-{i}-of-2.jsonl"));
        assert!(std::fs::metadata(&f).is_ok_and(|m| m.len() > 0), "{}", f.display());
    }
    let (code, _, err) = cli(&["reproduce", "fig14", "--from", &dir]);
    assert_eq!(code, 0, "{err}");
    for file in ["table.md", "table.csv", "plot.svg"] {
        assert!(read(&one, "fig14", file) == read(&sharded, "fig14", file), "fig14/{file} differs");
    }
    // A rerun of a shard finds its configurations recorded and simulates nothing.
    let (code, again, _) = cli(&["reproduce", "fig14", "--out", &dir, "--shard", "0/2"]);
    assert_eq!(code, 0);
    assert!(again.contains("5 records"), "{again}");
    let list = |shard: &str| {
        let (code, out, err) = cli(&["reproduce", "fig14", "--list", "--shard", shard]);
        assert_eq!(code, 0, "{err}");
        out.lines().map(String::from).collect::<Vec<_>>()
    };
    let (a, b) = (list("0/2"), list("1/2"));
    assert_eq!((a.len(), b.len()), (3, 2), "{a:?} {b:?}");
    let mut all: Vec<String> = records(&one, "fig14").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let mut both = [a, b].concat();
    all.sort();
    both.sort();
    assert_eq!(all, both);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&sharded);
}

fn one_line_error(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = cli(args);
    assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = scratch("bad");
    std::fs::create_dir_all(d.join("fig14")).unwrap();
    let dir = d.display().to_string();
    one_line_error(&["reproduce", "fig13", "--out", &dir], "unknown experiment \"fig13\"");
    one_line_error(&["reproduce", "fig14", "--scale", "huge", "--out", &dir], "unknown scale \"huge\"");
    one_line_error(&["reproduce", "fig14", "--from", &dir], "no records of fig14");
    one_line_error(&["reproduce", "all", "--from", &dir], "no records of any experiment");
    one_line_error(&["reproduce", "fig14", "--shard", "2/2", "--out", &dir], "shard index 2 is out of range");
    one_line_error(&["reproduce", "fig14", "--shard", "x", "--out", &dir], "expected I/N");
    // Records of another tool version are refused, for --from and for a rerun alike.
    let line = r#"{"tool":"fuseflow-reproduce 0.0.1","experiment":"fig14","scale":"small","id":"x","model":"gcn","dataset":"default","variant":"unfused","program":"p","fusion":"unfused","hw":"ideal","par":[],"block":null,"order":null,"params":{},"cycles":1,"flops":1,"bytes":1,"groups":[],"verified":true,"error":null,"wall_seconds":0.1}"#;
    std::fs::write(d.join("fig14").join("records.jsonl"), format!("{line}\n")).unwrap();
    one_line_error(&["reproduce", "fig14", "--from", &dir], "records of fuseflow-reproduce 0.0.1");
    one_line_error(&["reproduce", "fig14", "--out", &dir], "records of fuseflow-reproduce 0.0.1");
    let _ = std::fs::remove_dir_all(&d);
}

/// The paper-scale records kept in the repository (`docs/results/paper`, made by `reproduce
/// --scale paper` as docs/reproduce.md describes) are all verified, and render to the very
/// tables and plots stored beside them: what the docs quote is what the tool makes of them.
#[test]
fn stored_paper_scale_records_render_to_the_stored_tables() {
    let stored = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/paper");
    let out = scratch("stored");
    let (code, stdout, stderr) =
        cli(&["reproduce", "all", "--from", &stored.display().to_string(), "--out", &out.display().to_string()]);
    // Rows not yet run at paper scale are `missing`, which makes the set incomplete (exit 1).
    assert!(code == 0 || code == 1, "{code}: {stdout}{stderr}");
    for (exp, at_least) in [("fig12", 96), ("fig14", 15), ("fig15", 6), ("fig16", 6), ("fig17", 24)] {
        let recs = records(&stored, exp);
        assert!(recs.len() >= at_least, "{exp}: {} records", recs.len());
        for r in &recs {
            assert_eq!((&r["verified"], &r["scale"]), (&serde_json::json!(true), &serde_json::json!("paper")), "{r}");
        }
        for file in ["table.md", "table.csv", "plot.svg"] {
            assert!(read(&out, exp, file) == read(&stored, exp, file), "{exp}/{file} differs from the stored one");
        }
    }
    let md = String::from_utf8(read(&out, "fig12", "table.md")).unwrap();
    let b16 = md.lines().find(|l| l.starts_with("| gpt3 | B=16 | ideal |")).expect("GPT-3 B=16 row");
    assert!(b16.contains("| 98,661,421,716 |") && b16.contains("| full |"), "{b16}");
    let _ = std::fs::remove_dir_all(&out);
}

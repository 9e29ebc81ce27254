//! `fuseflow explore`, `estimate` and `merge` end to end: results equal `run`'s, resume after
//! `kill -9`, shards merge to the single-process result, bad input is refused in one line.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{bin, cli, examples_dir};

fn example(name: &str) -> String {
    examples_dir().join(name).display().to_string()
}

/// A fresh directory under the target's temporary space.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseflow-explore-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every valid record of every log in `dir`, as JSON, with the number of lines that did not
/// parse.
fn records(dir: &Path) -> (Vec<serde_json::Value>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("points") && name.ends_with(".jsonl")) {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => out.push(v),
                Err(_) => bad += 1,
            }
        }
    }
    (out, bad)
}

fn by_fusion(recs: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    recs.iter().map(|r| (r["fusion"].as_str().unwrap().to_string(), r.clone())).collect()
}

#[test]
fn points_equal_whole_runs_and_groups_are_simulated_once() {
    let out = scratch("equal");
    let dir = out.display().to_string();
    let (code, stdout, stderr) =
        cli(&["explore", &example("gcn.ff"), "--partitions", "0-3,4-10;full;unfused;0-1,2-10", "--out", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("4 selected, 0 already done, 4 run now (0 failed)"), "{stdout}");
    let (recs, bad) = records(&out);
    assert_eq!((recs.len(), bad), (4, 0));
    let recs = by_fusion(&recs);
    for fusion in ["0-3,4-10", "0-10", "0,1,2,3,4,5,6,7,8,9,10", "0-1,2-10"] {
        let r = &recs[fusion];
        assert_eq!(r["status"], "verified", "{r}");
        let (code, json, err) = cli(&["run", &example("gcn.ff"), "--fusion", fusion, "--json"]);
        assert_eq!(code, 0, "{err}");
        let run: serde_json::Value = serde_json::from_str(&json).unwrap();
        for k in ["cycles", "flops", "offchip_bytes"] {
            assert_eq!(r[k], run[k], "{fusion}: {k}");
        }
        assert!(r["estimate"]["cycles"].as_f64().unwrap() > 0.0);
    }
    // 11 singletons, 2 halves of the layer-wise split, the whole, 0-1 and 2-10: 16 groups.
    assert!(stdout.contains("groups       16 simulated"), "{stdout}");
    for f in
        ["results.csv", "report.md", "report.html", "explore.json", "pareto-cycles-bytes.svg", "pareto-flops-bytes.png"]
    {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| ideal | default | `0-3,4-10` |"), "{report}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_sweep_killed_at_any_moment_resumes_without_lost_or_duplicated_points() {
    let out = scratch("kill");
    let dir = out.display().to_string();
    let args = ["explore", &example("gcn.ff"), "--out", &dir];
    let mut child =
        bin().args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill it once it has finished some points but (most likely) not all.
    let log = out.join("points.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read(&log).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) < 20 {
        assert!(t0.elapsed().as_secs() < 120, "the sweep wrote nothing");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (before, _) = records(&out);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("1024 selected, {} already done", before.len())), "{stdout}");
    let (after, bad) = records(&out);
    assert!(bad <= 1, "at most one torn line");
    let keys: std::collections::BTreeSet<&str> = after.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 1024, "every point once");
    assert_eq!(after.len(), 1024, "no point twice");
    // Points finished before the kill were kept as they were.
    for b in &before {
        assert!(after.contains(b));
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn shards_merge_to_the_single_process_files() {
    let single = scratch("single");
    let sd = single.display().to_string();
    let (code, _, err) = cli(&["explore", &example("sae.ff"), "--hw", "ideal,rda", "--out", &sd]);
    assert_eq!(code, 0, "{err}");
    let mut dirs = Vec::new();
    for i in 0..3 {
        let d = scratch(&format!("shard{i}"));
        let ds = d.display().to_string();
        let (code, stdout, err) =
            cli(&["explore", &example("sae.ff"), "--hw", "ideal,rda", "--shard", &format!("{i}/3"), "--out", &ds]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains(&format!("shard        {i}/3")), "{stdout}");
        assert!(stdout.contains(&format!("points.shard-{i}-of-3.jsonl (")), "the shard's own log: {stdout}");
        dirs.push(d);
    }
    // The scheduler's environment picks the shard too.
    let envd = scratch("slurm");
    let out = bin()
        .args(["explore", &example("sae.ff"), "--hw", "ideal,rda", "--out", &envd.display().to_string()])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("shard        1/3"));
    let merged = scratch("merged");
    let md = merged.display().to_string();
    let mut args = vec!["merge".to_string()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend(["--out".to_string(), md.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("merged       32 points from 3 directories"), "{stdout}");
    for f in ["results.csv", "report.md", "report.html", "pareto-cycles-bytes.svg", "pareto-flops-bytes.svg"] {
        let a = std::fs::read(single.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap();
        assert!(a == b, "{f} differs between the single sweep and the merged shards");
    }
    for d in dirs.into_iter().chain([single, merged, envd]) {
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// One line on stderr, the exit code, and every needle in it.
fn refused(args: &[&str], code: i32, needles: &[&str]) {
    let (c, stdout, stderr) = cli(args);
    assert_eq!(c, code, "{args:?}: {stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
    }
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let d = scratch("bad");
    std::fs::create_dir_all(&d).unwrap();
    let space = d.join("space.toml");
    let out = d.join("out").display().to_string();
    let gcn = example("gcn.ff");
    std::fs::write(&space, "hw = \"ideal\"\nlanes = [1, 2]\n").unwrap();
    let sp = space.display().to_string();
    refused(&["explore", &gcn, "--space", &sp, "--out", &out], 2, &["space.toml:2:1: unknown axis `lanes`"]);
    std::fs::write(&space, "fifo_depth = [4, 0]\n").unwrap();
    refused(&["explore", &gcn, "--space", &sp, "--out", &out], 2, &["space.toml:1:1: axis `fifo_depth`", "impossible"]);
    std::fs::write(&space, "partitions = [\"0-3,5-10\"]\n").unwrap();
    refused(
        &["explore", &gcn, "--space", &sp, "--out", &out],
        2,
        &["space.toml:1:1: axis `partitions`", "statement 4 is in no group"],
    );
    // A listed group the dependences do not allow (the GCN is a chain) is located too.
    std::fs::write(&space, "hw = \"ideal\"\npartitions = [\"0+2,1,3-10\"]\n").unwrap();
    refused(
        &["explore", &gcn, "--space", &sp, "--out", &out],
        2,
        &["space.toml:2:1: axis `partitions`", "group 0+2 is not convex"],
    );
    refused(&["explore", &gcn, "--hw", "warp9", "--out", &out], 2, &["machine warp9"]);
    refused(&["explore", &gcn, "--shard", "4/4", "--out", &out], 2, &["--shard 4/4", "out of range"]);
    refused(&["explore", &gcn, "--prune", "0", "--out", &out], 2, &["--prune"]);
    // A results directory of another program.
    let (code, _, err) = cli(&["explore", &gcn, "--partitions", "full", "--out", &out]);
    assert_eq!(code, 0, "{err}");
    refused(&["explore", &example("sae.ff"), "--out", &out], 2, &["another program", "use another --out"]);
    // Another seed is other data.
    refused(&["explore", &gcn, "--seed", "3", "--out", &out], 2, &["another program or data"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_corrupt_line_is_skipped_with_a_warning_and_its_point_run_again() {
    let out = scratch("corrupt");
    let dir = out.display().to_string();
    let args = ["explore", &example("sae.ff"), "--out", &dir];
    let (code, _, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let log = out.join("points.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let victim: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    lines[3] = lines[3][..lines[3].len() / 2].to_string();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("points.jsonl:4: corrupt line skipped"), "{stderr}");
    assert!(stdout.contains("16 selected, 15 already done, 1 run now"), "{stdout}");
    let (recs, bad) = records(&out);
    assert_eq!((recs.len(), bad), (16, 1));
    let again = recs.iter().find(|r| r["key"] == victim["key"]).unwrap();
    assert_eq!(again["cycles"], victim["cycles"]);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn estimate_prints_every_group_and_prune_simulates_the_best() {
    let (code, stdout, err) = cli(&["estimate", &example("gcn.ff"), "--fusion", "0-3,4-10"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("group [0-3]  order i,k,f,h  cycles "), "{stdout}");
    assert!(stdout.contains("group [4-10]"), "{stdout}");
    let out = scratch("prune");
    let dir = out.display().to_string();
    let (code, stdout, err) = cli(&["explore", &example("gcn.ff"), "--prune", "1%", "--out", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("pruned       11 points kept"), "{stdout}");
    let (recs, _) = records(&out);
    assert_eq!(recs.len(), 11);
    std::fs::remove_dir_all(&out).unwrap();
}

/// A fully fused GCN recomputes layer 1 for every edge `(i, k)`, scanning row `k` of the
/// adjacency each time: rows are chosen by the adjacency's own column coordinates, so the
/// estimate takes their size-biased length (`TensorStats::self_selected`), and on the karate
/// club's skewed degrees its FLOPs and bytes are the simulator's exactly.
#[test]
fn the_estimate_counts_a_recomputed_row_per_edge_on_a_skewed_graph() {
    let json = |args: &[&str]| {
        let (code, stdout, err) = cli(args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let gcn = example("gcn.ff");
    let common = [gcn.as_str(), "--dataset", "karate", "--fusion", "full", "--json"];
    let est = json(&[&["estimate"][..], &common].concat());
    let run = json(&[&["run"][..], &common].concat());
    assert_eq!(run["verified"], true);
    assert_eq!(est["estimate"]["flops"].as_f64(), run["flops"].as_f64().map(|f| f.round()));
    assert_eq!(est["estimate"]["bytes"].as_f64(), run["offchip_bytes"].as_f64());
}

/// `estimate --bench` times the estimate over the contiguous partitions or every convex one
/// (GraphSAGE's two branches per layer give 1,296 convex partitions, 512 contiguous), and
/// refuses an unknown kind in one line.
#[test]
fn the_estimate_bench_covers_contiguous_or_convex_partitions() {
    for (kind, configurations) in [("all", 512), ("convex", 1296)] {
        let (code, stdout, err) =
            cli(&["estimate", &example("graphsage.ff"), "--bench", "--partitions", kind, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["bench"]["configurations"], configurations, "{kind}: {stdout}");
        assert!(v["bench"]["afresh_per_second"].as_f64().unwrap() > 0.0, "{stdout}");
    }
    refused(
        &["estimate", &example("graphsage.ff"), "--bench", "--partitions", "some"],
        2,
        &["--partitions", "all or convex"],
    );
}

#[test]
fn groups_simulated_side_by_side_give_the_same_files_as_one_at_a_time() {
    let one = scratch("jobs1");
    let three = scratch("jobs3");
    for (dir, jobs) in [(&one, "1"), (&three, "3")] {
        let d = dir.display().to_string();
        let (code, stdout, err) = cli(&["explore", &example("gcn.ff"), "--hw", "ideal,rda", "--out", &d, "-j", jobs]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("groups       132 simulated"), "jobs {jobs}: {stdout}");
    }
    for f in ["results.csv", "report.md", "pareto-cycles-bytes.svg"] {
        let a = std::fs::read(one.join(f)).unwrap();
        let b = std::fs::read(three.join(f)).unwrap();
        assert!(a == b, "{f} differs between --jobs 1 and --jobs 3");
    }
    // The log holds the same points in the same order; only wall times differ.
    let strip = |d: &Path| -> Vec<serde_json::Value> {
        records(d)
            .0
            .into_iter()
            .map(|mut r| {
                r["wall_seconds"] = serde_json::Value::Null;
                r
            })
            .collect()
    };
    assert_eq!(strip(&one), strip(&three));
    refused(&["explore", &example("gcn.ff"), "--out", &one.display().to_string(), "-j", "0"], 2, &["--jobs"]);
    for d in [one, three] {
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! `fuseflow explore` with the `par` and `block` axes: points equal `run --par` / `run
//! --block`, groups are cached per lanes and block size, a group a request does not fit runs
//! unchanged and says so, the estimate models lanes and tiles, bad values are refused in one
//! line.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{cli, examples_dir};

fn example(name: &str) -> String {
    examples_dir().join(name).display().to_string()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseflow-explore-axes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Every record of `dir/points.jsonl` by key.
fn records(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("points.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| (r["key"].as_str().unwrap().to_string(), r))
        .collect()
}

/// `fuseflow run --json` with `extra` arguments.
fn run_json(fusion: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "--fusion", fusion, "--json"];
    args.extend(extra);
    let bigbird = example("bigbird_attention.ff");
    args.insert(1, &bigbird);
    let (code, json, err) = cli(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&json).unwrap()
}

#[test]
fn par_and_block_points_equal_runs_and_groups_are_cached_per_variant() {
    let out = scratch("equal");
    let dir = out.display().to_string();
    let bigbird = example("bigbird_attention.ff");
    let base = ["explore", &bigbird, "--out", &dir, "--par", "none", "--par", "h=2", "--block", "none", "--block", "8"];
    let mut args = base.to_vec();
    args.extend(["--partitions", "full;unfused"]);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // 2 partitions × 2 lane choices × 2 block sizes; each of the 6 distinct groups once per
    // variant.
    assert!(stdout.contains("8 selected, 0 already done, 8 run now (0 failed)"), "{stdout}");
    assert!(stdout.contains("groups       24 simulated, 0 from the cache"), "{stdout}");
    let recs = records(&out);
    assert_eq!(recs.len(), 8);
    let ids: Vec<u64> = recs.values().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.iter().copied().collect::<std::collections::BTreeSet<_>>().len(), 8);
    // `run --fusion unfused` runs the masked softmax's steps apart; a sweep's "unfused" is
    // every statement as written alone (the built-in one group), as `--fusion 0,1,2,3,4`.
    for key_fusion in ["0-4", "0,1,2,3,4"] {
        for (par, block) in [(None, None), (Some("h=2"), None), (None, Some("8")), (Some("h=2"), Some("8"))] {
            let mut key = format!("fusion={key_fusion} order=default hw=ideal");
            let mut extra = Vec::new();
            if let Some(p) = par {
                key.push_str(&format!(" par={p}"));
                extra.extend(["--par", p]);
            }
            if let Some(b) = block {
                key.push_str(&format!(" block={b}"));
                extra.extend(["--block", b]);
            }
            let r = &recs[&key];
            assert_eq!(r["status"], "verified", "{r}");
            assert_eq!(r["par"].as_str(), par, "{key}");
            assert_eq!(r["block"].as_u64().map(|b| b.to_string()).as_deref(), block, "{key}");
            let run = run_json(key_fusion, &extra);
            for k in ["cycles", "flops", "offchip_bytes"] {
                assert_eq!(r[k], run[k], "{key}: {k}");
            }
            // Each group says what it ran with: the same as the run's group.
            let groups = r["groups"].as_array().unwrap();
            let run_groups = run["groups"].as_array().unwrap();
            assert_eq!(groups.len(), run_groups.len());
            for (g, rg) in groups.iter().zip(run_groups) {
                assert_eq!(g["cycles"], rg["cycles"], "{key}");
                assert_eq!(g["block"], rg["block"], "{key}: group {}", g["statements"]);
                assert_eq!(g["par"].as_str(), par, "{key}: every statement iterates h");
            }
        }
    }
    // The scalar group 0 (Q·Kᵀ: no sparse operand) runs unblocked in a blocked point, and says so.
    let unfused_blocked = &recs["fusion=0,1,2,3,4 order=default hw=ideal block=8"];
    let g0 = &unfused_blocked["groups"][0];
    assert!(g0.get("block").is_none(), "{g0}");
    assert_eq!(unfused_blocked["groups"][1]["block"], 8, "{unfused_blocked}");
    // A rerun with another partition simulates only its new group per variant (0-1) and takes
    // the others (2, 3, 4) from the cache.
    let mut args = base.to_vec();
    args.extend(["--partitions", "0-1,2,3,4"]);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("groups       4 simulated, 12 from the cache"), "{stdout}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_lane_request_skips_groups_that_do_not_iterate_its_index() {
    let out = scratch("skip");
    let dir = out.display().to_string();
    // Only statements 0 (Q·Kᵀ, over e) and 4 (P·V, writing e) iterate e.
    let (code, stdout, stderr) =
        cli(&["explore", &example("bigbird_attention.ff"), "--out", &dir, "--partitions", "unfused", "--par", "e=2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let recs = records(&out);
    let r = &recs["fusion=0,1,2,3,4 order=default hw=ideal par=e=2"];
    assert_eq!(r["status"], "verified", "{r}");
    let applied: Vec<Option<&str>> = r["groups"].as_array().unwrap().iter().map(|g| g["par"].as_str()).collect();
    assert_eq!(applied, vec![Some("e=2"), None, None, None, Some("e=2")]);
    let run = run_json("0,1,2,3,4", &["--par", "e=2"]);
    assert_eq!(r["cycles"], run["cycles"]);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_estimate_divides_work_over_lanes_and_counts_tiles() {
    let est = |extra: &[&str]| -> f64 {
        let bigbird = example("bigbird_attention.ff");
        let mut args = vec!["estimate", &bigbird, "--fusion", "full", "--json"];
        args.extend(extra);
        let (code, json, err) = cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["estimate"]["cycles"].as_f64().unwrap()
    };
    let one = est(&[]);
    let two = est(&["--par", "h=2"]);
    let four = est(&["--par", "h=2,i=2"]);
    // Every token of the fused kernel flows below h (and i): the busiest lane sees half (a
    // quarter) of them; what stays single (the co-iteration of h, the gathers) keeps the
    // ratio from being exact.
    assert!(two < 0.6 * one && two > 0.45 * one, "h=2: {two} vs {one}");
    assert!(four < 0.35 * one && four > 0.2 * one, "h=2,i=2: {four} vs {one}");
    // Blocked: one token per 8×8 tile instead of one per value.
    let blocked = est(&["--block", "8"]);
    assert!(blocked < one / 4.0, "block 8: {blocked} vs {one}");
}

/// One line on stderr, exit code 2, and every needle in it.
fn refused(args: &[&str], needles: &[&str]) {
    let (c, stdout, stderr) = cli(args);
    assert_eq!(c, 2, "{args:?}: {stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
    }
}

#[test]
fn bad_par_and_block_values_are_refused_in_one_line() {
    let d = scratch("bad");
    std::fs::create_dir_all(&d).unwrap();
    let out = d.join("out").display().to_string();
    let gcn = example("gcn.ff");
    let space = d.join("space.toml");
    let sp = space.display().to_string();
    std::fs::write(&space, "hw = \"ideal\"\npar = [\"none\", \"q=4\"]\n").unwrap();
    refused(
        &["explore", &gcn, "--space", &sp, "--out", &out],
        &["space.toml:2:1: axis `par`: value \"q=4\": no statement iterates index q (the program's indices: c, f, h, i, k)"],
    );
    refused(&["explore", &gcn, "--par", "none", "--par", "q=4", "--out", &out], &["--par: value \"q=4\"", "index q"]);
    refused(
        &["explore", &gcn, "--par", "i=0", "--out", &out],
        &["--par: \"i=0\": lane count \"0\" of i is impossible"],
    );
    refused(&["explore", &gcn, "--block", "1", "--out", &out], &["--block: \"1\" is impossible"]);
    refused(&["explore", &gcn, "--block", "x", "--out", &out], &["--block: \"x\" is impossible"]);
    std::fs::write(&space, "block = [8, 0]\n").unwrap();
    refused(&["explore", &gcn, "--space", &sp, "--out", &out], &["space.toml:1:1: axis `block`: \"0\" is impossible"]);
    refused(&["estimate", &gcn, "--par", "q=2"], &["--par: value \"q=2\"", "index q"]);
    assert!(!Path::new(&out).join("points.jsonl").exists(), "nothing ran");
    std::fs::remove_dir_all(&d).unwrap();
}

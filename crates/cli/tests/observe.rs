//! Hardware flags and observability on the command line: `--hw`, `--set`, `--memory`,
//! `--stats`, `--trace`, `--dot`, and the deadlock diagnosis.

mod common;

use std::collections::BTreeMap;

use common::{cli, example_path, fails_with, json, tmpdir, write};
use serde_json::Value;

/// `fuseflow run PROGRAM args... --json`, which must verify.
fn run_json(program: &str, args: &[&str]) -> Value {
    let mut all = vec!["run", program, "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(&all);
    assert_eq!(code, 0, "{all:?}: {err}");
    let v = json(&out);
    assert_eq!(v["verified"], Value::Bool(true), "{all:?}");
    v
}

fn sum_of(v: &Value, keys: &[&str]) -> u64 {
    keys.iter().map(|k| v[*k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"))).sum()
}

fn read_json(path: &std::path::Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn hardware_flags_choose_the_machine() {
    let gus = example_path("spmm_gustavson.ff");
    let ideal = run_json(&gus, &[]);
    assert_eq!(ideal["hardware"]["name"], "ideal");
    assert_eq!(ideal["hardware"]["memory"]["enabled"], false);
    assert_eq!(ideal["bandwidth_utilisation"], Value::Null);
    assert_eq!(ideal["tensors"], Value::Null);

    // rda: 16-deep FIFOs and the memory model, with per-tensor traffic and utilisation.
    let rda = run_json(&gus, &["--hw", "rda"]);
    assert_eq!(rda["hardware"]["name"], "rda");
    assert_eq!(rda["hardware"]["fifo_depth"], 16);
    let u = rda["bandwidth_utilisation"].as_f64().unwrap();
    assert!(u > 0.0 && u <= 1.0, "{u}");
    let tensors = rda["tensors"].as_object().unwrap();
    assert!(["A", "B", "X"].iter().all(|t| tensors.contains_key(*t)), "{tensors:?}");
    let moved: u64 = tensors.values().map(|t| t["mem_bytes"].as_u64().unwrap()).sum();
    assert_eq!(moved, rda["mem_bytes"].as_u64().unwrap());
    assert!(rda["cycles"].as_u64() > ideal["cycles"].as_u64());
    let g = &rda["groups"][0];
    assert_eq!(g["mem_bytes"], rda["mem_bytes"]);
    assert!(g["tensors"].is_object() && g["bandwidth_utilisation"].as_f64().is_some(), "{g}");

    // --memory ideal switches the model off: the cycles of 16-deep channels alone.
    let off = run_json(&gus, &["--hw", "rda", "--memory", "ideal"]);
    assert_eq!(off["hardware"]["memory"]["enabled"], false);
    assert_eq!(off["bandwidth_utilisation"], Value::Null);
    assert_eq!(off["cycles"], run_json(&gus, &["--fifo-depth", "16"])["cycles"]);
    // ... and `model` switches it on, here with rda's memory on the ideal preset's channels.
    let on = run_json(&gus, &["--memory", "model"]);
    assert_eq!(on["cycles"], run_json(&gus, &["--hw", "rda", "--set", "fifo_depth=unbounded"])["cycles"]);

    // Precedence: preset, then --set, then --fifo-depth.
    let set = run_json(&gus, &["--hw", "rda", "--set", "fifo_depth=4", "--set", "memory.channels=4"]);
    assert_eq!(set["hardware"]["fifo_depth"], 4);
    assert_eq!(set["hardware"]["memory"]["channels"], 4);
    let both = run_json(&gus, &["--hw", "rda", "--set", "fifo_depth=4", "--fifo-depth", "8"]);
    assert_eq!(both["hardware"]["fifo_depth"], 8);
    assert_eq!(both["cycles"], run_json(&gus, &["--hw", "rda", "--set", "fifo_depth=8"])["cycles"]);

    // A file, named after its stem.
    let d = tmpdir("hwfile");
    let file = write(&d, "mine.toml", "base = \"rda\"\nfifo_depth = 8\n");
    let mine = run_json(&gus, &["--hw", &file]);
    assert_eq!(mine["hardware"]["name"], "mine");
    assert_eq!(mine["cycles"], both["cycles"]);

    // The text summary names the machine and the memory traffic.
    let (code, out, err) = cli(&["run", &gus, "--hw", "rda", "--set", "memory.channels=8"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hardware     rda + memory.channels=8 (fifo depth 16, memory model 8 channels"), "{out}");
    for line in ["flops        ", "offchip      ", "memory       ", "  tensor B ", "bandwidth utilisation"] {
        assert!(out.contains(line), "{line:?} missing: {out}");
    }
    let (_, out, _) = cli(&["run", &gus]);
    assert!(out.contains("hardware     ideal (fifo depth unbounded, ideal memory)"), "{out}");
    assert!(out.contains("flops        ") && out.contains("offchip      ") && !out.contains("memory    "), "{out}");
}

#[test]
fn bad_hardware_fails_with_one_line() {
    let gus = example_path("spmm_gustavson.ff");
    let d = tmpdir("badhw");
    let syntax = write(&d, "syntax.toml", "[memory\nchannels = 8\n");
    let key = write(&d, "key.toml", "[memory]\nchanels = 8\n");
    let value = write(&d, "value.toml", "fifo_depth = 0\n");
    let missing = d.join("missing.toml").to_string_lossy().to_string();
    for cmd in ["run", "bench"] {
        let prefix: Vec<&str> = if cmd == "run" { vec!["run", &gus] } else { vec!["bench"] };
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (vec!["--hw", "tpu"], vec!["--hw", "unknown hardware preset `tpu`", "ideal, comal, rda"]),
            (vec!["--hw", &missing], vec!["missing.toml", "cannot read"]),
            (vec!["--hw", &syntax], vec!["syntax.toml", "line 1, column"]),
            (vec!["--hw", &key], vec!["key.toml", "key `memory.chanels`"]),
            (vec!["--hw", &value], vec!["value.toml", "key `fifo_depth`"]),
            (vec!["--set", "nope=1"], vec!["--set", "key `nope`"]),
            (vec!["--set", "memory.channels=0"], vec!["key `memory.channels`", "got 0"]),
            (vec!["--set", "memory.sharing=fair"], vec!["key `memory.sharing`"]),
            (vec!["--set", "fifo_depth"], vec!["not key=value"]),
            (vec!["--memory", "fast"], vec!["fast"]),
        ];
        for (args, needles) in cases {
            let mut all = prefix.clone();
            all.extend(args);
            fails_with(&all, &needles);
        }
    }
    fails_with(&["run", &gus, "--hw", "rda", "--fifo-depth", "0"], &["fifo-depth"]);
    fails_with(&["run", &gus, "--trace", "/dev/null", "--trace-limit", "0"], &["--trace-limit"]);
    fails_with(&["run", &gus, "--stats", &d.join("no/such/dir.json").to_string_lossy()], &["dir.json", "cannot write"]);
}

#[test]
fn stats_count_every_node_of_every_group() {
    let d = tmpdir("stats");
    let path = d.join("stats.json");
    let p = path.to_string_lossy().to_string();
    let gcn = example_path("gcn.ff");
    let (code, out, err) = cli(&["run", &gcn, "--fusion", "partial", "--hw", "rda", "--stats", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("stats        {p} (")), "{out}");
    let report = run_json(&gcn, &["--fusion", "partial", "--hw", "rda"]);
    let s = read_json(&path);
    assert_eq!(s["schema"], "fuseflow-stats/1");
    assert_eq!(s["hardware"]["name"], "rda");
    assert_eq!(s["cycles"], report["cycles"]);
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let mut start = 0;
    for (g, r) in groups.iter().zip(report["groups"].as_array().unwrap()) {
        assert_eq!(g["statements"], r["statements"]);
        assert_eq!(g["cycles"], r["cycles"]);
        assert_eq!(g["start_cycle"].as_u64().unwrap(), start);
        start += g["cycles"].as_u64().unwrap();
        let nodes = g["nodes"].as_array().unwrap();
        let prims: u64 = r["primitives"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(nodes.len() as u64, prims);
        let sum = |key: &str| nodes.iter().map(|n| n[key].as_u64().unwrap()).sum::<u64>();
        // Every channel has one producer and one consumer: what is sent is received.
        assert_eq!(sum("tokens_in"), r["tokens"].as_u64().unwrap());
        assert_eq!(sum("tokens_out"), r["tokens"].as_u64().unwrap());
        assert_eq!(sum("ops"), r["flops"].as_u64().unwrap());
        assert_eq!(sum("bytes_read"), r["bytes_read"].as_u64().unwrap());
        assert_eq!(sum("mem_bytes"), r["mem_bytes"].as_u64().unwrap());
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(n["id"].as_u64(), Some(i as u64));
            assert!(n["kind"].is_string() && n["op"].is_string() && n["name"].is_string());
            assert_eq!(n["busy_cycles"], n["fires"], "II 1: {n}");
            let u = n["utilisation"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&u), "{n}");
            assert!(n["finish_cycle"].as_u64() <= g["cycles"].as_u64(), "{n}");
            // A node's clock advances only by fires and stalls.
            let clock = sum_of(n, &["busy_cycles", "stall_in_cycles", "stall_out_cycles"]);
            assert_eq!(Some(clock), n["finish_cycle"].as_u64(), "{n}");
            for key in ["stall_in_cycles", "stall_out_cycles", "mem_requests"] {
                assert!(n[key].is_u64(), "{key}: {n}");
            }
        }
        let kinds: Vec<&str> = nodes.iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"val_write"), "{kinds:?}");
    }
    // Busy cycles are fires × II.
    let gus = example_path("spmm_gustavson.ff");
    let slow = d.join("slow.json");
    let (code, _, err) = cli(&["run", &gus, "--set", "timing.ii=2", "--stats", &slow.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    for n in read_json(&slow)["groups"][0]["nodes"].as_array().unwrap() {
        assert_eq!(n["busy_cycles"].as_u64(), n["fires"].as_u64().map(|f| 2 * f), "{n}");
    }
}

/// Reads a trace file and checks its structure; returns its "X" events.
fn check_trace(path: &std::path::Path) -> (Value, Vec<Value>) {
    let t = read_json(path);
    assert_eq!(t["displayTimeUnit"], "ns");
    assert_eq!(t["otherData"]["time_unit"], "cycle");
    let events = t["traceEvents"].as_array().unwrap();
    let mut named: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut processes = BTreeMap::new();
    let mut spans = Vec::new();
    for e in events {
        match e["ph"].as_str().unwrap() {
            "M" => match e["name"].as_str().unwrap() {
                "thread_name" => {
                    let name = e["args"]["name"].as_str().unwrap().to_string();
                    let tid = e["tid"].as_u64().unwrap();
                    assert!(name.starts_with(&format!("n{tid} ")), "{name}");
                    named.insert((e["pid"].as_u64().unwrap(), tid), name);
                }
                "process_name" => {
                    processes.insert(e["pid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_string());
                }
                "process_sort_index" | "thread_sort_index" => {}
                other => panic!("unexpected metadata {other}"),
            },
            "X" => spans.push(e.clone()),
            other => panic!("unexpected phase {other}"),
        }
    }
    let groups = t["otherData"]["groups"].as_array().unwrap();
    assert_eq!(processes.len(), groups.len());
    for e in &spans {
        let (pid, tid) = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        let track = named.get(&(pid, tid)).unwrap_or_else(|| panic!("no thread_name for {e}"));
        assert!(track.contains(e["name"].as_str().unwrap()), "track {track} for {e}");
        let g = &groups[pid as usize];
        let (ts, dur) = (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap());
        let (start, cycles) = (g["start_cycle"].as_u64().unwrap(), g["cycles"].as_u64().unwrap());
        assert!(ts >= start && ts + dur <= start + cycles, "{e} outside group {g}");
        let fires = e["args"]["fires"].as_u64().unwrap();
        assert!(fires > 0 && e["args"]["busy"].as_u64().unwrap() <= dur, "{e}");
    }
    assert_eq!(t["otherData"]["spans"].as_u64(), Some(spans.len() as u64));
    (t, spans)
}

#[test]
fn trace_is_a_chrome_trace_of_every_fire() {
    let d = tmpdir("trace");
    let gcn = example_path("gcn.ff");
    let path = d.join("trace.json");
    let stats = d.join("stats.json");
    let (code, out, err) = cli(&[
        "run",
        &gcn,
        "--fusion",
        "partial",
        "--fifo-depth",
        "4",
        "--trace",
        &path.to_string_lossy(),
        "--stats",
        &stats.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("trace        ") && !out.contains("TRUNCATED"), "{out}");
    let (t, spans) = check_trace(&path);
    assert_eq!(t["otherData"]["truncated"], false);
    assert_eq!(t["otherData"]["groups"].as_array().unwrap().len(), 2);
    // Untruncated, the spans account for every fire of every node, and a node's spans do not
    // overlap.
    let s = read_json(&stats);
    for (pid, g) in s["groups"].as_array().unwrap().iter().enumerate() {
        for n in g["nodes"].as_array().unwrap() {
            let mut mine: Vec<(u64, u64, u64)> = spans
                .iter()
                .filter(|e| e["pid"].as_u64() == Some(pid as u64) && e["tid"] == n["id"])
                .map(|e| {
                    let ts = e["ts"].as_u64().unwrap();
                    (ts, ts + e["dur"].as_u64().unwrap(), e["args"]["fires"].as_u64().unwrap())
                })
                .collect();
            mine.sort();
            assert_eq!(mine.iter().map(|m| m.2).sum::<u64>(), n["fires"].as_u64().unwrap(), "group {pid} {n}");
            assert!(mine.windows(2).all(|w| w[0].1 <= w[1].0), "overlapping spans of {n}: {mine:?}");
        }
    }
    // Deterministic: the same run writes the same bytes.
    let again = d.join("again.json");
    let (code, _, err) =
        cli(&["run", &gcn, "--fusion", "partial", "--fifo-depth", "4", "--trace", &again.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&path).unwrap() == std::fs::read(&again).unwrap(), "traces differ");
}

#[test]
fn trace_limit_caps_the_trace() {
    let d = tmpdir("cap");
    let path = d.join("trace.json");
    let p = path.to_string_lossy().to_string();
    let gcn = example_path("gcn.ff");
    let (code, out, err) = cli(&["run", &gcn, "--fusion", "partial", "--trace", &p, "--trace-limit", "10"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TRUNCATED at --trace-limit 10"), "{out}");
    let (t, spans) = check_trace(&path);
    assert_eq!(spans.len(), 10);
    assert_eq!(t["otherData"]["truncated"], true);
    assert_eq!(t["otherData"]["span_limit"], 10);
    assert!(t["otherData"]["dropped_spans"].as_u64().unwrap() > 0);
    // --json reports it too.
    let v = run_json(&gcn, &["--fusion", "partial", "--trace", &p, "--trace-limit", "10"]);
    assert_eq!(v["trace"]["truncated"], true);
    assert_eq!(v["trace"]["spans"], 10);
    // A limit the run stays under records everything.
    let v = run_json(&gcn, &["--fusion", "partial", "--trace", &p, "--trace-limit", "1000000"]);
    assert_eq!(v["trace"]["truncated"], false);
    let all = v["trace"]["spans"].as_u64().unwrap();
    assert!(all > 10);
    let v = run_json(&gcn, &["--fusion", "partial", "--trace", &p, "--trace-limit", &all.to_string()]);
    assert_eq!((v["trace"]["spans"].as_u64(), v["trace"]["truncated"].as_bool()), (Some(all), Some(false)));
}

#[test]
fn dot_is_annotated_per_group() {
    let d = tmpdir("dot");
    let one = d.join("gus.dot");
    let (code, out, err) = cli(&["run", &example_path("spmm_gustavson.ff"), "--dot", &one.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("dot          {}", one.display())), "{out}");
    let text = std::fs::read_to_string(&one).unwrap();
    assert!(text.starts_with("digraph") && text.contains("labelloc=t") && text.contains(" cycles\";"), "{text}");
    let busy = text.matches("busy ").count();
    assert_eq!(busy, text.matches("fillcolor=").count());
    assert_eq!(busy, text.lines().filter(|l| l.contains("[label=\"n")).count());
    assert!(text.contains("tokens in "), "{text}");

    let many = d.join("gcn.dot");
    let (code, out, err) =
        cli(&["run", &example_path("gcn.ff"), "--fusion", "partial", "--dot", &many.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(!many.exists());
    for g in 0..2 {
        let f = d.join(format!("gcn.g{g}.dot"));
        assert!(out.contains(&f.display().to_string()), "{out}");
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(&format!("label=\"group {g}: ")), "{text}");
    }
}

#[test]
fn simulate_takes_the_same_hardware_and_outputs() {
    let d = tmpdir("simulate");
    let export = d.join("export");
    let ex = export.to_string_lossy().to_string();
    let (code, _, err) = cli(&["compile", &example_path("spmv.ff"), "--emit", "comal", "--out", &ex]);
    assert_eq!(code, 0, "{err}");
    let graph = export.join("graph.bin").to_string_lossy().to_string();
    let stats = d.join("s.json").to_string_lossy().to_string();
    let trace = d.join("t.json");
    let dot = d.join("g.dot");
    let (code, out, err) = cli(&[
        "simulate",
        "--comal",
        &graph,
        "--data",
        &ex,
        "--json",
        "--hw",
        "comal",
        "--set",
        "memory.channels=4",
        "--stats",
        &stats,
        "--trace",
        &trace.to_string_lossy(),
        "--dot",
        &dot.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let direct = run_json(&example_path("spmv.ff"), &["--hw", "comal", "--set", "memory.channels=4"]);
    assert_eq!(v["cycles"], direct["cycles"]);
    assert_eq!(v["hardware"], direct["hardware"]);
    assert_eq!(v["offchip_bytes"], direct["offchip_bytes"]);
    assert_eq!(v["bandwidth_utilisation"], direct["bandwidth_utilisation"]);
    assert_eq!(v["tensors"], direct["tensors"]);
    assert_eq!(read_json(std::path::Path::new(&stats))["groups"][0]["cycles"], v["cycles"]);
    let (t, spans) = check_trace(&trace);
    assert!(!spans.is_empty() && t["otherData"]["truncated"] == false);
    assert!(std::fs::read_to_string(&dot).unwrap().contains("busy "));
    // Text: the machine, FLOPs and off-chip bytes.
    let (code, out, err) = cli(&["simulate", "--comal", &graph, "--data", &ex, "--hw", "rda", "--fifo-depth", "2"]);
    assert_eq!(code, 0, "{err}");
    for line in ["hardware     rda (fifo depth 2", "flops        ", "offchip      ", "memory       "] {
        assert!(out.contains(line), "{line:?} missing: {out}");
    }
    fails_with(&["simulate", "--comal", &graph, "--data", &ex, "--hw", "tpu"], &["unknown hardware preset `tpu`"]);
    fails_with(&["simulate", "--comal", &graph, "--data", &ex, "--set", "timing.scan.ii=2"], &["timing.scan.ii"]);
}

#[test]
fn deadlock_names_a_cycle_of_channels() {
    // Without FIFO sizing (which would give the look-ahead its slack), depth 1 deadlocks.
    let (code, _, err) =
        cli(&["run", &example_path("spmm_gustavson.ff"), "--fifo-depth", "1", "--set", "fifo_sizing=false"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let at = err.find("cycle of channels: ").unwrap_or_else(|| panic!("{err}"));
    let chain = &err[at + "cycle of channels: ".len()..];
    let chain = &chain[..chain.find(';').unwrap()];
    // `n7 intersect (intersect_k) -[c12 s11 intersect_k.out0 full]-> n10 repeat ... -> n7 ...`
    let hops: Vec<&str> = chain.split(" -[").collect();
    assert!(hops.len() >= 3, "{chain}");
    let node_of = |s: &str| s.split(' ').next().unwrap().to_string();
    let first = node_of(hops[0]);
    let last = node_of(hops.last().unwrap().split("]-> ").nth(1).unwrap());
    assert_eq!(first, last, "the chain closes: {chain}");
    let edges: Vec<&str> = hops[1..].iter().map(|h| h.split("]-> ").next().unwrap()).collect();
    assert!(edges.iter().any(|e| e.ends_with(" full")), "{chain}");
    assert!(edges.iter().all(|e| e.ends_with(" full") || e.ends_with(" empty")), "{chain}");
    assert!(edges.iter().all(|e| e.starts_with('c') && e.contains(" s")), "channels are named: {chain}");
}

#[test]
fn tracing_changes_no_result() {
    // The recorder only observes, and the finer schedule of a traced run changes nothing.
    let d = tmpdir("same");
    for (file, args) in [
        ("spmm_gustavson.ff", vec!["--hw", "rda"]),
        ("spmm_inner.ff", vec!["--fifo-depth", "3"]),
        ("gcn.ff", vec!["--fusion", "partial"]),
        ("sddmm.ff", vec!["--hw", "comal", "--set", "memory.sharing=demand"]),
    ] {
        let plain = d.join("plain.json").to_string_lossy().to_string();
        let traced = d.join("traced.json").to_string_lossy().to_string();
        let trace = d.join("trace.json").to_string_lossy().to_string();
        let p = example_path(file);
        let mut a: Vec<&str> = vec!["run", &p, "--stats", &plain];
        a.extend(&args);
        assert_eq!(cli(&a).0, 0, "{a:?}");
        let mut b: Vec<&str> = vec!["run", &p, "--stats", &traced, "--trace", &trace];
        b.extend(&args);
        assert_eq!(cli(&b).0, 0, "{b:?}");
        assert!(std::fs::read(&plain).unwrap() == std::fs::read(&traced).unwrap(), "{file} {args:?}: stats differ");
    }
}

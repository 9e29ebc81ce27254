//! The Kubernetes Indexed Job manifest (`deploy/k8s-explore-indexed-job.yaml`), checked without
//! a cluster: its fields agree with each other and with the tool's exit codes, and its container
//! command, run once per completion index with the environment Kubernetes gives each pod
//! (`JOB_COMPLETION_INDEX`) and the manifest's own `env`, writes shards into one shared results
//! directory that `fuseflow merge` joins into exactly the local sweep's results.
//!
//! The only change to the command is the program's size: the manifest sweeps the GCN on
//! `cora-synth` (minutes of simulation), the test the GCN at its default shapes. Everything
//! else (binary name aside, and the volume path mapped to a temporary directory) is taken from
//! the manifest as written.

mod common;

use std::path::Path;
use std::process::Command;

use common::{examples_dir, tmpdir};

const MANIFEST: &str = include_str!("../../../deploy/k8s-explore-indexed-job.yaml");

/// The value after `key:` on the first line that has it (trailing comment removed).
fn field(key: &str) -> String {
    let needle = format!("{key}:");
    let line = MANIFEST
        .lines()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .find(|l| l.starts_with(&needle))
        .unwrap_or_else(|| panic!("the manifest has no `{key}:`"));
    let v = &line[needle.len()..];
    v.split('#').next().unwrap_or_default().trim().trim_matches('"').to_string()
}

/// The container's `command:`, a YAML flow sequence of quoted strings (JSON syntax).
fn command() -> Vec<String> {
    let text = field("command");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("command {text:?} is not a flow sequence of strings: {e}"))
}

/// `(name, value)` of the container's `env` entries.
fn env() -> Vec<(String, String)> {
    let lines: Vec<&str> = MANIFEST.lines().collect();
    let mut out = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        if let Some(name) = l.trim_start().strip_prefix("- name: ") {
            let value = lines.get(k + 1).and_then(|v| v.trim_start().strip_prefix("value: "));
            if let Some(v) = value {
                out.push((
                    name.trim().to_string(),
                    v.split('#').next().unwrap_or_default().trim().trim_matches('"').into(),
                ));
            }
        }
    }
    out
}

/// The manifest's fields agree: an Indexed Job, all shards at once, the shard count equal to
/// `completions`, retries per index, and the invalid-configuration exit code (2) failing the
/// job while the retryable one (75) is retried (and resumes).
#[test]
fn the_manifest_is_an_indexed_job_whose_shard_count_is_its_completions() {
    assert_eq!(field("kind"), "Job");
    assert_eq!(field("completionMode"), "Indexed");
    let completions: usize = field("completions").parse().unwrap();
    assert_eq!(field("parallelism"), completions.to_string());
    assert!(field("backoffLimitPerIndex").parse::<u32>().unwrap() >= 1);
    assert_eq!(field("restartPolicy"), "Never", "podFailurePolicy needs restartPolicy Never");
    let env = env();
    let count = env.iter().find(|(n, _)| n == "FUSEFLOW_SHARD_COUNT").map(|(_, v)| v.clone());
    assert_eq!(count, Some(completions.to_string()), "FUSEFLOW_SHARD_COUNT must equal completions");
    assert_eq!(field("action"), "FailJob");
    assert_eq!(field("operator"), "In");
    assert_eq!(field("values"), "[2]", "exit 2 (invalid configuration) fails the job; 75 (retryable) must not");
    let cmd = command();
    assert_eq!(cmd[..2], ["fuseflow", "explore"]);
    assert!(cmd.iter().all(|a| a != "--shard"), "the shard comes from the environment");
}

/// Every pod's command, with its index and the manifest's env, then `fuseflow merge` (the
/// manifest's header names it): the merged results equal a local sweep's byte for byte. A pod
/// of an index past the count, or with a bad flag, exits 2 (the FailJob code).
#[test]
fn the_manifests_pods_merge_to_the_local_sweep() {
    let cmd = command();
    let completions: usize = field("completions").parse().unwrap();
    let dir = tmpdir("k8s-manifest");
    let volume = dir.join("results");
    let mount = "/results";
    // The manifest's arguments, on the default shapes, its volume mapped to a temporary one.
    let args: Vec<String> = {
        let mut a = Vec::new();
        let mut it = cmd[1..].iter();
        while let Some(x) = it.next() {
            if x == "--dataset" {
                assert!(it.next().is_some(), "--dataset without a value");
                continue;
            }
            a.push(match x.strip_prefix(mount) {
                Some(rest) => format!("{}{rest}", volume.display()),
                None => x.clone(),
            });
        }
        a
    };
    let out_pos = args.iter().position(|a| a == "--out").expect("the command names --out") + 1;
    let shared = Path::new(&args[out_pos]).to_path_buf();
    let pod = |index: usize, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fuseflow"));
        // The image's working directory holds the examples.
        c.current_dir(examples_dir().join("..")).args(&args).args(extra);
        c.env_remove("SLURM_ARRAY_TASK_ID").env_remove("SLURM_ARRAY_TASK_COUNT");
        for (name, value) in env() {
            c.env(name, value);
        }
        c.env("JOB_COMPLETION_INDEX", index.to_string());
        c.output().unwrap()
    };
    for index in 0..completions {
        let o = pod(index, &[]);
        assert_eq!(o.status.code(), Some(0), "pod {index}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // What the podFailurePolicy fails the job on: exit 2.
    let o = pod(completions, &[]);
    assert_eq!(o.status.code(), Some(2), "index past the count: {}", String::from_utf8_lossy(&o.stderr));
    let o = pod(0, &["--par", "q=4"]);
    assert_eq!(o.status.code(), Some(2), "a bad flag: {}", String::from_utf8_lossy(&o.stderr));

    let merged = dir.join("merged");
    let m = Command::new(env!("CARGO_BIN_EXE_fuseflow"))
        .args(["merge", &shared.display().to_string(), "--out", &merged.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(m.status.code(), Some(0), "merge: {}", String::from_utf8_lossy(&m.stderr));
    let local = dir.join("local");
    let program: Vec<&String> = args.iter().take_while(|a| a.starts_with("examples/") || *a == "explore").collect();
    let l = Command::new(env!("CARGO_BIN_EXE_fuseflow"))
        .current_dir(examples_dir().join(".."))
        .args(program)
        .args(["--out", &local.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(l.status.code(), Some(0), "local sweep: {}", String::from_utf8_lossy(&l.stderr));
    for f in ["results.csv", "report.md", "report.html", "pareto-cycles-bytes.svg"] {
        let a = std::fs::read(local.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap();
        assert!(a == b, "{f}: the merged pods differ from the local sweep");
    }
    let lines = |d: &Path| std::fs::read_to_string(d.join("points.jsonl")).unwrap().lines().count();
    assert_eq!(lines(&merged), lines(&local));
    assert_eq!(lines(&local), 1024, "every partition of the GCN's 11 statements");
    std::fs::remove_dir_all(&dir).unwrap();
}

//! One graph, whatever the command: `graph` prints, `compile --emit comal` exports and `run`
//! simulates the same graph (same nodes, same cycles), for a single statement and for a
//! fused group, including the repeated view `A(i,j)` that hash-consing builds once.

mod common;

use common::{cli, tmpdir, write};

/// Node lines of `fuseflow graph`'s text dump.
fn printed_nodes(args: &[&str]) -> usize {
    let (code, out, err) = cli(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with('n') && l[1..].starts_with(|c: char| c.is_ascii_digit())
        })
        .count()
}

fn json(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = cli(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Checks printed = exported = simulated for one graph selection (`extra` = `--stmt`/`--fusion`).
fn same_graph(program: &str, extra: &[&str], name: &str) {
    let mut graph_args = vec!["graph", program];
    graph_args.extend_from_slice(extra);
    let printed = printed_nodes(&graph_args);

    let dir = tmpdir(name);
    let out = dir.join("export");
    let mut compile = vec!["compile", program, "--emit", "comal", "--out", out.to_str().unwrap()];
    compile.extend_from_slice(extra);
    let (code, said, err) = cli(&compile);
    assert_eq!(code, 0, "{err}");
    assert!(said.contains(&format!("({printed} nodes")) || said.contains(&format!(", {printed} nodes")), "{said}");
    let bin = out.join("graph.bin");
    let simulated = json(&["simulate", "--comal", bin.to_str().unwrap(), "--data", out.to_str().unwrap(), "--json"]);
    assert_eq!(simulated["nodes"].as_u64(), Some(printed as u64), "{simulated}");

    // `run` simulates the same graph: same node count and cycles for that group.
    let fusion: Vec<&str> = extra.windows(2).find(|w| w[0] == "--fusion").map(|w| w.to_vec()).unwrap_or_default();
    let mut run_args = vec!["run", program, "--json"];
    run_args.extend_from_slice(&fusion);
    let run = json(&run_args);
    let index = extra.windows(2).find(|w| w[0] == "--stmt").map_or(0, |w| w[1].parse::<usize>().unwrap());
    let group = &run["groups"][index];
    let run_nodes: u64 = group["primitives"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(run_nodes, printed as u64, "{group}");
    assert_eq!(group["cycles"], simulated["cycles"], "{group} vs {simulated}");
    assert_eq!(run["verified"], serde_json::Value::Bool(true));
}

#[test]
fn a_repeated_view_is_one_graph_everywhere() {
    let dir = tmpdir("repeated-view");
    let p = write(
        &dir,
        "x.ff",
        "input A[6, 5] dcsr = random(density=0.4)\noutput X[6, 5] dcsr\nX(i,j) = A(i,j) * A(i,j) + A(i,j)\n",
    );
    same_graph(&p, &[], "repeated-view-unfused");
    same_graph(&p, &["--stmt", "0"], "repeated-view-stmt");
}

#[test]
fn a_fused_group_is_one_graph_everywhere() {
    let dir = tmpdir("fused-group");
    let p = write(
        &dir,
        "y.ff",
        "input A[6, 5] dcsr = random(density=0.4)\ninput b[5] dense = random(density=1)\n\
         temp T[6, 5] dcsr\noutput Y[6, 5] dense\n\
         T(i,j) = A(i,j) * A(i,j) + b(j)\nY(i,j) = softmax(j, T(i,j) + A(i,j))\n",
    );
    same_graph(&p, &["--fusion", "full", "--stmt", "0"], "fused-full");
    same_graph(&p, &["--fusion", "0,1", "--stmt", "1"], "fused-second");
}

//! `--order best`: every legal order of every group is simulated (on all cores) and the
//! fastest kept; `--order-budget` keeps the best ones by the compiler's cost estimate; and
//! `--free-layout` frees inputs from their declared mode orders, as in the paper's
//! dataflow-order study of the nested matmul.

mod common;

use common::{cli, example_path, fails_with, json, tmpdir, write};

fn trials(v: &serde_json::Value) -> Vec<(String, u64, u64)> {
    v["order_search"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let order: Vec<String> =
                t["orders"][0].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            (order.join(","), t["cycles"].as_u64().unwrap(), t["rank"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn the_fastest_of_all_legal_orders_is_kept() {
    let nested = example_path("nested_matmul.ff");
    let (code, out, err) = cli(&["run", &nested, "--fusion", "full", "--free-layout", "--order", "best", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let g = &v["groups"][0];
    let all = trials(g);
    // Four index variables and free layouts: every permutation the lowering supports.
    let (_, listed, _) = cli(&["orders", &nested, "--fusion", "full", "--free-layout"]);
    let legal = listed.split_whitespace().filter(|w| w.contains(',')).count();
    assert_eq!(all.len(), legal, "{listed}");
    assert_eq!(g["order_search"]["skipped"], 0);
    let fastest = all.iter().map(|t| t.1).min().unwrap();
    assert_eq!(g["cycles"].as_u64().unwrap(), fastest);
    // Ranks are the estimate's order: each appears once.
    let mut ranks: Vec<u64> = all.iter().map(|t| t.2).collect();
    ranks.sort();
    assert_eq!(ranks, (0..all.len() as u64).collect::<Vec<_>>());
    // Each trial is what a run under that order gives.
    for (order, cycles, _) in all.iter().step_by(5) {
        let (code, out, err) =
            cli(&["run", &nested, "--fusion", "full", "--free-layout", "--order", order, "--json", "-j", "1"]);
        assert_eq!(code, 0, "{order}: {err}");
        assert_eq!(json(&out)["cycles"].as_u64().unwrap(), *cycles, "{order}");
    }
}

#[test]
fn the_budget_keeps_the_best_estimates_and_says_how_many_it_left_out() {
    let nested = example_path("nested_matmul.ff");
    let args = ["run", &nested, "--fusion", "full", "--free-layout", "--order", "best", "--json"];
    let full = json(&cli(&args).1);
    let total = trials(&full["groups"][0]).len();
    let (code, out, err) = cli(&[&args[..], &["--order-budget", "5"]].concat());
    assert_eq!(code, 0, "{err}");
    let g = &json(&out)["groups"][0];
    let some = trials(g);
    assert_eq!(some.len(), 5);
    assert_eq!(g["order_search"]["skipped"].as_u64().unwrap() as usize, total - 5);
    let mut ranks: Vec<u64> = some.iter().map(|t| t.2).collect();
    ranks.sort();
    assert_eq!(ranks, vec![0, 1, 2, 3, 4]);
    // The text report says so too.
    let (_, text, _) =
        cli(&["run", &nested, "--fusion", "full", "--free-layout", "--order", "best", "--order-budget", "5"]);
    assert!(text.contains(&format!("5 orders simulated, {} more legal orders left out", total - 5)), "{text}");
}

#[test]
fn searches_give_the_same_report_on_any_number_of_threads() {
    // Group 2 of the decoder's partial fusion has several legal orders as declared.
    let gpt = example_path("gpt3_decoder.ff");
    let run = |jobs: &str| {
        let (code, out, err) = cli(&["run", &gpt, "--fusion", "partial", "--order", "best", "--json", "-j", jobs]);
        assert_eq!(code, 0, "{err}");
        let mut v = json(&out);
        v["sim_seconds"] = serde_json::Value::Null;
        v["wall_seconds"] = serde_json::Value::Null;
        v["sim_wall_seconds"] = serde_json::Value::Null;
        for g in v["groups"].as_array_mut().expect("groups") {
            g["sim_seconds"] = serde_json::Value::Null;
        }
        v
    };
    let one = run("1");
    assert!(trials(&one["groups"][2]).len() > 1);
    assert_eq!(one, run("2"));
}

#[test]
fn best_is_refused_where_nothing_is_simulated() {
    let add = example_path("add.ff");
    fails_with(&["graph", &add, "--order", "best"], &["--order best", "fuseflow run"]);
    let out = std::env::temp_dir().join(format!("fuseflow-test-{}-best", std::process::id()));
    fails_with(
        &["compile", &add, "--order", "best", "--emit", "comal", "--out", out.to_str().unwrap()],
        &["--order best", "fuseflow run"],
    );
    let (code, _, err) = cli(&["run", &add, "--order", "best", "--order-budget", "0"]);
    assert_eq!(code, 2, "{err}");
}

/// Under `--free-layout`, each output of a fused group has its own order; an input that two
/// of them read keeps its declared layout (one stored copy cannot follow both), so every
/// candidate of the search verifies. Here `W` is read by both outputs under different index
/// names, so an order for one output leaves the other at its default.
#[test]
fn free_layout_keeps_inputs_that_two_outputs_read_in_place() {
    let dir = tmpdir("two-outputs");
    let src = "param I = 5\nparam K = 4\nparam J = 6\n\
               input A[I, K] dense = random(density=1)\n\
               input B[I, J] dense = random(density=1)\n\
               input W[K, J] dense = random(density=1)\n\
               output O1[I, J] dense\noutput O2[I, K] dense\n\
               O1(i,j) = A(i,k) * W(k,j)\nO2(i,m) = B(i,j) * W(m,j)\n";
    let path = write(&dir, "two.ff", src);
    let path = path.as_str();
    let (code, out, err) =
        cli(&["run", path, "--fusion", "full", "--free-layout", "--order", "best", "--order-budget", "100", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let all = v["groups"][0]["order_search"]["trials"].as_array().unwrap().clone();
    assert!(all.len() >= 4, "{out}");
    for t in &all {
        assert_eq!(t["verified"], true, "{t}");
    }
    // W is pinned to its declared (k, j) layout: no order of O1 puts j above k.
    let (_, listed, _) = cli(&["orders", path, "--fusion", "full", "--free-layout"]);
    let o1 = listed.lines().find(|l| l.contains("O1")).unwrap();
    assert!(o1.split_whitespace().filter(|w| w.contains(',')).all(|o| o.find('k') < o.find('j')), "{listed}");
}

/// A fused group whose output sums over `d` with two output indices below it, plus a bias:
/// `--order s,d,h,e` co-iterates the order-2 accumulator's output with the bias, which is
/// legal because every term is dense, and gives the reference's values.
#[test]
fn a_bias_joins_a_complete_order_two_accumulator() {
    let dir = tmpdir("bias-acc2");
    let src = "param S = 4\nparam D = 5\nparam NH = 2\nparam DH = 3\n\
               input L[S, D] dense = random(density=1)\n\
               input Wq[NH, DH, D] dense order(2,0,1) = random(density=1)\n\
               input bq[NH, DH] dense = random(density=1)\n\
               output Q[S, NH, DH] dense\n\
               Q(s,h,e) = L(s,d) * Wq(h,e,d) + bq(h,e)\n";
    let path = write(&dir, "q.ff", src);
    let path = path.as_str();
    let (code, out, err) = cli(&["run", path, "--order", "s,d,h,e", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["verified"], true, "{out}");
    assert!(v["groups"][0]["primitives"]["spacc"].as_u64().unwrap() >= 1, "{out}");
    // The same sum over a sparse operand may leave (h, e) positions out: refused.
    let sparse = src
        .replace("input L[S, D] dense", "input L[S, D] (dense, compressed)")
        .replace("density=1)\ninput Wq", "density=0.3)\ninput Wq");
    let sparse = write(&dir, "sparse.ff", &sparse);
    fails_with(&["run", &sparse, "--order", "s,d,h,e"], &["co-iterated at h before its inner levels are complete"]);
}

//! SpMM under every combination of operand and output formats (row-/column-major, dense and
//! compressed levels) and every order those formats allow.

mod common;

use common::*;

#[test]
fn spmm_format_matrix() {
    let formats = ["dcsr", "dcsc", "csr", "csc", "dense"];
    let mut orders_seen = std::collections::BTreeSet::new();
    let mut runs = 0;
    let mut no_order = 0;
    for fa in formats {
        for fb in formats {
            for fx in formats {
                let src = format!(
                    "input A[9, 7] {fa} = random(density=0.3)\ninput B[7, 8] {fb} = random(density=0.3)\noutput X[9, 8] {fx}\nX(i,j) = A(i,k) * B(k,j)\n"
                );
                let p = parse(&src);
                match fuseflow_compiler::legal_orders(&p, 0, 100, &Default::default()) {
                    Ok(_) => {
                        for (o, _) in run_all_orders(&p, std::path::Path::new("."), None, 11) {
                            orders_seen.insert(o.join(","));
                            runs += 1;
                        }
                    }
                    Err(e) => {
                        // Only a genuine mode-order conflict may leave no order.
                        let msg = e.to_string();
                        assert!(msg.contains("no legal dataflow order"), "{fa} {fb} {fx}: {msg}");
                        no_order += 1;
                    }
                }
            }
        }
    }
    for o in ["i,k,j", "i,j,k", "k,i,j", "j,i,k", "j,k,i", "k,j,i"] {
        assert!(orders_seen.contains(o), "order {o} never exercised");
    }
    assert!(runs >= 90, "{runs} runs");
    assert!(no_order > 0);
}

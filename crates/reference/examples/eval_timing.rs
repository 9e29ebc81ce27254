//! Times the reference evaluator on a few larger kernels:
//! `cargo run --release -p fuseflow-reference --example eval_timing [NAME-FILTER]`.

use std::collections::BTreeMap;
use std::time::Instant;

use fuseflow_ir::{check, parse, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cases = [
        ("SpMM 2000^2 at 1%", "param N = 2000\ninput A[N,N] dcsr = random(density=0.01)\ninput B[N,N] dcsr = random(density=0.01)\noutput X[N,N] dcsr\nX(i,j) = A(i,k) * B(k,j)\n"),
        ("SpMM 200^3 at 10%", "param N = 200\ninput A[N,N] dcsr = random(density=0.1)\ninput B[N,N] dcsr = random(density=0.1)\noutput X[N,N] dcsr\nX(i,j) = A(i,k) * B(k,j)\n"),
        ("MTTKRP 200^3 at 10%, J=16", "param N = 200\ninput B[N,N,N] csf = random(density=0.1)\ninput C[N,16] dense\ninput D[N,16] dense\noutput A[N,16] dense\nA(i,j) = B(i,k,l) * C(k,j) * D(l,j)\n"),
        ("SDDMM 2000^2 at 1%, K=64", "param N = 2000\ninput B[N,N] dcsr = random(density=0.01)\ninput C[N,64] dense\ninput D[64,N] dense\noutput X[N,N] dcsr\nX(i,j) = B(i,j) * C(i,k) * D(k,j)\n"),
        ("Softmax 1000^2 at 1%", "param N = 1000\ninput A[N,N] dcsr = random(density=0.01)\ntemp m[N] dense\ntemp E[N,N] dense\ntemp s[N] dense\noutput Y[N,N] dense\nm(i) = maxr(j, A(i,j))\nE(i,j) = exp(A(i,j) - m(i))\ns(i) = E(i,j)\nY(i,j) = E(i,j) / s(i)\n"),
    ];
    let filter = std::env::args().nth(1).unwrap_or_default();
    for (name, src) in cases.into_iter().filter(|c| c.0.contains(&filter)) {
        let p = check(parse(src, name, &BTreeMap::new())?)?;
        let inputs = fuseflow_ir::load_inputs(&p, std::path::Path::new("."), 1)?;
        let nnz: usize = p.decls.iter().filter(|d| d.role == Role::Input).map(|d| inputs[&d.name].to_coo().nnz()).sum();
        let start = Instant::now();
        let out = fuseflow_reference::evaluate(&p, &inputs)?;
        let took = start.elapsed();
        let out_nnz: usize = out.values().map(|c| c.stored()).sum();
        println!("{name:32} inputs {nnz:>9} nnz  results {out_nnz:>9} nnz  {:>8.1} ms", took.as_secs_f64() * 1e3);
    }
    Ok(())
}

//! Times parsing and translating an MLIR file (release build: `cargo run --release -p
//! fuseflow-mlir --example parse_time -- FILE [RUNS]`): best of RUNS (default 10), each phase.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: parse_time FILE [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let src = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let (mut parse, mut total) = (f64::MAX, f64::MAX);
    let mut error = None;
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let m = fuseflow_mlir::parse(&src, &path);
        let t1 = Instant::now();
        let t = m.and_then(|m| fuseflow_mlir::translate(&m, &path, &fuseflow_mlir::Options::default()));
        let t2 = Instant::now();
        error = t.err();
        parse = parse.min((t1 - t0).as_secs_f64());
        total = total.min((t2 - t0).as_secs_f64());
    }
    if let Some(e) = error {
        println!("translation stopped (timed up to the error): {e}");
    }
    println!(
        "{path}: {} bytes, parse {:.3} ms, parse + translate {:.3} ms (best of {runs})",
        src.len(),
        parse * 1e3,
        total * 1e3
    );
}

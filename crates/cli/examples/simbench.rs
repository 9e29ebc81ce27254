//! `fuseflow bench`'s suite under a hardware preset:
//! `simbench [ideal|mem|comal|rda] [reps] [name filter]`; `SOFT_CAP=n` overrides the soft cap.
//! `mem` is the ideal machine with `rda`'s memory model switched on. Used to profile the
//! simulator (e.g. under callgrind) and to compare ideal and modelled memory.

use std::collections::BTreeMap;
use std::path::Path;

use fuseflow::bench::SUITE;
use fuseflow::{run, RunConfig};
use fuseflow_sim::{HwConfig, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map(String::as_str).unwrap_or("ideal");
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let hw = match preset {
        "mem" => {
            let mut hw = HwConfig::default();
            hw.memory.enabled = true;
            hw
        }
        p => HwConfig::preset(p).expect("preset"),
    };
    let filter = args.get(3).map(String::as_str).unwrap_or("");
    for b in SUITE.iter().filter(|b| b.name.contains(filter)) {
        let prog = fuseflow_ir::parse(b.program, b.name, &BTreeMap::new()).expect("parse");
        let prog = fuseflow_ir::check(prog).expect("check");
        let mut best = f64::MAX;
        let (mut tokens, mut cycles) = (0, 0);
        for rep in 0..reps.max(1) {
            let cfg = RunConfig {
                order: Some(b.order.iter().map(|s| s.to_string()).collect()),
                sim: SimConfig {
                    soft_cap: std::env::var("SOFT_CAP")
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(SimConfig::default().soft_cap),
                    ..hw.to_sim_config()
                },
                verify: rep == 0,
                ..RunConfig::default()
            };
            let r = run(&prog, Path::new("."), &cfg).expect("run");
            assert!(r.verified || rep > 0);
            (tokens, cycles) = (r.tokens, r.cycles);
            best = best.min(r.sim_seconds);
        }
        println!(
            "{preset:6} {:28} tokens {tokens:10} cycles {cycles:9} wall {best:8.4} s {:7.1} M tok/s",
            b.name,
            tokens as f64 / best / 1e6
        );
    }
}

//! Runs the SAM-simulator conformance cases (`tests/data/sam-primitives.json`, vendored; see
//! `tests/data/README.md`) against our primitives.
//!
//! Every case of a primitive we implement must reproduce the SAM simulator's outputs exactly
//! (numbers by value, stop gaps ignored), unless it is listed in [`EXEMPT`]: the places where
//! our semantics deliberately follow a sam-semantics.md **[rec]** rule that differs from the
//! SAM simulator. Exempted cases must really differ (so the table cannot go stale), and the
//! totals are pinned so that cases cannot silently drop out.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::{fmt, run_all_caps, run_writer_all_caps, sam_eq};
use fuseflow_graph::{AluOp, JoinKind, ReduceKind};
use fuseflow_sim::prims::{
    scan::LevelSource, Alu, Array, CrdDrop, Join, LevelWrite, Reduce, RepSig, Repeat, Scan, ValWrite,
};
use fuseflow_sim::{Primitive, SimError, Token, Written};
use serde_json::Value;

/// Primitives of the SAM simulator that we do not have, with the reason.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("array_store", "no array store: FuseFlow writes outputs only through level and value writers"),
    ("bitvector_level_scanner", "no bitvector levels (FuseFlow uses dense and compressed only)"),
    ("bv_chunk", "no bitvector levels"),
    ("bv_drop", "no bitvector levels"),
    ("crd_to_bv", "no bitvector levels"),
    ("intersect_bv", "no bitvector levels"),
    ("crd_hold", "no coordinate holder: our accumulators are hierarchical, not point-form"),
    ("crdpt_converter", "point-form building block; our accumulators are hierarchical"),
    ("spacc1", "point-form accumulator; our Spacc1 is hierarchical (sam-semantics.md §4.11 [rec])"),
    ("spacc2", "point-form accumulator; our Spacc2 is hierarchical (sam-semantics.md §4.11 [rec])"),
    ("spacc1_crdpt", "point-form accumulator building block"),
    ("spacc2_crdpt", "point-form accumulator building block"),
    ("stkn_drop", "no stop-token dropper (only needed by point-form accumulators)"),
    ("empty_fiber_stkn_drop", "no stop-token dropper: stop gaps mark dropped fibers instead"),
    ("split", "no split/flatten (bit-tree) primitives"),
    ("flatten", "no split/flatten (bit-tree) primitives"),
];

/// Output ports that only the SAM simulator has; they are not compared.
const SKIPPED_PORTS: &[(&str, &str)] = &[
    ("crd_skip1", "coordinate-skip feedback hint (SAM-simulator only, one skip-list case)"),
    ("crd_skip2", "coordinate-skip feedback hint (SAM-simulator only, one skip-list case)"),
];

/// A conformance case (or one output port of it) where our [rec] semantics deliberately differ
/// from the SAM simulator.
struct Exemption {
    id: &'static str,
    /// `None`: the case as a whole differs. `Some(port)`: only this port differs; every other
    /// port must still match.
    port: Option<&'static str>,
    reason: &'static str,
}

const INTERSECT_N: &str = "intersect on an N coordinate: the SAM simulator emits N on every output; \
     we treat an operand's [N, S..] fiber as empty, so the output fiber is empty (§4.5 [rec])";
const WRITER_EMPTY_FIBER: &str = "level writer on an empty fiber: the SAM simulator stores no segment \
     for it; we record one seg entry per gap-0 stop, empty fibers included (§4.13 [rec])";

const EXEMPT: &[Exemption] = &[
    Exemption {
        id: "unit-apps/test_unit_mat_mattransmul.py::test_mat_mattransmul_direct[arrs0]::intersectj_17",
        port: None,
        reason: INTERSECT_N,
    },
    Exemption {
        id: "unit-apps/test_unit_mat_residual.py::test_unit_mat_residual_direct[arrs2]::intersectj_10",
        port: None,
        reason: INTERSECT_N,
    },
    Exemption {
        id: "unit-apps/test_unit_mat_residual.py::test_unit_mat_residual_direct[arrs3]::intersectj_10",
        port: None,
        reason: INTERSECT_N,
    },
    Exemption {
        id: "unit-apps/test_unit_mat_residual.py::test_unit_mat_residual_direct[arrs4]::intersectj_10",
        port: None,
        reason: INTERSECT_N,
    },
    Exemption {
        id: "unit-apps/test_unit_mat_elemmul.py::test_unit_mat_elemmul_direct_cc_cc_cc[arrs2]::wrscan_X2",
        port: Some("seg_array"),
        reason: WRITER_EMPTY_FIBER,
    },
    Exemption {
        id: "unit-apps/test_unit_mat_elemmul.py::test_unit_mat_elemmul_direct_cc_cc_cc[arrs3]::wrscan_X2",
        port: Some("seg_array"),
        reason: WRITER_EMPTY_FIBER,
    },
];

/// Pinned totals: 345 cases = passed + exempt + not applicable.
const EXPECT_TOTAL: usize = 345;
const EXPECT_PASSED: usize = 251;
const EXPECT_EXEMPT: usize = 6;
const EXPECT_NOT_APPLICABLE: usize = 88;

fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sam-primitives.json")
}

fn load_cases() -> Vec<Value> {
    let path = cases_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "conformance cases not found at {} ({e}); they are vendored in the repository \
             (see tests/data/README.md) and the conformance test refuses to pass without them.",
            path.display()
        )
    });
    let v: Value = serde_json::from_str(&text).expect("sam-primitives.json is not valid JSON");
    v.as_array().expect("sam-primitives.json must hold a JSON array").clone()
}

/// Value-carrying ports; all others carry coordinates, references or repeat signals.
fn is_val_port(port: &str) -> bool {
    port.starts_with("val")
}

fn token(v: &Value, port: &str) -> Token {
    match v {
        Value::String(s) => match s.as_str() {
            "D" => Token::Done,
            "N" => Token::Empty,
            "R" => Token::Rep,
            "S" => Token::stop(0),
            s => match s.strip_prefix('S').and_then(|l| l.parse().ok()) {
                Some(level) => Token::stop(level),
                None => panic!("unknown token {s:?} on port {port}"),
            },
        },
        Value::Number(n) if is_val_port(port) => Token::Val(n.as_f64().expect("numeric value")),
        Value::Number(n) => {
            let i = n.as_u64().unwrap_or_else(|| panic!("port {port}: {n} is not a coordinate"));
            Token::Idx(u32::try_from(i).expect("coordinate fits u32"))
        }
        other => panic!("unexpected JSON token {other} on port {port}"),
    }
}

fn stream(case: &Value, side: &str, port: &str) -> Vec<Token> {
    let list = case[side][port].as_array().unwrap_or_else(|| panic!("{side} port {port} missing in {}", case["id"]));
    list.iter().map(|t| token(t, port)).collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("u32") as u32).collect()
}

/// What our primitive produced on one output port.
#[derive(Debug)]
enum Got {
    Stream(Vec<Token>),
    Memory(Vec<f64>),
}

/// Runs a streaming primitive (under every channel capacity, which must agree) and names the
/// output ports.
fn streams(
    make: impl Fn() -> Box<dyn Primitive>,
    inputs: Vec<Vec<Token>>,
    out_ports: &[&str],
) -> Result<BTreeMap<String, Got>, SimError> {
    let out = run_all_caps(make, &inputs, out_ports.len())?;
    Ok(out_ports.iter().zip(out).map(|(p, t)| (p.to_string(), Got::Stream(t))).collect())
}

/// Runs one case on our primitive. `None` if the primitive is not applicable.
fn run_case(case: &Value) -> Option<Result<BTreeMap<String, Got>, SimError>> {
    let prim = case["primitive"].as_str().expect("primitive name");
    let cfg = &case["config"];
    let s = |port: &str| stream(case, "inputs", port);
    let join = |kind: JoinKind| {
        let ins = vec![s("crd1"), s("ref1"), s("crd2"), s("ref2")];
        streams(|| Box::new(Join::new(kind, &[1, 1])), ins, &["crd", "ref1", "ref2"])
    };
    let r = match prim {
        "dense_level_scanner" => {
            let n = cfg["dimension"].as_u64().expect("dimension") as u32;
            streams(|| Box::new(Scan::new(LevelSource::Dense(n))), vec![s("ref")], &["crd", "ref"])
        }
        "compressed_level_scanner" => {
            let seg = Arc::new(u32s(&cfg["seg"]));
            let crd = Arc::new(u32s(&cfg["crd"]));
            let make = || -> Box<dyn Primitive> {
                Box::new(Scan::new(LevelSource::Compressed { seg: seg.clone(), crd: crd.clone() }))
            };
            streams(make, vec![s("ref")], &["crd", "ref"])
        }
        "repeat_signal" => streams(|| Box::<RepSig>::default(), vec![s("crd")], &["repsig"]),
        "repeat" => streams(|| Box::<Repeat>::default(), vec![s("ref"), s("repsig")], &["ref"]),
        "intersect" => join(JoinKind::Intersect),
        "union" => join(JoinKind::Union),
        "alu_add" => {
            // (-1)^neg1·a + (-1)^neg2·b with our ALU ops: a+b, a−b, b−a, or −(a+b).
            let (a, b) = (s("val1"), s("val2"));
            let alu = |op: AluOp, ins: Vec<Vec<Token>>| streams(move || Box::new(Alu::new(op)), ins, &["val"]);
            match (cfg["neg1"].as_bool().expect("neg1"), cfg["neg2"].as_bool().expect("neg2")) {
                (false, false) => alu(AluOp::Add, vec![a, b]),
                (false, true) => alu(AluOp::Sub, vec![a, b]),
                (true, false) => alu(AluOp::Sub, vec![b, a]),
                (true, true) => alu(AluOp::Add, vec![a, b]).and_then(|mut m| {
                    let Some(Got::Stream(sum)) = m.remove("val") else { unreachable!() };
                    alu(AluOp::Neg, vec![sum])
                }),
            }
        }
        "alu_mul" => streams(|| Box::new(Alu::new(AluOp::Mul)), vec![s("val1"), s("val2")], &["val"]),
        "reduce" => streams(|| Box::new(Reduce::new(ReduceKind::Sum)), vec![s("val")], &["val"]),
        "crd_drop" => {
            streams(|| Box::<CrdDrop>::default(), vec![s("outer_crd"), s("inner_crd")], &["outer_crd", "inner_crd"])
        }
        "array_vals" => {
            let v = Arc::new(numbers(&cfg["values"]));
            streams(|| Box::new(Array::new(v.clone())), vec![s("ref")], &["val"])
        }
        "value_writer" => run_writer_all_caps(|| Box::<ValWrite>::default(), &[s("val")]).map(|w| {
            let Written::Vals(v) = w else { panic!("value writer wrote {w:?}") };
            BTreeMap::from([("vals_array".to_string(), Got::Memory(v))])
        }),
        "level_writer_compressed" => run_writer_all_caps(|| Box::<LevelWrite>::default(), &[s("crd")]).map(|w| {
            let Written::Level { seg, crd } = w else { panic!("level writer wrote {w:?}") };
            let f = |v: Vec<u32>| Got::Memory(v.into_iter().map(f64::from).collect());
            BTreeMap::from([("seg_array".to_string(), f(seg)), ("crd_array".to_string(), f(crd))])
        }),
        other => {
            assert!(
                NOT_APPLICABLE.iter().any(|(p, _)| *p == other),
                "primitive {other:?} is neither run nor listed as not applicable"
            );
            return None;
        }
    };
    Some(r)
}

/// Compares every expected output port; returns `port → mismatch description` for the ports
/// that differ.
fn compare(case: &Value, got: &BTreeMap<String, Got>) -> BTreeMap<String, String> {
    let mut diffs = BTreeMap::new();
    for (port, want) in case["outputs"].as_object().expect("outputs object") {
        if SKIPPED_PORTS.iter().any(|(p, _)| p == port) {
            continue;
        }
        let Some(g) = got.get(port) else {
            diffs.insert(port.clone(), "port not produced".to_string());
            continue;
        };
        match g {
            Got::Stream(t) => {
                let w = stream(case, "outputs", port);
                if !sam_eq(t, &w) {
                    diffs.insert(port.clone(), format!("got {} expected {}", fmt(t), fmt(&w)));
                }
            }
            Got::Memory(m) => {
                let w = numbers(want);
                if m != &w {
                    diffs.insert(port.clone(), format!("got {m:?} expected {w:?}"));
                }
            }
        }
    }
    diffs
}

#[test]
fn sam_simulator_conformance() {
    let cases = load_cases();
    assert_eq!(cases.len(), EXPECT_TOTAL, "number of conformance cases changed");

    // The exemption table must name real, distinct (case, port) pairs.
    for (i, e) in EXEMPT.iter().enumerate() {
        assert!(!e.reason.is_empty());
        assert!(cases.iter().any(|c| c["id"] == e.id), "exempted case {} does not exist", e.id);
        assert!(
            EXEMPT[..i].iter().all(|f| !(f.id == e.id && (f.port.is_none() || e.port.is_none() || f.port == e.port))),
            "exemption {} listed twice",
            e.id
        );
    }

    let (mut passed, mut exempt, mut not_applicable) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut by_primitive: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in &cases {
        let id = case["id"].as_str().expect("id");
        let prim = case["primitive"].as_str().expect("primitive");
        let Some(result) = run_case(case) else {
            not_applicable += 1;
            assert!(EXEMPT.iter().all(|e| e.id != id), "exempted case {id} is not applicable");
            continue;
        };
        let exemptions: Vec<&Exemption> = EXEMPT.iter().filter(|e| e.id == id).collect();
        let entry = by_primitive.entry(prim.to_string()).or_default();
        match &result {
            Ok(got) => {
                let diffs = compare(case, got);
                if exemptions.is_empty() {
                    if diffs.is_empty() {
                        passed += 1;
                        entry.0 += 1;
                    } else {
                        failures.push(format!("{id}: {diffs:?}"));
                    }
                    continue;
                }
                // An exempted case must really differ, and only where the table says.
                let whole = exemptions.iter().any(|e| e.port.is_none());
                if whole {
                    if diffs.is_empty() {
                        failures.push(format!("{id}: exempted but matches the SAM simulator; remove the exemption"));
                    }
                } else {
                    for e in &exemptions {
                        let port = e.port.expect("port exemption");
                        if !diffs.contains_key(port) {
                            failures.push(format!("{id}: port {port} exempted but matches; remove the exemption"));
                        }
                    }
                    for (port, d) in &diffs {
                        if !exemptions.iter().any(|e| e.port == Some(port.as_str())) {
                            failures.push(format!("{id}: port {port} (not exempted) differs: {d}"));
                        }
                    }
                }
                exempt += 1;
                entry.1 += 1;
            }
            Err(err) => {
                if exemptions.iter().any(|e| e.port.is_none()) {
                    exempt += 1;
                    entry.1 += 1;
                } else {
                    failures.push(format!("{id}: simulation failed: {err}"));
                }
            }
        }
    }

    for (prim, (p, e)) in &by_primitive {
        println!("  {prim:<26} {p:>3} passed {e:>2} exempt");
    }
    for e in EXEMPT {
        println!("  exempt {}{}: {}", e.id, e.port.map(|p| format!(" [{p}]")).unwrap_or_default(), e.reason);
    }
    println!("conformance: {passed} passed, {exempt} exempt, {not_applicable} not applicable");
    assert!(failures.is_empty(), "{} conformance failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(
        (passed, exempt, not_applicable),
        (EXPECT_PASSED, EXPECT_EXEMPT, EXPECT_NOT_APPLICABLE),
        "conformance totals changed (passed, exempt, not applicable)"
    );
    assert_eq!(passed + exempt + not_applicable, EXPECT_TOTAL);
}

/// The exempted intersect cases differ only by the [rec] N rule: replacing every `N`
/// coordinate fiber by an empty one in the SAM simulator's expected outputs gives exactly our
/// outputs.
#[test]
fn intersect_exemptions_are_only_the_n_rule() {
    let cases = load_cases();
    for e in EXEMPT.iter().filter(|e| e.reason == INTERSECT_N) {
        let case = cases.iter().find(|c| c["id"] == e.id).expect("case exists");
        let got = run_case(case).expect("applicable").expect("runs");
        for port in ["crd", "ref1", "ref2"] {
            let want: Vec<Token> = stream(case, "outputs", port).into_iter().filter(|t| *t != Token::Empty).collect();
            let Got::Stream(g) = &got[port] else { panic!("stream port") };
            assert!(sam_eq(g, &want), "{} [{port}]: got {} expected {}", e.id, fmt(g), fmt(&want));
        }
    }
}

/// The exempted writer cases differ only by the extra seg entries of empty fibers: dropping
/// repeated entries from our seg array gives the SAM simulator's.
#[test]
fn writer_exemptions_are_only_empty_fibers() {
    let cases = load_cases();
    for e in EXEMPT.iter().filter(|e| e.reason == WRITER_EMPTY_FIBER) {
        let case = cases.iter().find(|c| c["id"] == e.id).expect("case exists");
        let got = run_case(case).expect("applicable").expect("runs");
        let Got::Memory(seg) = &got["seg_array"] else { panic!("memory port") };
        let mut dedup = seg.clone();
        dedup.dedup();
        assert_eq!(dedup, numbers(&case["outputs"]["seg_array"]), "{}", e.id);
        assert!(dedup.len() < seg.len(), "{}: expected an empty-fiber seg entry", e.id);
    }
}

//! Test support shared by the primitive, conformance and property tests: wiring one primitive
//! between token sources and sinks, a token-list parser and stream comparisons.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use fuseflow_sim::prims::{Sink, Source};
use fuseflow_sim::{Network, Primitive, SimError, Token, Written};

/// Everything one run of a single primitive produced.
#[derive(Debug)]
pub struct Run {
    /// The tokens of every output port, in port order.
    pub outputs: Vec<Vec<Token>>,
    /// What the primitive itself recorded (writers only).
    pub written: Option<Written>,
    /// Total cycles of the run.
    pub cycles: u64,
    /// Final local clock of the primitive under test.
    pub finish: u64,
    /// Arithmetic operations the primitive counted.
    pub ops: u64,
}

/// Wires `Source`s (one per input stream) → `prim` → `Sink`s (one per output port) with every
/// channel of the given capacity, runs the network and returns everything it produced.
pub fn run_full(
    prim: Box<dyn Primitive>,
    inputs: Vec<Vec<Token>>,
    n_outputs: usize,
    capacity: Option<usize>,
) -> Result<Run, SimError> {
    let mut net = Network::new();
    let mut ins = Vec::new();
    for toks in inputs {
        let ch = net.channel(capacity);
        net.add(Box::new(Source::new(toks)), vec![], vec![vec![ch]], (1, 1), "src", "source");
        ins.push(ch);
    }
    let outs: Vec<u32> = (0..n_outputs).map(|_| net.channel(capacity)).collect();
    let node = net.add(prim, ins, outs.iter().map(|&c| vec![c]).collect(), (1, 1), "dut", "dut");
    let sinks: Vec<usize> =
        outs.iter().map(|&c| net.add(Box::<Sink>::default(), vec![c], vec![], (1, 1), "sink", "sink")).collect();
    let cycles = net.run(1 << 32)?;
    let ops = net.stats()[node].ops;
    let finish = net.stats()[node].finish;
    let outputs = sinks
        .into_iter()
        .map(|s| match net.written(s) {
            Some(Written::Tokens(t)) => t,
            other => panic!("sink wrote {other:?}"),
        })
        .collect();
    let written = if n_outputs == 0 { net.written(node) } else { None };
    Ok(Run { outputs, written, cycles, finish, ops })
}

/// Runs one primitive on literal input streams and returns its output streams.
pub fn run_prim(
    prim: Box<dyn Primitive>,
    inputs: Vec<Vec<Token>>,
    n_outputs: usize,
    capacity: Option<usize>,
) -> Result<Vec<Vec<Token>>, SimError> {
    run_full(prim, inputs, n_outputs, capacity).map(|r| r.outputs)
}

/// Runs a writer (a primitive without outputs) and returns what it wrote.
pub fn run_writer(
    prim: Box<dyn Primitive>,
    inputs: Vec<Vec<Token>>,
    capacity: Option<usize>,
) -> Result<Written, SimError> {
    let r = run_full(prim, inputs, 0, capacity)?;
    Ok(r.written.expect("writer recorded nothing"))
}

/// Capacities every `check` runs under: unbounded, and bounded down to a single slot (which
/// exposes look-ahead that needs more buffering than a channel offers).
pub const CAPACITIES: [Option<usize>; 4] = [None, Some(1), Some(2), Some(5)];

/// Runs a fresh primitive from `make` under every capacity in [`CAPACITIES`], asserts that every
/// run gives the same streams (SAM equality and equal gaps), and returns them.
pub fn run_all_caps(
    make: impl Fn() -> Box<dyn Primitive>,
    inputs: &[Vec<Token>],
    n_outputs: usize,
) -> Result<Vec<Vec<Token>>, SimError> {
    let mut first: Option<Vec<Vec<Token>>> = None;
    for cap in CAPACITIES {
        let out = run_prim(make(), inputs.to_vec(), n_outputs, cap)?;
        match &first {
            None => first = Some(out),
            Some(f) => {
                for (p, (a, b)) in f.iter().zip(&out).enumerate() {
                    assert!(
                        exact_eq(a, b),
                        "port {p}: capacity {cap:?} gives {} but unbounded gives {}",
                        fmt(b),
                        fmt(a)
                    );
                }
            }
        }
    }
    Ok(first.expect("at least one capacity"))
}

/// Runs a fresh writer from `make` under every capacity in [`CAPACITIES`], asserts that every
/// run writes the same arrays, and returns them.
pub fn run_writer_all_caps(make: impl Fn() -> Box<dyn Primitive>, inputs: &[Vec<Token>]) -> Result<Written, SimError> {
    let mut first: Option<Written> = None;
    for cap in CAPACITIES {
        let w = run_writer(make(), inputs.to_vec(), cap)?;
        match &first {
            None => first = Some(w),
            Some(f) => assert_eq!(f, &w, "writer output depends on channel capacity {cap:?}"),
        }
    }
    Ok(first.expect("at least one capacity"))
}

/// Runs `make()` on `inputs` (parsed with [`toks`] or [`vals`] by the caller) under every
/// capacity, asserts each output port against the expected token lists (SAM equality) and
/// returns the outputs (to feed the next primitive of a hand-built pipeline).
#[track_caller]
pub fn check(make: impl Fn() -> Box<dyn Primitive>, inputs: &[Vec<Token>], expected: &[&str]) -> Vec<Vec<Token>> {
    let out = match run_all_caps(make, inputs, expected.len()) {
        Ok(o) => o,
        Err(e) => panic!("simulation failed: {e}"),
    };
    for (p, (got, want)) in out.iter().zip(expected).enumerate() {
        assert_toks(got, want, &format!("output port {p}"));
    }
    out
}

/// Like [`check`], but also compares stop gaps (expected lists use `S1'1` for gap 1).
#[track_caller]
pub fn check_exact(make: impl Fn() -> Box<dyn Primitive>, inputs: &[Vec<Token>], expected: &[&str]) -> Vec<Vec<Token>> {
    let out = match run_all_caps(make, inputs, expected.len()) {
        Ok(o) => o,
        Err(e) => panic!("simulation failed: {e}"),
    };
    for (p, (got, want)) in out.iter().zip(expected).enumerate() {
        let want = toks(want);
        assert!(exact_eq(got, &want), "output port {p}:\n  got      {}\n  expected {}", fmt(got), fmt(&want));
    }
    out
}

/// Runs `make()` and asserts that it fails with a protocol error (under every capacity), and
/// returns the message of the unbounded run.
#[track_caller]
pub fn check_protocol_error(make: impl Fn() -> Box<dyn Primitive>, inputs: &[Vec<Token>], n_outputs: usize) -> String {
    let mut msg = String::new();
    for cap in CAPACITIES {
        match run_prim(make(), inputs.to_vec(), n_outputs, cap) {
            Err(SimError::Protocol { message, .. }) => {
                if msg.is_empty() {
                    msg = message;
                }
            }
            Err(other) => panic!("capacity {cap:?}: expected a protocol error, got {other}"),
            Ok(out) => panic!(
                "capacity {cap:?}: expected a protocol error, got outputs {}",
                out.iter().map(|o| fmt(o)).collect::<Vec<_>>().join(" | ")
            ),
        }
    }
    msg
}

fn parse_one(s: &str, as_val: bool) -> Token {
    match s {
        "N" => return Token::Empty,
        "D" => return Token::Done,
        "R" => return Token::Rep,
        "S" => return Token::stop(0),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix('S') {
        let (level, gap) = match rest.split_once('\'') {
            Some((l, g)) => (l, g),
            None => (rest, "0"),
        };
        let level = level.parse().unwrap_or_else(|_| panic!("bad stop token {s:?}"));
        let gap = gap.parse().unwrap_or_else(|_| panic!("bad stop gap in {s:?}"));
        return Token::Stop { level, gap };
    }
    let is_float = s.contains(['.', 'e', 'E', '-']) || s == "inf" || s == "-inf" || s == "NaN";
    if as_val || is_float {
        return Token::Val(s.parse().unwrap_or_else(|_| panic!("bad value token {s:?}")));
    }
    Token::Idx(s.parse().unwrap_or_else(|_| panic!("bad token {s:?}")))
}

fn parse(s: &str, as_val: bool) -> Vec<Token> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| parse_one(t, as_val))
        .collect()
}

/// Parses a token list like `"0, 1, S0, N, S1'1, D"`: integers are coordinates/references
/// (`Idx`), numbers with a sign, point or exponent are values, `Sk` is a stop of level k (gap 0),
/// `Sk'g` a stop with gap g, `N` empty, `D` done, `R` a repeat signal and a bare `S` the
/// repeat-signal stop. Surrounding brackets are allowed.
pub fn toks(s: &str) -> Vec<Token> {
    parse(s, false)
}

/// Like [`toks`] but every number is a value (`Val`), for value streams.
pub fn vals(s: &str) -> Vec<Token> {
    parse(s, true)
}

/// Formats a token list the way [`toks`] parses it.
pub fn fmt(t: &[Token]) -> String {
    let parts: Vec<String> = t.iter().map(|t| t.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// SAM equality of two streams: same length, tokens equal under [`Token::sam_eq`] (stop gaps
/// ignored, numbers compared by value).
pub fn sam_eq(a: &[Token], b: &[Token]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.sam_eq(*y))
}

/// SAM equality plus equal stop gaps.
pub fn exact_eq(a: &[Token], b: &[Token]) -> bool {
    sam_eq(a, b)
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Token::Stop { gap: g, .. }, Token::Stop { gap: h, .. }) => g == h,
            _ => true,
        })
}

/// Asserts that `got` equals the parsed `expected` list under SAM equality.
#[track_caller]
pub fn assert_toks(got: &[Token], expected: &str, what: &str) {
    let want = toks(expected);
    assert!(sam_eq(got, &want), "{what}:\n  got      {}\n  expected {}", fmt(got), fmt(&want));
}

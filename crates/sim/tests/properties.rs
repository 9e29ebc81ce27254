//! Property tests: random well-formed fibertrees are encoded as SAM streams by an independent
//! encoder, pushed through scanner → array and through n-ary union/intersect, and compared
//! (stop gaps included) with the encoding of the directly computed result trees.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{exact_eq, fmt, run_prim, CAPACITIES};
use fuseflow_graph::JoinKind;
use fuseflow_sim::prims::{scan::LevelSource, Array, Join, Scan};
use fuseflow_sim::Token;
use proptest::prelude::*;

/// A fibertree: a leaf fiber of tokens, or a fiber of subtrees (all of the same height).
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Vec<Token>),
    Node(Vec<Tree>),
}

/// Encodes a tree of height `h` (a leaf has height 0). A leaf is its tokens then `S0`; a node
/// is its children's encodings with the last child's closing stop raised by one level; a node
/// without children is a bare `S_h` whose gap is `h` (it holds no fiber of the innermost
/// level: sam-semantics.md §2.2 and our gap annotation).
fn enc(t: &Tree, h: u8, out: &mut Vec<Token>) {
    match t {
        Tree::Leaf(e) => {
            out.extend_from_slice(e);
            out.push(Token::stop(0));
        }
        Tree::Node(ch) if ch.is_empty() => out.push(Token::Stop { level: h, gap: h }),
        Tree::Node(ch) => {
            for c in ch {
                enc(c, h - 1, out);
            }
            let Some(Token::Stop { level, .. }) = out.last_mut() else { unreachable!("encodings end with a stop") };
            *level += 1;
        }
    }
}

/// The full stream of a tree of height `h`, ending in `D`.
fn stream(t: &Tree, h: u8) -> Vec<Token> {
    let mut out = Vec::new();
    enc(t, h, &mut out);
    out.push(Token::Done);
    out
}

/// Replaces every leaf element by `f(element)` (a whole subtree: this adds a level).
fn expand(t: &Tree, f: &impl Fn(Token) -> Tree) -> Tree {
    match t {
        Tree::Leaf(e) => Tree::Node(e.iter().map(|&x| f(x)).collect()),
        Tree::Node(ch) => Tree::Node(ch.iter().map(|c| expand(c, f)).collect()),
    }
}

/// Replaces every leaf element by `f(element)`.
fn map(t: &Tree, f: &impl Fn(Token) -> Token) -> Tree {
    match t {
        Tree::Leaf(e) => Tree::Leaf(e.iter().map(|&x| f(x)).collect()),
        Tree::Node(ch) => Tree::Node(ch.iter().map(|c| map(c, f)).collect()),
    }
}

fn tree(parents: u32, h: u8) -> BoxedStrategy<Tree> {
    let elem = prop_oneof![7 => (0..parents).prop_map(Token::Idx), 1 => Just(Token::Empty)];
    if h == 0 {
        prop::collection::vec(elem, 0..4).prop_map(Tree::Leaf).boxed()
    } else {
        prop::collection::vec(tree(parents, h - 1), 0..4).prop_map(Tree::Node).boxed()
    }
}

#[derive(Debug, Clone)]
enum Level {
    Dense { n: u32, parents: u32 },
    Compressed(Vec<Vec<u32>>),
}

impl Level {
    fn parents(&self) -> u32 {
        match self {
            Level::Dense { parents, .. } => *parents,
            Level::Compressed(f) => f.len() as u32,
        }
    }
    /// The (crd, ref) fiber of parent position `p`.
    fn fiber(&self, p: u32) -> (Vec<u32>, Vec<u32>) {
        match self {
            Level::Dense { n, .. } => ((0..*n).collect(), (0..*n).map(|c| p * n + c).collect()),
            Level::Compressed(f) => {
                let start: usize = f[..p as usize].iter().map(Vec::len).sum();
                (f[p as usize].clone(), (start as u32..(start + f[p as usize].len()) as u32).collect())
            }
        }
    }
    fn positions(&self) -> usize {
        match self {
            Level::Dense { n, parents } => (n * parents) as usize,
            Level::Compressed(f) => f.iter().map(Vec::len).sum(),
        }
    }
    fn source(&self) -> LevelSource {
        match self {
            Level::Dense { n, .. } => LevelSource::Dense(*n),
            Level::Compressed(f) => {
                let mut seg = vec![0];
                let mut crd = Vec::new();
                for fib in f {
                    crd.extend_from_slice(fib);
                    seg.push(crd.len() as u32);
                }
                LevelSource::Compressed { seg: Arc::new(seg), crd: Arc::new(crd) }
            }
        }
    }
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        (0..4u32, 1..6u32).prop_map(|(n, parents)| Level::Dense { n, parents }),
        prop::collection::vec(prop::collection::btree_set(0..12u32, 0..5), 1..6)
            .prop_map(|f| Level::Compressed(f.into_iter().map(|s| s.into_iter().collect()).collect())),
    ]
}

fn value_at(pos: u32) -> f64 {
    pos as f64 * 1.5 + 1.0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// scanner → array on a random level and a random parent reference stream (with empty
    /// fibers at every height and `N` references).
    #[test]
    fn scan_then_array_matches_the_fibertree(
        (lvl, h, input) in level().prop_flat_map(|l| {
            let p = l.parents();
            (Just(l), 0..3u8).prop_flat_map(move |(l, h)| (Just(l), Just(h), tree(p, h)))
        }),
        cap in 0..CAPACITIES.len(),
    ) {
        let cap = CAPACITIES[cap];
        let in_stream = stream(&input, h);
        let scanned = run_prim(Box::new(Scan::new(lvl.source())), vec![in_stream.clone()], 2, cap)
            .map_err(|e| TestCaseError::fail(format!("scan of {}: {e}", fmt(&in_stream))))?;
        // Each reference expands to its fiber; an `N` reference to the fiber [N].
        let lvl_ref = &lvl;
        let child = |pick: usize| move |r: Token| match r {
            Token::Idx(p) => {
                let f = lvl_ref.fiber(p);
                Tree::Leaf((if pick == 0 { f.0 } else { f.1 }).into_iter().map(Token::Idx).collect())
            }
            _ => Tree::Leaf(vec![Token::Empty]),
        };
        let want_crd = stream(&expand(&input, &child(0)), h + 1);
        let want_ref_tree = expand(&input, &child(1));
        let want_ref = stream(&want_ref_tree, h + 1);
        prop_assert!(exact_eq(&scanned[0], &want_crd), "crd of {}:\n got {}\nwant {}", fmt(&in_stream), fmt(&scanned[0]), fmt(&want_crd));
        prop_assert!(exact_eq(&scanned[1], &want_ref), "ref of {}:\n got {}\nwant {}", fmt(&in_stream), fmt(&scanned[1]), fmt(&want_ref));

        let vals: Vec<f64> = (0..lvl.positions() as u32).map(value_at).collect();
        let loaded = run_prim(Box::new(Array::new(Arc::new(vals))), vec![scanned[1].clone()], 1, cap)
            .map_err(|e| TestCaseError::fail(format!("array: {e}")))?;
        let want_vals = stream(
            &map(&want_ref_tree, &|t| match t {
                Token::Idx(q) => Token::Val(value_at(q)),
                _ => Token::Val(0.0),
            }),
            h + 1,
        );
        prop_assert!(exact_eq(&loaded[0], &want_vals), "vals:\n got {}\nwant {}", fmt(&loaded[0]), fmt(&want_vals));
    }
}

/// One operand's row of a join test: its coordinates, and whether an empty row is sent as
/// the fiber `[N]` (an operand absent from an enclosing union) instead of a bare stop.
type Row = (BTreeSet<u32>, bool);

/// Builds a tree of height `h` (1 or 2) over the skeleton (rows per outer fiber) from a leaf
/// per row.
fn skeleton_tree(skel: &[usize], h: u8, leaves: &mut impl Iterator<Item = Tree>) -> Tree {
    let mut fiber = |n: usize| Tree::Node((0..n).map(|_| leaves.next().expect("enough rows")).collect());
    if h == 1 {
        fiber(skel[0])
    } else {
        Tree::Node(skel.iter().map(|&n| fiber(n)).collect())
    }
}

/// A join test: union (or intersect), height, skeleton (rows per outer fiber) and, per operand,
/// its payload count and rows.
type JoinCase = (bool, u8, Vec<usize>, Vec<(u32, Vec<Row>)>);

fn join_case() -> impl Strategy<Value = JoinCase> {
    (any::<bool>(), 1..3u8, 2..4usize)
        .prop_flat_map(|(union, h, n_ops)| {
            let skel = if h == 1 {
                (0..5usize).prop_map(|r| vec![r]).boxed()
            } else {
                prop::collection::vec(0..4usize, 0..4).boxed()
            };
            (Just(union), Just(h), Just(n_ops), skel)
        })
        .prop_flat_map(|(union, h, n_ops, skel)| {
            let rows: usize = skel.iter().sum();
            let row = (prop::collection::btree_set(0..8u32, 0..5), prop::bool::weighted(0.3));
            let op = (1..3u32, prop::collection::vec(row, rows));
            (Just(union), Just(h), Just(skel), prop::collection::vec(op, n_ops), prop::bool::weighted(0.3))
        })
        .prop_map(|(union, h, skel, mut ops, shared)| {
            // Operands with the same rows (a dense level's union with its range): every head
            // lines up, the joins' batch path for aligned operands.
            if shared {
                let rows = ops[0].1.clone();
                for op in &mut ops {
                    op.1 = rows.clone();
                }
            }
            (union, h, skel, ops)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// n-ary union / intersect of random fibertrees (one or two payloads per operand, empty
    /// rows, empty outer fibers, `N` fibers) against the set union / intersection per row.
    #[test]
    fn join_matches_set_operations((union, h, skel, ops) in join_case(), cap in 0..CAPACITIES.len()) {
        let cap = CAPACITIES[cap];
        let n_rows: usize = skel.iter().sum();
        let payload = |p: usize, k: u32, row: usize, c: u32| {
            if k == 0 {
                Token::Idx((p * 1000 + row * 10) as u32 + c)
            } else {
                Token::Val(p as f64 * 100.0 + row as f64 + c as f64 / 10.0)
            }
        };
        // Inputs.
        let mut inputs = Vec::new();
        for (p, (n_pay, rows)) in ops.iter().enumerate() {
            let leaf = |k: Option<u32>| {
                rows.iter().enumerate().map(move |(r, (set, as_n))| {
                    if set.is_empty() && *as_n {
                        Tree::Leaf(vec![Token::Empty])
                    } else {
                        Tree::Leaf(set.iter().map(|&c| k.map_or(Token::Idx(c), |k| payload(p, k, r, c))).collect())
                    }
                })
            };
            inputs.push(stream(&skeleton_tree(&skel, h, &mut leaf(None)), h));
            for k in 0..*n_pay {
                inputs.push(stream(&skeleton_tree(&skel, h, &mut leaf(Some(k))), h));
            }
        }
        // Expected: per row, the union or intersection of the operands' coordinate sets.
        let joined: Vec<Vec<u32>> = (0..n_rows)
            .map(|r| {
                let sets = ops.iter().map(|(_, rows)| &rows[r].0);
                let mut acc: BTreeSet<u32> = ops[0].1[r].0.clone();
                for s in sets {
                    acc = if union { acc.union(s).copied().collect() } else { acc.intersection(s).copied().collect() };
                }
                acc.into_iter().collect()
            })
            .collect();
        let mut want = vec![stream(&skeleton_tree(&skel, h, &mut joined.iter().map(|cs| Tree::Leaf(cs.iter().map(|&c| Token::Idx(c)).collect()))), h)];
        for (p, (n_pay, rows)) in ops.iter().enumerate() {
            for k in 0..*n_pay {
                let leaves = joined.iter().enumerate().map(|(r, cs)| {
                    Tree::Leaf(cs.iter().map(|&c| if rows[r].0.contains(&c) { payload(p, k, r, c) } else { Token::Empty }).collect())
                });
                want.push(stream(&skeleton_tree(&skel, h, &mut leaves.into_iter()), h));
            }
        }
        let kind = if union { JoinKind::Union } else { JoinKind::Intersect };
        let payloads: Vec<u32> = ops.iter().map(|(n, _)| *n).collect();
        let got = run_prim(Box::new(Join::new(kind, &payloads)), inputs.clone(), want.len(), cap)
            .map_err(|e| TestCaseError::fail(format!("{kind:?} of {}: {e}", inputs.iter().map(|i| fmt(i)).collect::<Vec<_>>().join(" | "))))?;
        for (port, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(
                exact_eq(g, w),
                "{:?} port {}\ninputs {}\n got {}\nwant {}",
                kind, port, inputs.iter().map(|i| fmt(i)).collect::<Vec<_>>().join(" | "), fmt(g), fmt(w)
            );
        }
    }
}

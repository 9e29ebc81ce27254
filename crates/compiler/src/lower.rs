//! Lowering one statement under one dataflow order to a SAM graph.
//!
//! The lowering is lazy and memoised, in the manner of FuseFlow's fusion table: the iteration
//! of a subtree at an index variable (`iter`), an operand's reference stream after a variable
//! (`stream`) and a subtree's value stream (`value`) are built on first demand, so only what
//! the output needs becomes hardware and nothing is built twice.
//!
//! Terms used below:
//! - the *space* of a node is the list of variables its value stream is nested over;
//! - a variable is *driven* by an operand that has it (it is scanned), and *broadcast* to an
//!   operand that lacks it (its stream is repeated over the driven coordinates);
//! - a reduction is *transparent* at variables before the reduced one (its operand takes part
//!   in the enclosing co-iteration) and *opaque* after it (its result comes out of a sparse
//!   accumulator and enters the enclosing co-iteration like an operand, carrying its values).

use std::collections::{BTreeSet, HashMap};

use fuseflow_graph::{AluOp, Graph, JoinKind, Op, OutputBinding, ReduceKind, ScalarOp, StreamId, TensorBinding};
use fuseflow_ir::{BinOp, CheckedProgram, ReduceOp, Stmt, UnaryOp};
use fuseflow_tensor::LevelFormat;

use crate::expr::{Kind, Nid, Tree, Var};
use crate::CompileError;

/// Lowering switches.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerOptions {
    /// Replace a dense level's scan-and-intersect by a locate when it meets a sparse operand.
    pub locate: bool,
    /// Insert coordinate droppers before the output writers so that empty fibers are not
    /// stored.
    pub crddrop: bool,
    /// In fused groups, let a row reduction and its broadcast back over the same row share
    /// one pass (FuseFlow's logical index variables): the row is produced once and waits in
    /// the channels while the reduction completes, so channels must hold a row. Off, the
    /// reduction iterates the row in a loop of its own and the row is computed twice, which
    /// finite FIFOs can always sustain.
    pub row_sharing: bool,
    /// Store every program input read once (and the output) in the mode order the dataflow
    /// order wants, instead of its declared one: the layout then constrains no order, as in the
    /// paper's dataflow-order study. The driver converts the data before a kernel runs (not
    /// counted in cycles) and converts outputs back to their declared formats.
    pub free_layout: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions { locate: true, crddrop: true, row_sharing: true, free_layout: false }
    }
}

/// A lowered statement.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Statement index in the program.
    pub stmt: usize,
    /// The dataflow order used.
    pub order: Vec<String>,
    /// The verified graph.
    pub graph: Graph,
}

/// Who owns a payload stream in a co-iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A tensor operand, or a reduction seen as an operand (its value stream).
    Leaf(Nid),
    /// A dense range that a union needs at this variable.
    Range(Nid, Var),
}

#[derive(Debug, Clone)]
struct Iter {
    crd: StreamId,
    payloads: Vec<(Key, StreamId)>,
    /// False for an operand whose deeper streams cannot follow a filter (an accumulator output
    /// at a non-final variable).
    filterable: bool,
    /// Whether every fiber holds every coordinate of the variable's range (dense scans,
    /// ranges, unions with one of them): a join with such an operand cannot filter it away.
    full: bool,
    /// For locate: the dense leaf this iteration scanned, if it is a single dense scan.
    dense_leaf: Option<(Nid, usize)>,
}

struct Lowerer<'a> {
    t: &'a Tree,
    g: Graph,
    pos: Vec<usize>,
    /// Space of every node, sorted by order position.
    space: Vec<Vec<Var>>,
    iter_memo: HashMap<(Nid, Var), Option<Iter>>,
    stream_memo: HashMap<(Key, Var), StreamId>,
    value_memo: HashMap<Nid, StreamId>,
    acc_memo: HashMap<Nid, (Vec<StreamId>, StreamId)>,
    repsig_memo: HashMap<StreamId, StreamId>,
    /// Reference streams that may carry `N` (payloads of a union, and what is derived from them).
    may_n: std::collections::HashSet<StreamId>,
    opts: LowerOptions,
}

type Res<T> = Result<T, String>;

impl<'a> Lowerer<'a> {
    fn name(&self, v: Var) -> &str {
        &self.t.var_names[v]
    }

    fn leaf_tensor(&self, n: Nid) -> String {
        match &self.t.nodes[n].kind {
            Kind::Leaf(l) => l.tensor.clone(),
            Kind::Reduce { var, .. } => format!("sum_{}", self.name(*var)),
            _ => format!("t{n}"),
        }
    }

    /// Space of a payload owner.
    fn key_space(&self, k: Key) -> Vec<Var> {
        match k {
            Key::Leaf(n) => self.space[n].clone(),
            Key::Range(n, w) => self.space[n].iter().copied().filter(|&v| self.pos[v] <= self.pos[w]).collect(),
        }
    }

    fn key_node(&self, k: Key) -> Nid {
        match k {
            Key::Leaf(n) | Key::Range(n, _) => n,
        }
    }

    /// The top of the co-iteration region that contains node `n` at variable `v`.
    fn region_root(&self, mut n: Nid, v: Var) -> Nid {
        while let Some(p) = self.t.nodes[n].parent {
            if !self.space[p].contains(&v) {
                break;
            }
            if let Kind::Reduce { var, .. } = self.t.nodes[p].kind {
                if self.pos[v] >= self.pos[var] {
                    break;
                }
            }
            n = p;
        }
        n
    }

    fn repsig(&mut self, crd: StreamId) -> StreamId {
        if let Some(&s) = self.repsig_memo.get(&crd) {
            return s;
        }
        let s = self.g.add(Op::RepSig, &[crd], "")[0];
        self.repsig_memo.insert(crd, s);
        s
    }

    /// The stream of `k` before variable `v`: after the previous variable of its space, or a
    /// fresh root / the accumulator output when `v` is its first.
    fn prev_stream(&mut self, k: Key, v: Var) -> Res<StreamId> {
        let sp = self.key_space(k);
        let i = sp.iter().position(|&x| x == v).expect("v in space");
        if let Key::Leaf(n) = k {
            if let Kind::Reduce { var: r, .. } = self.t.nodes[n].kind {
                if i == 0 || self.pos[sp[i - 1]] < self.pos[r] {
                    return self.base_value(n);
                }
            }
        }
        if i == 0 {
            let label = match k {
                Key::Leaf(n) => self.leaf_tensor(n),
                Key::Range(_, w) => format!("range_{}", self.name(w)),
            };
            return Ok(self.g.add(Op::Root, &[], format!("{label}_root"))[0]);
        }
        self.stream(k, sp[i - 1])
    }

    /// Whether `k` drives variable `v`.
    fn drives(&self, k: Key, v: Var) -> bool {
        match k {
            Key::Range(_, w) => v == w,
            Key::Leaf(n) => match &self.t.nodes[n].kind {
                Kind::Leaf(l) => l.level_vars.contains(&v),
                Kind::Reduce { var, .. } => self.pos[v] > self.pos[*var] && self.t.nodes[n].vars.contains(&v),
                _ => false,
            },
        }
    }

    /// The stream of `k` after variable `v` (scanned or repeated).
    fn stream(&mut self, k: Key, v: Var) -> Res<StreamId> {
        if let Some(&s) = self.stream_memo.get(&(k, v)) {
            return Ok(s);
        }
        let rr = self.region_root(self.key_node(k), v);
        let it = self.iter(rr, v)?.ok_or_else(|| format!("internal: region at {} has no iteration", self.name(v)))?;
        let s = if self.drives(k, v) {
            match it.payloads.iter().find(|(kk, _)| *kk == k) {
                Some(&(_, s)) => s,
                None => return Err(format!("internal: no payload for operand at {}", self.name(v))),
            }
        } else {
            let prev = self.prev_stream(k, v)?;
            let sig = self.repsig(it.crd);
            let label = match k {
                Key::Leaf(n) => format!("{}_rep_{}", self.leaf_tensor(n), self.name(v)),
                Key::Range(_, w) => format!("range_{}_rep_{}", self.name(w), self.name(v)),
            };
            let out = self.g.add(Op::Repeat { index: self.name(v).to_string() }, &[prev, sig], label)[0];
            if self.may_n.contains(&prev) {
                self.may_n.insert(out);
            }
            out
        };
        self.stream_memo.insert((k, v), s);
        Ok(s)
    }

    /// Builds a joiner over the given iterations.
    fn join(&mut self, kind: JoinKind, v: Var, its: Vec<Iter>) -> Res<Iter> {
        if its.len() == 1 {
            let it = its.into_iter().next().unwrap();
            if !self.may_n.contains(&it.crd) {
                return Ok(it);
            }
            // A lone operand whose coordinates may be `N` (it is absent under an outer union):
            // a one-operand union turns its `[N, S]` fibers into empty ones, as a join with a
            // second operand would, so no `N` coordinate reaches writers or accumulators.
            let mut ins = vec![it.crd];
            ins.extend(it.payloads.iter().map(|(_, s)| *s));
            let outs = self.g.add(
                Op::Join {
                    kind: JoinKind::Union,
                    payloads: vec![it.payloads.len() as u32],
                    index: self.name(v).to_string(),
                },
                &ins,
                format!("present_{}", self.name(v)),
            );
            let payloads = it.payloads.iter().zip(&outs[1..]).map(|((k, _), s)| (*k, *s)).collect();
            return Ok(Iter { crd: outs[0], payloads, filterable: it.filterable, full: it.full, dense_leaf: None });
        }
        // An accumulator's output at a non-final level can be co-iterated only where the join
        // passes its coordinates through unchanged: a union where it is full, or an
        // intersection where every operand is. Otherwise its deeper streams would not follow.
        let passes = match kind {
            JoinKind::Union => its.iter().all(|i| i.filterable || i.full),
            JoinKind::Intersect => its.iter().all(|i| i.full),
        };
        let full = match kind {
            JoinKind::Union => its.iter().any(|i| i.full),
            JoinKind::Intersect => its.iter().all(|i| i.full),
        };
        let filterable = its.iter().all(|i| i.filterable);
        if !filterable && !passes {
            return Err(format!(
                "a reduction result is co-iterated at {} before its inner levels are complete; choose another order",
                self.name(v)
            ));
        }
        // Locate: intersect a dense scan by looking it up from the other operands' coordinates.
        if kind == JoinKind::Intersect && self.opts.locate {
            if let Some(di) = its.iter().position(|i| i.dense_leaf.is_some()) {
                if its.iter().any(|i| i.dense_leaf.is_none()) {
                    let mut its = its;
                    let dense = its.remove(di);
                    let rest = self.join(kind, v, its)?;
                    return self.locate(v, rest, dense);
                }
            }
        }
        let mut ins = Vec::new();
        let mut payloads = Vec::new();
        let mut keys = Vec::new();
        for it in &its {
            ins.push(it.crd);
            payloads.push(it.payloads.len() as u32);
            for (k, s) in &it.payloads {
                ins.push(*s);
                keys.push(*k);
            }
        }
        let sym = if kind == JoinKind::Intersect { "intersect" } else { "union" };
        let outs = self.g.add(
            Op::Join { kind, payloads, index: self.name(v).to_string() },
            &ins,
            format!("{sym}_{}", self.name(v)),
        );
        // A join passes its operands' references through: one that may be `N` (its operand
        // is absent under an outer union) still may be. A union also makes `N` the references
        // of an operand that lacks some of its coordinates, i.e. of every operand not full.
        let passed = its.iter().flat_map(|it| it.payloads.iter().map(move |&(_, s)| (s, it.full)));
        for ((inp, op_full), &out) in passed.zip(&outs[1..]) {
            let absent = kind == JoinKind::Union && !op_full;
            if absent || self.may_n.contains(&inp) {
                self.may_n.insert(out);
            }
        }
        Ok(Iter {
            crd: outs[0],
            payloads: keys.into_iter().zip(outs[1..].iter().copied()).collect(),
            filterable,
            full,
            dense_leaf: None,
        })
    }

    /// Replaces the dense scan `dense` (of a leaf) by a locate driven by `rest`.
    fn locate(&mut self, v: Var, rest: Iter, dense: Iter) -> Res<Iter> {
        let (leaf, level) = dense.dense_leaf.expect("dense leaf");
        let Kind::Leaf(l) = &self.t.nodes[leaf].kind else { unreachable!() };
        let (tensor, size) = (l.tensor.clone(), l.sizes[level]);
        // The dense scan node stays unused and is pruned; its parent position is repeated over
        // the driving coordinates and located.
        let parent = self.prev_stream(Key::Leaf(leaf), v)?;
        let sig = self.repsig(rest.crd);
        let rep = self.g.add(
            Op::Repeat { index: self.name(v).to_string() },
            &[parent, sig],
            format!("{tensor}_rep_{}", self.name(v)),
        )[0];
        let r = self.g.add(
            Op::Locate {
                tensor: tensor.clone(),
                level: level as u32,
                size: size as u32,
                index: self.name(v).to_string(),
            },
            &[rest.crd, rep],
            format!("{tensor}_loc_{}", self.name(v)),
        )[0];
        if self.may_n.contains(&rep) {
            self.may_n.insert(r);
        }
        let mut payloads = rest.payloads;
        payloads.push((Key::Leaf(leaf), r));
        // A dense level holds every coordinate, so the locate keeps `rest`'s coordinates.
        Ok(Iter { crd: rest.crd, payloads, filterable: rest.filterable, full: rest.full, dense_leaf: None })
    }

    fn range(&mut self, n: Nid, v: Var) -> Res<Iter> {
        let prev = self.prev_stream(Key::Range(n, v), v)?;
        let size = self.t.var_sizes[v] as u32;
        let outs =
            self.g.add(Op::Range { size, index: self.name(v).to_string() }, &[prev], format!("range_{}", self.name(v)));
        Ok(Iter { crd: outs[0], payloads: vec![], filterable: true, full: true, dense_leaf: None })
    }

    /// The co-iteration of subtree `n` at variable `v`, or `None` when `n` is broadcast there.
    fn iter(&mut self, n: Nid, v: Var) -> Res<Option<Iter>> {
        if let Some(it) = self.iter_memo.get(&(n, v)) {
            return Ok(it.clone());
        }
        if !self.space[n].contains(&v) {
            // A computed operand that stops before `v`: its values are repeated over `v`.
            return Ok(None);
        }
        let res = match self.t.nodes[n].kind.clone() {
            Kind::Leaf(l) => match l.level_vars.iter().position(|&x| x == v) {
                Some(level) => {
                    let prev = self.prev_stream(Key::Leaf(n), v)?;
                    let op = Op::Scan {
                        tensor: l.tensor.clone(),
                        level: level as u32,
                        dim: l.level_dims[level] as u32,
                        format: l.formats[level],
                        index: self.name(v).to_string(),
                    };
                    let outs = self.g.add(op, &[prev], format!("{}_{}", l.tensor, self.name(v)));
                    let dense = (l.formats[level] == LevelFormat::Dense).then_some((n, level));
                    if self.may_n.contains(&prev) {
                        // The operand may be absent here: the scanner emits `[N, S]` fibers.
                        self.may_n.extend([outs[0], outs[1]]);
                    }
                    // A dense level whose parent is present holds its whole range.
                    let full = dense.is_some() && !self.may_n.contains(&prev);
                    Some(Iter {
                        crd: outs[0],
                        payloads: vec![(Key::Leaf(n), outs[1])],
                        filterable: true,
                        full,
                        dense_leaf: dense,
                    })
                }
                None => None,
            },
            Kind::Const(_) => None,
            Kind::Unary(op, c) => {
                let it = self.iter(c, v)?;
                if op.preserves_zero() {
                    it
                } else {
                    let mut its: Vec<Iter> = it.into_iter().collect();
                    its.push(self.range(n, v)?);
                    Some(self.join(JoinKind::Union, v, its)?)
                }
            }
            Kind::Binary(op, a, b) => {
                let ia = self.iter(a, v)?;
                let ib = self.iter(b, v)?;
                match op {
                    BinOp::Mul | BinOp::Div => {
                        let its: Vec<Iter> = ia.into_iter().chain(ib).collect();
                        if its.is_empty() {
                            None
                        } else {
                            Some(self.join(JoinKind::Intersect, v, its)?)
                        }
                    }
                    // Nonzero only where `a` is: `a` drives; `b` joins by union when it drives
                    // too (its extra coordinates compute to 0), and is broadcast otherwise.
                    BinOp::ExpSubNz if ia.is_some() => match ib {
                        Some(y) => Some(self.join(JoinKind::Union, v, vec![ia.expect("checked"), y])?),
                        None => Some(self.join(JoinKind::Union, v, vec![ia.expect("checked")])?),
                    },
                    BinOp::Add | BinOp::Sub | BinOp::Max | BinOp::ExpSubNz => match (ia, ib) {
                        (None, None) => None,
                        (Some(x), Some(y)) => Some(self.join(JoinKind::Union, v, vec![x, y])?),
                        (Some(x), None) | (None, Some(x)) => {
                            let r = self.range(n, v)?;
                            Some(self.join(JoinKind::Union, v, vec![x, r])?)
                        }
                    },
                }
            }
            Kind::Reduce { var: r, child, .. } => {
                if self.pos[v] < self.pos[r] {
                    self.iter(child, v)?
                } else if self.t.nodes[n].vars.contains(&v) {
                    let after = self.after_vars(n);
                    let i = after.iter().position(|&x| x == v).expect("after var");
                    let (crds, _) = self.accumulate(n)?;
                    let last = i + 1 == after.len();
                    let payloads = if last { vec![(Key::Leaf(n), self.base_value(n)?)] } else { vec![] };
                    // The accumulator emits the coordinates that some term of its sum reached
                    // down to its innermost level (an order-2 accumulator keeps no outer
                    // coordinate whose inner fibers were all empty): all of them when the
                    // reduced variable and every level inside it are full and never empty.
                    let mut full = true;
                    for &w in std::iter::once(&r).chain(&after) {
                        full &= self.t.var_sizes[w] > 0 && self.iter(child, w)?.is_some_and(|it| it.full);
                    }
                    Some(Iter { crd: crds[i], payloads, filterable: last, full, dense_leaf: None })
                } else {
                    None
                }
            }
        };
        // A max over a variable counts the implicit zeros of its operand (dense semantics), so
        // the operand is iterated over the variable's full range there.
        let res = match self.t.nodes[n].parent.map(|p| &self.t.nodes[p].kind) {
            // With the reduced variable outside others (a max accumulator), the inner levels
            // must be complete too, or their implicit zeros would be missed.
            Some(Kind::Reduce { op: ReduceOp::Max, var, .. }) if self.pos[v] >= self.pos[*var] => {
                let mut its: Vec<Iter> = res.into_iter().collect();
                its.push(self.range(n, v)?);
                Some(self.join(JoinKind::Union, v, its)?)
            }
            _ => res,
        };
        self.iter_memo.insert((n, v), res.clone());
        Ok(res)
    }

    /// Variables of reduction `n`'s result that lie after its reduced variable, in order.
    fn after_vars(&self, n: Nid) -> Vec<Var> {
        let Kind::Reduce { var: r, .. } = self.t.nodes[n].kind else { return vec![] };
        let mut v: Vec<Var> = self.t.nodes[n].vars.iter().copied().filter(|&x| self.pos[x] > self.pos[r]).collect();
        v.sort_by_key(|&x| self.pos[x]);
        v
    }

    /// The reducer or sparse accumulator of reduction `n`: its output crd streams (for the
    /// variables after the reduced one) and its value stream.
    fn accumulate(&mut self, n: Nid) -> Res<(Vec<StreamId>, StreamId)> {
        if let Some(x) = self.acc_memo.get(&n) {
            return Ok(x.clone());
        }
        let Kind::Reduce { op, var: r, child } = self.t.nodes[n].kind else { unreachable!() };
        let kind = match op {
            ReduceOp::Sum => ReduceKind::Sum,
            ReduceOp::Max | ReduceOp::MaxNz => ReduceKind::Max,
        };
        let after = self.after_vars(n);
        let mut val = self.value(child)?;
        // A max over nonzeros: zeros (stored or absent) become −∞ so they never win, and a
        // group with nothing but zeros comes back as 0.
        let nz = op == ReduceOp::MaxNz;
        if nz {
            val = self.g.add(Op::Alu { op: AluOp::ZeroToNegInf }, &[val], "")[0];
        }
        let mut res = if after.is_empty() {
            let out = self.g.add(Op::Reduce { op: kind }, &[val], format!("reduce_{}", self.name(r)))[0];
            (vec![], out)
        } else {
            if after.len() > MAX_SPACC_ORDER {
                return Err(accumulator_message(self.t, r, after.len()));
            }
            let mut ins = vec![self.iter(child, r)?.expect("child drives r").crd];
            for &w in &after {
                ins.push(
                    self.iter(child, w)?.ok_or_else(|| format!("internal: no iteration at {}", self.name(w)))?.crd,
                );
            }
            ins.push(val);
            let order = after.len() as u8;
            let outs = self.g.add(
                Op::Spacc { order, op: kind, index: self.name(r).to_string() },
                &ins,
                format!("spacc_{}", self.name(r)),
            );
            (outs[..after.len()].to_vec(), outs[after.len()])
        };
        if nz {
            res.1 = self.g.add(Op::Alu { op: AluOp::NegInfToZero }, &[res.1], "")[0];
        }
        self.acc_memo.insert(n, res.clone());
        Ok(res)
    }

    fn base_value(&mut self, n: Nid) -> Res<StreamId> {
        Ok(self.accumulate(n)?.1)
    }

    /// The value stream of subtree `n`, nested over its space.
    fn value(&mut self, n: Nid) -> Res<StreamId> {
        if let Some(&s) = self.value_memo.get(&n) {
            return Ok(s);
        }
        let s = match self.t.nodes[n].kind.clone() {
            Kind::Leaf(l) => {
                let r = match self.space[n].last().copied() {
                    Some(last) => self.stream(Key::Leaf(n), last)?,
                    None => self.g.add(Op::Root, &[], format!("{}_root", l.tensor))[0],
                };
                self.g.add(Op::Array { tensor: l.tensor.clone() }, &[r], format!("{}_vals", l.tensor))[0]
            }
            Kind::Const(c) => return Err(format!("internal: standalone constant {c}")),
            Kind::Unary(op, c) => {
                let x = self.operand_value(n, c)?;
                self.g.add(Op::Alu { op: unary(op) }, &[x], "")[0]
            }
            Kind::Binary(op, a, b) => match (&self.t.nodes[a].kind, &self.t.nodes[b].kind) {
                (_, Kind::Const(c)) => {
                    let c = *c;
                    let x = self.operand_value(n, a)?;
                    let op = AluOp::Scalar { op: scalar(op), scalar: c, scalar_first: false };
                    self.g.add(Op::Alu { op }, &[x], "")[0]
                }
                (Kind::Const(c), _) => {
                    let c = *c;
                    let x = self.operand_value(n, b)?;
                    let op = AluOp::Scalar { op: scalar(op), scalar: c, scalar_first: true };
                    self.g.add(Op::Alu { op }, &[x], "")[0]
                }
                _ => {
                    let x = self.operand_value(n, a)?;
                    let y = self.operand_value(n, b)?;
                    self.g.add(Op::Alu { op: binary(op) }, &[x, y], "")[0]
                }
            },
            // Also when the enclosing expression iterates the reduced variable itself (a row
            // reduction broadcast back over its row): the result is repeated over it.
            Kind::Reduce { var: r, .. } => match self.space[n].last().copied() {
                Some(last) if self.pos[last] >= self.pos[r] => self.stream(Key::Leaf(n), last)?,
                _ => self.base_value(n)?,
            },
        };
        self.value_memo.insert(n, s);
        Ok(s)
    }

    /// The value stream of operand `c` of node `n`, repeated over the variables of `n`'s space
    /// that follow `c`'s own (see `operand_space`).
    fn operand_value(&mut self, n: Nid, c: Nid) -> Res<StreamId> {
        let mut x = self.value(c)?;
        let have = self.space[c].len();
        for i in have..self.space[n].len() {
            let v = self.space[n][i];
            let rr = self.region_root(n, v);
            let it =
                self.iter(rr, v)?.ok_or_else(|| format!("internal: region at {} has no iteration", self.name(v)))?;
            let sig = self.repsig(it.crd);
            x = self.g.add(
                Op::Repeat { index: self.name(v).to_string() },
                &[x, sig],
                format!("val_rep_{}", self.name(v)),
            )[0];
        }
        Ok(x)
    }
}

fn unary(op: UnaryOp) -> AluOp {
    match op {
        UnaryOp::Neg => AluOp::Neg,
        UnaryOp::Relu => AluOp::Relu,
        UnaryOp::Exp => AluOp::Exp,
        UnaryOp::Rsqrt => AluOp::Rsqrt,
        UnaryOp::Sigmoid => AluOp::Sigmoid,
        UnaryOp::Gelu => AluOp::Gelu,
        UnaryOp::Erf => AluOp::Erf,
        UnaryOp::ExpNz => AluOp::ExpNz,
    }
}

fn binary(op: BinOp) -> AluOp {
    match op {
        BinOp::Add => AluOp::Add,
        BinOp::Sub => AluOp::Sub,
        BinOp::Mul => AluOp::Mul,
        BinOp::Div => AluOp::Div,
        BinOp::Max => AluOp::Max,
        BinOp::ExpSubNz => AluOp::ExpSubNz,
    }
}

fn scalar(op: BinOp) -> ScalarOp {
    match op {
        BinOp::Add => ScalarOp::Add,
        BinOp::Sub => ScalarOp::Sub,
        BinOp::Mul => ScalarOp::Mul,
        BinOp::Div => ScalarOp::Div,
        BinOp::Max => ScalarOp::Max,
        BinOp::ExpSubNz => ScalarOp::ExpSubNz,
    }
}

/// Computes the space of every node under `order` and checks the order's structural rules.
fn spaces(t: &Tree, pos: &[usize]) -> Res<Vec<Vec<Var>>> {
    let mut space: Vec<Vec<Var>> = vec![Vec::new(); t.nodes.len()];
    let sorted = |s: BTreeSet<Var>| {
        let mut v: Vec<Var> = s.into_iter().collect();
        v.sort_by_key(|&x| pos[x]);
        v
    };
    space[t.root] = sorted(t.nodes[t.root].vars.clone());
    // Parents come after children in the arena, so walk from the root down.
    for n in (0..t.nodes.len()).rev() {
        let sp = space[n].clone();
        match &t.nodes[n].kind {
            Kind::Leaf(_) | Kind::Const(_) => {}
            Kind::Unary(_, c) => space[*c] = operand_space(t, *c, &sp),
            Kind::Binary(_, a, b) => {
                space[*a] = operand_space(t, *a, &sp);
                space[*b] = operand_space(t, *b, &sp);
            }
            Kind::Reduce { var: r, child, .. } => {
                let own = &t.nodes[n].vars;
                let mut s: BTreeSet<Var> = t.nodes[*child].vars.clone();
                for &v in &sp {
                    if !own.contains(&v) && pos[v] < pos[*r] {
                        s.insert(v);
                    }
                }
                // Variables of the enclosing space that the result lacks and that come after
                // the reduced one are broadcast by repeating values, which requires them to
                // follow every variable of the result.
                let last_own = own.iter().map(|&v| pos[v]).filter(|&p| p > pos[*r]).max();
                for &v in &sp {
                    if !own.contains(&v) && pos[v] >= pos[*r] {
                        if let Some(lo) = last_own {
                            if pos[v] < lo {
                                return Err(mid_level_message(t, *r, v));
                            }
                        }
                    }
                }
                space[*child] = sorted(s);
            }
        }
    }
    Ok(space)
}

/// The space of operand `c` of a node with space `sp`. A computed operand (not a tensor) stops
/// at its own last variable: it is computed once and its values are repeated over the
/// enclosing variables that follow (FuseFlow's value repeat), so a consumer's extra inner
/// loops do not recompute it. Tensors are repeated by reference instead, which costs the same.
fn operand_space(t: &Tree, c: Nid, sp: &[Var]) -> Vec<Var> {
    match t.nodes[c].kind {
        Kind::Leaf(_) | Kind::Const(_) => sp.to_vec(),
        _ => {
            let own = &t.nodes[c].vars;
            let end = sp.iter().rposition(|v| own.contains(v)).map_or(0, |i| i + 1);
            sp[..end].to_vec()
        }
    }
}

/// Checks that every tensor (and the output) stores its levels in an order compatible with
/// the dataflow order.
pub(crate) fn check_formats(t: &Tree, pos: &[usize]) -> Res<()> {
    let leaves = t.nodes.iter().filter_map(|n| match &n.kind {
        Kind::Leaf(l) => Some(l),
        _ => None,
    });
    for l in leaves.chain(std::iter::once(&t.out)) {
        for w in l.level_vars.windows(2) {
            if pos[w[0]] > pos[w[1]] {
                return Err(format!(
                    "tensor {} stores {} before {} (mode order {:?}), but the order visits {} first",
                    l.tensor, t.var_names[w[0]], t.var_names[w[1]], l.level_dims, t.var_names[w[1]]
                ));
            }
        }
    }
    Ok(())
}

/// Dense-shape cost estimate of an order: the summed iteration volume (product of index
/// sizes over its space) of every expression node, so recomputation forced by the order
/// multiplies the estimate. `None` when the order is not supported.
pub(crate) fn estimate(t: &Tree, order: &[Var]) -> Option<f64> {
    let mut pos = vec![usize::MAX; t.var_names.len()];
    for (i, &v) in order.iter().enumerate() {
        pos[v] = i;
    }
    let t = &*t.relayout(&pos);
    check_formats(t, &pos).ok()?;
    let mut sorted = t.clone();
    sorted.sort_sums(&pos);
    let space = spaces(&sorted, &pos).ok()?;
    let volume = |sp: &[Var]| sp.iter().map(|&v| t.var_sizes[v] as f64).product::<f64>();
    let mut cost: f64 = space.iter().map(|sp| volume(sp)).sum();
    // Sparse accumulators buffer and re-sort what scalar reducers stream: charge their operand
    // volume once per level they keep inside the reduced variable.
    for node in &sorted.nodes {
        if let Kind::Reduce { var, child, .. } = node.kind {
            let inner = space[child].iter().filter(|&&v| pos[v] > pos[var]).count();
            cost += volume(&space[child]) * inner as f64;
        }
    }
    Some(cost)
}

pub(crate) fn lower_tree(t: &Tree, order: &[Var], opts: &LowerOptions, name: &str) -> Res<Graph> {
    let mut pos = vec![usize::MAX; t.var_names.len()];
    for (i, &v) in order.iter().enumerate() {
        pos[v] = i;
    }
    let t = &*t.relayout(&pos);
    check_formats(t, &pos)?;
    let mut sorted = t.clone();
    sorted.sort_sums(&pos);
    let t = &sorted;
    let space = spaces(t, &pos)?;
    let mut lw = Lowerer {
        t,
        g: Graph::new(name),
        pos,
        space,
        iter_memo: HashMap::new(),
        stream_memo: HashMap::new(),
        value_memo: HashMap::new(),
        acc_memo: HashMap::new(),
        repsig_memo: HashMap::new(),
        may_n: Default::default(),
        opts: opts.clone(),
    };
    let root = t.root;
    // Output coordinates, outermost first, then values.
    let mut crds = Vec::new();
    for &v in &t.out.level_vars {
        let it = lw.iter(root, v)?.ok_or_else(|| format!("output index {} is not iterated", lw.name(v)))?;
        crds.push(it.crd);
    }
    let vals = lw.value(root)?;
    if lw.opts.crddrop && crds.len() >= 2 {
        // Innermost pair first, so a dropped inner fiber can empty an outer one. The value
        // stream keeps its shape: dropped fibers hold no values.
        for l in (0..crds.len() - 1).rev() {
            if t.out.formats[l] != LevelFormat::Compressed {
                break;
            }
            let outs =
                lw.g.add(Op::CrdDrop, &[crds[l], crds[l + 1]], format!("crddrop_{}", t.var_names[t.out.level_vars[l]]));
            crds[l] = outs[0];
            crds[l + 1] = outs[1];
        }
    }
    for (l, &c) in crds.iter().enumerate() {
        lw.g.add(
            Op::LevelWrite { tensor: t.out.tensor.clone(), level: l as u32 },
            &[c],
            format!("{}_w{l}", t.out.tensor),
        );
    }
    lw.g.add(Op::ValWrite { tensor: t.out.tensor.clone() }, &[vals], format!("{}_wvals", t.out.tensor));
    let mut g = lw.g;
    g.prune();
    // Bindings.
    let mut seen = BTreeSet::new();
    for n in &t.nodes {
        if let Kind::Leaf(l) = &n.kind {
            if seen.insert(l.tensor.clone()) {
                let mut shape = vec![0; l.sizes.len()];
                for (lv, &d) in l.level_dims.iter().enumerate() {
                    shape[d] = l.sizes[lv];
                }
                g.inputs.push(TensorBinding {
                    tensor: l.tensor.clone(),
                    shape,
                    levels: l.formats.clone(),
                    mode_order: l.level_dims.clone(),
                });
            }
        }
    }
    let mut shape = vec![0; t.out.sizes.len()];
    for (lv, &d) in t.out.level_dims.iter().enumerate() {
        shape[d] = t.out.sizes[lv];
    }
    g.outputs.push(OutputBinding { tensor: t.out.tensor.clone(), shape, dims: t.out.level_dims.clone() });
    Ok(g)
}

/// Lowers statement `stmt` of `p` under `order` (index names, outermost first), or under the
/// first legal order when `order` is `None`.
pub fn lower_statement(
    p: &CheckedProgram,
    stmt: usize,
    order: Option<&[String]>,
    opts: &LowerOptions,
) -> Result<Kernel, CompileError> {
    let s = &p.stmts[stmt];
    let trees = Trees::build(p, stmt, opts)?;
    let (order, graph) = lower_trees(p, s, &trees, order, opts, &s.lhs.tensor)?;
    Ok(Kernel { stmt, order, graph })
}

/// Lowers a (possibly fused) statement's trees under `order`, or its first legal order.
pub(crate) fn lower_trees(
    p: &CheckedProgram,
    s: &Stmt,
    trees: &Trees,
    order: Option<&[String]>,
    opts: &LowerOptions,
    name: &str,
) -> Result<(Vec<String>, Graph), CompileError> {
    let t = &trees.factored;
    let order: Vec<String> = match order {
        Some(o) => o.to_vec(),
        None => crate::order::best_order(p, s, trees, opts)?,
    };
    let order_err = |message: String| CompileError::Order {
        file: p.file.clone(),
        line: s.span.line,
        col: s.span.col,
        order: order.join(","),
        message,
    };
    let mut vars = Vec::new();
    for name in &order {
        let v = t.var(name).map_err(|_| order_err(format!("index {name} does not occur in the statement")))?;
        if vars.contains(&v) {
            return Err(order_err(format!("index {name} appears twice")));
        }
        vars.push(v);
    }
    if vars.len() != t.var_names.len() {
        let missing: Vec<&str> =
            (0..t.var_names.len()).filter(|v| !vars.contains(v)).map(|v| t.var_names[v].as_str()).collect();
        return Err(order_err(format!("missing index {}", missing.join(", "))));
    }
    let name = format!("{name}_{}", order.join(""));
    // Hash-consed here, where every statement and fused expression is lowered, so that every
    // command (graph, orders, compile, run) sees the same graph.
    let graph = trees.lower(&vars, opts, &name).map_err(order_err)?.share();
    graph.verify()?;
    Ok((order, graph))
}

/// A statement's tree with reductions where the program puts them (factored iteration) and
/// with sums hoisted through products (global iteration), tried in that order.
pub(crate) struct Trees {
    pub factored: Tree,
    hoisted: Tree,
}

impl Trees {
    /// The trees of statement `stmt` of `p`.
    pub fn build(p: &CheckedProgram, stmt: usize, opts: &LowerOptions) -> Result<Trees, CompileError> {
        Trees::from_parts(p, &p.stmts[stmt], &p.index_sizes[stmt], &Default::default(), opts)
    }

    /// The trees of a (possibly fused) statement with the given index sizes; inputs in
    /// `pinned` keep their declared layout. Errors point at the statement.
    pub fn from_parts(
        p: &CheckedProgram,
        stmt: &Stmt,
        sizes: &std::collections::BTreeMap<String, usize>,
        pinned: &BTreeSet<String>,
        opts: &LowerOptions,
    ) -> Result<Trees, CompileError> {
        let tree = |hoist| {
            let t = Tree::from_parts(p, stmt, sizes, pinned, hoist);
            t.map(|t| Tree { free_layout: opts.free_layout, ..t }).map_err(|message| CompileError::Unsupported {
                file: p.file.clone(),
                line: stmt.span.line,
                col: stmt.span.col,
                message,
            })
        };
        Ok(Trees { factored: tree(false)?, hoisted: tree(true)? })
    }

    /// The tree with sums hoisted through products.
    pub fn hoisted_tree(&self) -> &Tree {
        &self.hoisted
    }

    /// Lowers the factored tree, or the hoisted one if the order does not support the first.
    pub fn lower(&self, order: &[Var], opts: &LowerOptions, name: &str) -> Res<Graph> {
        match lower_tree(&self.factored, order, opts, name) {
            Ok(g) => Ok(g),
            Err(e) => lower_tree(&self.hoisted, order, opts, name).map_err(|_| e),
        }
    }
}

/// Highest order of a sparse accumulator (levels it keeps inside the reduced variable).
const MAX_SPACC_ORDER: usize = 2;

/// The lowering rules that reject dataflow orders, as the order search counts rejections.
/// The first two are decided on prefixes of an order too ([`PrefixRules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Rule {
    /// `spaces`: a reduction's result is broadcast over a variable that the order visits after
    /// the reduced variable but before the result's last own variable (its values would have
    /// to be repeated in the middle of its own levels).
    MidLevelBroadcast,
    /// `accumulate`: more than [`MAX_SPACC_ORDER`] of a reduction's own variables follow the
    /// reduced one.
    AccumulatorOrder,
    /// Any other lowering failure (co-iterating an accumulator's output through a filtering
    /// join, ...): decided on complete orders only.
    Other,
}

impl Rule {
    /// The rule in a few words, for the search's summary.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Rule::MidLevelBroadcast => "a reduction broadcast in the middle of its own levels",
            Rule::AccumulatorOrder => "a sparse accumulator of order above 2",
            Rule::Other => "another lowering rule",
        }
    }
}

/// The lowering's error for a reduction over `r` broadcast over `v` in the middle of its own
/// levels: one text, so that a pruned prefix and a lowered order report the same words.
fn mid_level_message(t: &Tree, r: Var, v: Var) -> String {
    format!("the sum over {} is broadcast over {} in the middle of its own levels", t.var_names[r], t.var_names[v])
}

/// The lowering's error for a reduction over `r` with `k` levels inside it (one text, as above).
fn accumulator_message(t: &Tree, r: Var, k: usize) -> String {
    format!(
        "reducing {} with {k} levels inside it needs a sparse accumulator of order {k} (at most {MAX_SPACC_ORDER} supported)",
        t.var_names[r]
    )
}

/// A set of index variables, one bit each.
type Bits = [u64];

fn bit(b: &Bits, v: Var) -> bool {
    b[v / 64] >> (v % 64) & 1 == 1
}

fn set_bit(b: &mut Bits, v: Var) {
    b[v / 64] |= 1 << (v % 64);
}

/// A sum chain (`Σk Σl e`): `sort_sums` gives its outermost node the variable visited first,
/// so which node reduces which variable (and which variables the inner nodes keep) depends on
/// the order.
struct Chain {
    /// Its nodes, outermost first.
    nodes: Vec<Nid>,
    /// The variables it reduces.
    vars: Vec<Var>,
    /// Free variables of the expression below its innermost node.
    bottom: Vec<u64>,
}

/// A reduction's variable under a prefix.
#[derive(Clone, Copy)]
enum Reduced {
    /// Placed, at this prefix position.
    At(usize, Var),
    /// Not placed yet.
    Later(Var),
    /// One of the chain's variables that are not placed yet (which one the completion decides).
    Unknown,
}

/// The order rules of [`spaces`] and [`Lowerer::accumulate`] decided on a *prefix* of an order:
/// `dead(prefix)` is a rule that every completion of the prefix breaks, so the order search
/// never descends below it. Sound by construction: every fact about the completion is
/// three-valued (the unplaced variables come after the placed ones, in any order), and a
/// prefix is rejected only when a violation holds for certain. On a complete order all facts
/// are known, and it agrees with the lowering exactly (tested).
pub(crate) struct PrefixRules<'a> {
    t: &'a Tree,
    /// Words per variable set.
    words: usize,
    /// Free variables of every node (`Tree::nodes[n].vars`).
    vars: Vec<u64>,
    /// Sum chains of two or more nodes.
    chains: Vec<Chain>,
    /// Whether a node's subtree holds a reduction: the rules look nowhere else.
    reducing: Vec<bool>,
    /// Buffers of `dead`, kept between calls (a search checks thousands of prefixes).
    scratch: std::cell::RefCell<Scratch>,
}

/// Per-node buffers of [`PrefixRules::dead`].
#[derive(Default)]
struct Scratch {
    sure: Vec<u64>,
    maybe: Vec<u64>,
    in_t: Vec<u64>,
    in_m: Vec<u64>,
    reduced: Vec<Option<Reduced>>,
}

impl<'a> PrefixRules<'a> {
    /// The rules of tree `t`.
    pub(crate) fn new(t: &'a Tree) -> Self {
        let n = t.nodes.len();
        let words = t.var_names.len().div_ceil(64).max(1);
        let mut vars = vec![0u64; n * words];
        for (i, node) in t.nodes.iter().enumerate() {
            for &v in &node.vars {
                set_bit(&mut vars[i * words..(i + 1) * words], v);
            }
        }
        // The same chains `Tree::sort_sums` reorders.
        let is_sum = |x: Nid| matches!(t.nodes[x].kind, Kind::Reduce { op: ReduceOp::Sum, .. });
        let mut chains = Vec::new();
        for top in 0..n {
            if !is_sum(top) || t.nodes[top].parent.is_some_and(is_sum) {
                continue;
            }
            let mut nodes = vec![top];
            let mut chain_vars = Vec::new();
            let bottom = loop {
                let Kind::Reduce { var, child, .. } = t.nodes[*nodes.last().expect("nonempty")].kind else {
                    unreachable!("chains hold reductions")
                };
                chain_vars.push(var);
                if !is_sum(child) {
                    break child;
                }
                nodes.push(child);
            };
            if nodes.len() < 2 {
                continue;
            }
            chains.push(Chain { nodes, vars: chain_vars, bottom: vars[bottom * words..(bottom + 1) * words].to_vec() });
        }
        // Children come before their parents in the arena.
        let mut reducing = vec![false; n];
        for x in 0..n {
            reducing[x] = match t.nodes[x].kind {
                Kind::Leaf(_) | Kind::Const(_) => false,
                Kind::Reduce { .. } => true,
                Kind::Unary(_, c) => reducing[c],
                Kind::Binary(_, a, b) => reducing[a] || reducing[b],
            };
        }
        PrefixRules { t, words, vars, chains, reducing, scratch: Default::default() }
    }

    /// A rule that every completion of `prefix` (distinct variables, outermost first) breaks,
    /// with the lowering's message for it, or `None` when some completion may lower.
    pub(crate) fn dead(&self, prefix: &[Var]) -> Option<(Rule, String)> {
        let t = self.t;
        let w = self.words;
        let nv = t.var_names.len();
        let mut pos: Vec<Option<usize>> = vec![None; nv];
        for (i, &v) in prefix.iter().enumerate() {
            pos[v] = Some(i);
        }
        // upto[k]: the first k placed variables.
        let mut upto = vec![0u64; (prefix.len() + 1) * w];
        for (k, &v) in prefix.iter().enumerate() {
            let (done, rest) = upto.split_at_mut((k + 1) * w);
            rest[..w].copy_from_slice(&done[k * w..]);
            set_bit(&mut rest[..w], v);
        }
        let upto = |k: usize| &upto[k * w..(k + 1) * w];
        let placed = upto(prefix.len()).to_vec();
        let mut all = vec![!0u64; w];
        if !nv.is_multiple_of(64) {
            all[w - 1] = (1u64 << (nv % 64)) - 1;
        }
        let unplaced: Vec<u64> = all.iter().zip(&placed).map(|(a, p)| a & !p).collect();
        // The last placed variable of a set.
        let max_pos = |b: &Bits| prefix.iter().rposition(|&v| bit(b, v));
        let and_any = |a: &Bits, b: &Bits| a.iter().zip(b).any(|(x, y)| x & y != 0);

        // Every node's reduced variable and free variables (sure, possible) after `sort_sums`.
        let n = t.nodes.len();
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { sure, maybe, in_t, in_m, reduced } = &mut *scratch;
        sure.clear();
        sure.extend_from_slice(&self.vars);
        maybe.clear();
        maybe.extend_from_slice(&self.vars);
        reduced.clear();
        reduced.extend(t.nodes.iter().map(|node| match node.kind {
            Kind::Reduce { var, .. } => Some(match pos[var] {
                Some(p) => Reduced::At(p, var),
                None => Reduced::Later(var),
            }),
            _ => None,
        }));
        for c in &self.chains {
            let mut first: Vec<Var> = c.vars.iter().copied().filter(|&v| pos[v].is_some()).collect();
            first.sort_by_key(|&v| pos[v]);
            let later: Vec<Var> = c.vars.iter().copied().filter(|&v| pos[v].is_none()).collect();
            // Node d reduces the d-th variable in order and keeps the variables the nodes
            // from it inwards do not reduce: the placed ones before it are known, the others
            // are after every placed variable, in an order the completion decides.
            let mut later_bits = vec![0u64; w];
            for &v in &later {
                set_bit(&mut later_bits, v);
            }
            for (d, &x) in c.nodes.iter().enumerate() {
                let (s, m) = (&mut sure[x * w..(x + 1) * w], &mut maybe[x * w..(x + 1) * w]);
                let mut inner = later_bits.clone();
                for &v in first.iter().skip(d) {
                    set_bit(&mut inner, v);
                }
                for i in 0..w {
                    s[i] = c.bottom[i] & !inner[i];
                    m[i] = s[i];
                }
                if let Some(&v) = first.get(d) {
                    reduced[x] = Some(Reduced::At(pos[v].expect("placed"), v));
                } else {
                    reduced[x] = Some(if later.len() == 1 { Reduced::Later(later[0]) } else { Reduced::Unknown });
                    if d > first.len() {
                        // Some of the unplaced variables are reduced further in, some further
                        // out: which is unknown.
                        m.copy_from_slice(&c.bottom);
                    }
                }
            }
        }
        let sure = |x: Nid| &sure[x * w..(x + 1) * w];
        let maybe = |x: Nid| &maybe[x * w..(x + 1) * w];

        // Spaces, three-valued: `in_t` surely holds a variable, `in_m` possibly does.
        in_t.clear();
        in_t.resize(n * w, 0);
        in_m.clear();
        in_m.resize(n * w, 0);
        in_t[t.root * w..(t.root + 1) * w].copy_from_slice(sure(t.root));
        in_m[t.root * w..(t.root + 1) * w].copy_from_slice(maybe(t.root));
        let mut cond_t = vec![0u64; w];
        let mut cond_m = vec![0u64; w];
        let mut spacc = None;
        let mut lt_t = vec![0u64; w];
        let mut lt_m = vec![0u64; w];
        for x in (0..n).rev() {
            // Children come before their parent in the arena.
            let (lo_t, hi_t) = in_t.split_at_mut(x * w);
            let (lo_m, hi_m) = in_m.split_at_mut(x * w);
            let (st, sm) = (&hi_t[..w], &hi_m[..w]);
            if !self.reducing[x] {
                continue;
            }
            match t.nodes[x].kind {
                Kind::Leaf(_) | Kind::Const(_) => {}
                Kind::Unary(_, _) | Kind::Binary(_, _, _) => {
                    let children = match t.nodes[x].kind {
                        Kind::Unary(_, c) => [Some(c), None],
                        Kind::Binary(_, a, b) => [Some(a), Some(b)],
                        _ => unreachable!("matched above"),
                    };
                    for c in children.into_iter().flatten() {
                        if !self.reducing[c] {
                            continue;
                        }
                        // `operand_space`: a computed operand keeps the enclosing variables up
                        // to its own last one, i.e. those at or before one of its variables.
                        if and_any(sure(c), &unplaced) {
                            for i in 0..w {
                                cond_t[i] = placed[i] | sure(c)[i];
                            }
                            cond_m.copy_from_slice(&all);
                        } else {
                            let k = max_pos(sure(c)).map_or(0, |p| p + 1);
                            cond_t.copy_from_slice(upto(k));
                            if and_any(maybe(c), &unplaced) {
                                cond_m.copy_from_slice(&all);
                            } else {
                                let k = max_pos(maybe(c)).map_or(0, |p| p + 1);
                                cond_m.copy_from_slice(upto(k));
                            }
                        }
                        for i in 0..w {
                            lo_t[c * w + i] = st[i] & cond_t[i];
                            lo_m[c * w + i] = sm[i] & cond_m[i];
                        }
                    }
                }
                Kind::Reduce { child: c, .. } => {
                    let r = reduced[x].expect("a reduction");
                    // Variables before the reduced one.
                    match r {
                        Reduced::At(p, _) => {
                            lt_t.copy_from_slice(upto(p));
                            lt_m.copy_from_slice(upto(p));
                        }
                        Reduced::Later(v) => {
                            lt_t.copy_from_slice(&placed);
                            lt_m.copy_from_slice(&all);
                            lt_m[v / 64] &= !(1 << (v % 64));
                        }
                        Reduced::Unknown => {
                            lt_t.copy_from_slice(&placed);
                            lt_m.copy_from_slice(&all);
                        }
                    }
                    for i in 0..w {
                        lo_t[c * w + i] = sure(c)[i] | (st[i] & !maybe(x)[i] & lt_t[i]);
                        lo_m[c * w + i] = maybe(c)[i] | (sm[i] & !sure(x)[i] & lt_m[i]);
                    }
                    // Both rules need the reduced variable placed: otherwise no own variable
                    // surely follows it.
                    let Reduced::At(p, r) = r else { continue };
                    // Broadcast over v (in the space, not own, at or after r) with an own
                    // variable after v.
                    let own = sure(x);
                    let own_later = and_any(own, &unplaced);
                    let last_own = max_pos(own);
                    let mid = prefix[p..].iter().copied().find(|&v| {
                        bit(st, v) && !bit(maybe(x), v) && (own_later || last_own.is_some_and(|lo| pos[v] < Some(lo)))
                    });
                    if let Some(v) = mid {
                        return Some((Rule::MidLevelBroadcast, mid_level_message(t, r, v)));
                    }
                    // Own variables surely after r: placed after it, or not placed.
                    let up = upto(p + 1);
                    let after: u32 = (0..w).map(|i| (own[i] & !up[i]).count_ones()).sum();
                    if after as usize > MAX_SPACC_ORDER && spacc.is_none() {
                        spacc = Some((Rule::AccumulatorOrder, accumulator_message(t, r, after as usize)));
                    }
                }
            }
        }
        // The lowering computes every space before it builds an accumulator.
        spacc
    }
}

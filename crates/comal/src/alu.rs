//! How Comal computes each of our ALU ops.
//!
//! Comal builds an `alu` operation from its stage 0 alone, in f32: with two inputs `ADD`,
//! `SUB`, `MUL`, `DIV` or `ELEMMUL` (its binary `MAX` stops at a `todo!`), with one input
//! `EXP`, `SIN`, `COS`, `MAX` (against `scalar`), `SCALARADD`, `SCALARMUL`, `SCALARDIV`,
//! `RSQRT` or `SIGMOID`. Most of our ops are one such stage. The sparsity-preserving
//! exponentials have none, but an exact composition of them, so they are exported as a *chain* of
//! `alu` operations that the importer folds back into one node. The ±∞ conversions of a max
//! over nonzeros have neither; they get a one-stage *stand-in* that gives our result in the
//! context `comal_gaps` describes. The definitions live here so that export and import agree.

use fuseflow_graph::{AluOp, ScalarOp};

use crate::proto::alu::AluOp as C;

/// Operand of a chain step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// Input `k` of our ALU node.
    In(usize),
    /// The output of an earlier step of the same chain.
    Step(usize),
}

/// One Comal `alu` operation of a chain: its stage op, its `scalar` and its operands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    pub op: C,
    pub scalar: f64,
    pub ins: &'static [Src],
    /// Suffix of the step's output stream name (only for people reading the export).
    pub name: &'static str,
}

/// How an ALU op is exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AluForm {
    /// One stage (op, scalar) that computes the op exactly.
    Exact(C, f64),
    /// One stage (op, scalar) that agrees with the op only where the graph around it makes it
    /// so (`comal_gaps` says where).
    StandIn(C, f64),
    /// Several `alu` operations, step 0 first; the last one gives the result.
    Chain(&'static [Step]),
    /// Nothing Comal has: exported with no stage, which Comal rejects.
    Unsupported,
}

/// `ExpSubNz(a, b)` as `max(exp((a ÷ a) × (a − b)), 0)`.
///
/// `a ÷ a` is exactly 1 for every finite nonzero `a` (subnormals included) and NaN for ±0;
/// `1 × d` is `d` exactly, a NaN passes through the product and `exp`, and Comal's scalar
/// `MAX` (Rust's `f32::max`) returns the operand that is not NaN. So the result is exactly
/// f32's `exp(a − b)` where `a ≠ 0` and 0 where `a = 0`, with no `∞ × 0` on the way (a product
/// with an indicator would give NaN for `exp(−b) = ∞`). It differs from ours only where `a` is
/// ±∞ or NaN, or `b` is NaN: 0 instead of ∞ or NaN. Step 0 reads both inputs, so it carries
/// the node's id.
const EXP_SUB_NZ: &[Step] = &[
    Step { op: C::Sub, scalar: 0.0, ins: &[Src::In(0), Src::In(1)], name: "diff" },
    Step { op: C::Div, scalar: 0.0, ins: &[Src::In(0), Src::In(0)], name: "one_or_nan" },
    Step { op: C::Mul, scalar: 0.0, ins: &[Src::Step(1), Src::Step(0)], name: "diff_or_nan" },
    Step { op: C::Exp, scalar: 0.0, ins: &[Src::Step(2)], name: "exp_or_nan" },
    Step { op: C::Max, scalar: 0.0, ins: &[Src::Step(3)], name: "" },
];

/// `ExpNz(a)` as `max(exp((a ÷ a) × a), 0)`: the chain of [`EXP_SUB_NZ`] with `b = 0`, and
/// exact in the same way (it differs from ours only where `a` is ±∞ or NaN).
const EXP_NZ: &[Step] = &[
    Step { op: C::Div, scalar: 0.0, ins: &[Src::In(0), Src::In(0)], name: "one_or_nan" },
    Step { op: C::Mul, scalar: 0.0, ins: &[Src::Step(0), Src::In(0)], name: "a_or_nan" },
    Step { op: C::Exp, scalar: 0.0, ins: &[Src::Step(1)], name: "exp_or_nan" },
    Step { op: C::Max, scalar: 0.0, ins: &[Src::Step(2)], name: "" },
];

/// The Comal form of `op`.
pub(crate) fn alu_form(op: AluOp) -> AluForm {
    use AluForm::{Chain, Exact, StandIn, Unsupported};
    match op {
        AluOp::Add => Exact(C::Add, 0.0),
        AluOp::Sub => Exact(C::Sub, 0.0),
        AluOp::Mul => Exact(C::Mul, 0.0),
        AluOp::Div => Exact(C::Div, 0.0),
        AluOp::Max => Exact(C::Max, 0.0),
        AluOp::Exp => Exact(C::Exp, 0.0),
        AluOp::Rsqrt => Exact(C::Rsqrt, 0.0),
        AluOp::Sigmoid => Exact(C::Sigmoid, 0.0),
        AluOp::Relu => Exact(C::Max, 0.0),
        AluOp::Neg => Exact(C::Scalarmul, -1.0),
        AluOp::ExpSubNz => Chain(EXP_SUB_NZ),
        // Comal has no −∞ conversion. Ahead of a max reduction, zeros may stay zeros, and
        // after one max(x, 0) maps an all-zero group (and Comal's empty first group, f32::MIN)
        // to 0: together exact wherever a group's largest nonzero is ≥ 0 or it has none.
        AluOp::ZeroToNegInf => StandIn(C::Scalaradd, 0.0),
        AluOp::NegInfToZero => StandIn(C::Max, 0.0),
        AluOp::ExpNz => Chain(EXP_NZ),
        // Comal's ALU has no erf (nor tanh): exported nodes with it are refused by name.
        AluOp::Gelu | AluOp::Erf => Unsupported,
        AluOp::Scalar { op, scalar, scalar_first } => match (op, scalar_first) {
            (ScalarOp::Add, _) => Exact(C::Scalaradd, scalar),
            (ScalarOp::Mul, _) => Exact(C::Scalarmul, scalar),
            (ScalarOp::Max, _) => Exact(C::Max, scalar),
            (ScalarOp::Sub, false) => Exact(C::Scalaradd, -scalar),
            (ScalarOp::Div, false) => Exact(C::Scalardiv, scalar),
            (ScalarOp::Sub | ScalarOp::Div, true) | (ScalarOp::ExpSubNz, _) => Unsupported,
        },
    }
}

/// The chain of `op`, if it is exported as one.
pub(crate) fn chain(op: AluOp) -> Option<&'static [Step]> {
    match alu_form(op) {
        AluForm::Chain(steps) => Some(steps),
        AluForm::Exact(..) | AluForm::StandIn(..) | AluForm::Unsupported => None,
    }
}

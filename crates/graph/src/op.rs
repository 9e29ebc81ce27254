//! The SAM primitives a graph node can be.

use fuseflow_tensor::LevelFormat;

use crate::StreamKind;

/// Co-iteration kind of a joiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum JoinKind {
    /// Keep coordinates present in every input.
    Intersect,
    /// Keep coordinates present in any input; absent operands get `N`.
    Union,
}

/// Reduction operator of reducers and sparse accumulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Maximum (starting from −∞ in every fiber).
    Max,
}

/// ALU operations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum AluOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a × b
    Mul,
    /// a ÷ b
    Div,
    /// max(a, b)
    Max,
    /// −a
    Neg,
    /// max(a, 0)
    Relu,
    /// eᵃ
    Exp,
    /// 1/√a
    Rsqrt,
    /// 1/(1+e⁻ᵃ)
    Sigmoid,
    /// GELU, tanh form
    Gelu,
    /// erf(a), the error function (exact GELU's)
    Erf,
    /// eᵃ on nonzero a, 0 on zero (sparsity-preserving exponential)
    ExpNz,
    /// eᵃ⁻ᵇ where a ≠ 0, else 0 (shifted exponential of a masked softmax)
    ExpSubNz,
    /// −∞ for 0, a otherwise: makes a max reduction ignore zeros
    ZeroToNegInf,
    /// 0 for −∞, a otherwise: an all-zero max group reads as 0
    NegInfToZero,
    /// `a op c` (or `c op a` when `scalar_first`) with a constant `c`.
    Scalar {
        /// The binary operation.
        op: ScalarOp,
        /// The constant.
        scalar: f64,
        /// Whether the constant is the left operand.
        scalar_first: bool,
    },
}

/// Binary operations usable with a scalar constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ScalarOp {
    /// +
    Add,
    /// −
    Sub,
    /// ×
    Mul,
    /// ÷
    Div,
    /// max
    Max,
    /// eᵃ⁻ᶜ where a ≠ 0, else 0 (the non-constant operand is `a`)
    ExpSubNz,
}

impl ScalarOp {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            ScalarOp::Add => a + b,
            ScalarOp::Sub => a - b,
            ScalarOp::Mul => mul(a, b),
            ScalarOp::Div => div(a, b),
            ScalarOp::Max => a.max(b),
            ScalarOp::ExpSubNz => exp_sub_nz(a, b),
        }
    }
}

/// eᵃ⁻ᵇ where a ≠ 0, else 0.
#[inline]
pub fn exp_sub_nz(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else {
        (a - b).exp()
    }
}

/// Multiplication with zero absorbing (0·∞ = 0), matching sparse semantics where an absent
/// operand annihilates the product.
#[inline(always)]
pub fn mul(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        a * b
    }
}

/// Division defined only where both operands are nonzero (0 elsewhere), the program
/// semantics of `/` (see ARCHITECTURE.md).
#[inline]
pub fn div(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        0.0
    } else {
        a / b
    }
}

impl AluOp {
    /// Number of value inputs (1 or 2).
    pub fn arity(self) -> usize {
        match self {
            AluOp::Add | AluOp::Sub | AluOp::Mul | AluOp::Div | AluOp::Max | AluOp::ExpSubNz => 2,
            AluOp::Neg
            | AluOp::Relu
            | AluOp::Exp
            | AluOp::Rsqrt
            | AluOp::Sigmoid
            | AluOp::Gelu
            | AluOp::Erf
            | AluOp::ExpNz
            | AluOp::ZeroToNegInf
            | AluOp::NegInfToZero
            | AluOp::Scalar { .. } => 1,
        }
    }

    /// Applies a binary operation (always inlined: simulator loops call it with a constant
    /// operation per token, which then folds to one arithmetic instruction).
    #[inline(always)]
    pub fn apply2(self, a: f64, b: f64) -> f64 {
        match self {
            AluOp::Add => a + b,
            AluOp::Sub => a - b,
            AluOp::Mul => mul(a, b),
            AluOp::Div => div(a, b),
            AluOp::Max => a.max(b),
            AluOp::ExpSubNz => exp_sub_nz(a, b),
            AluOp::Neg
            | AluOp::Relu
            | AluOp::Exp
            | AluOp::Rsqrt
            | AluOp::Sigmoid
            | AluOp::Gelu
            | AluOp::Erf
            | AluOp::ExpNz
            | AluOp::ZeroToNegInf
            | AluOp::NegInfToZero
            | AluOp::Scalar { .. } => self.apply1(a),
        }
    }

    /// Applies a unary (or scalar) operation.
    #[inline]
    pub fn apply1(self, a: f64) -> f64 {
        match self {
            AluOp::Neg => -a,
            AluOp::Relu => a.max(0.0),
            AluOp::Exp => a.exp(),
            AluOp::Rsqrt => 1.0 / a.sqrt(),
            AluOp::Sigmoid => 1.0 / (1.0 + (-a).exp()),
            AluOp::Gelu => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * a * (1.0 + (c * (a + 0.044715 * a * a * a)).tanh())
            }
            AluOp::Erf => fuseflow_tensor::erf(a),
            AluOp::ExpNz => {
                if a == 0.0 {
                    0.0
                } else {
                    a.exp()
                }
            }
            AluOp::ZeroToNegInf => {
                if a == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    a
                }
            }
            AluOp::NegInfToZero => {
                if a == f64::NEG_INFINITY {
                    0.0
                } else {
                    a
                }
            }
            AluOp::Scalar { op, scalar, scalar_first } => {
                if scalar_first {
                    op.apply(scalar, a)
                } else {
                    op.apply(a, scalar)
                }
            }
            // A binary operation given one operand passes it through.
            AluOp::Add | AluOp::Sub | AluOp::Mul | AluOp::Div | AluOp::Max | AluOp::ExpSubNz => a,
        }
    }

    /// Short name for dumps.
    pub fn name(self) -> String {
        match self {
            AluOp::Add => "add".into(),
            AluOp::Sub => "sub".into(),
            AluOp::Mul => "mul".into(),
            AluOp::Div => "div".into(),
            AluOp::Max => "max".into(),
            AluOp::Neg => "neg".into(),
            AluOp::Relu => "relu".into(),
            AluOp::Exp => "exp".into(),
            AluOp::Rsqrt => "rsqrt".into(),
            AluOp::Sigmoid => "sigmoid".into(),
            AluOp::Gelu => "gelu".into(),
            AluOp::Erf => "erf".into(),
            AluOp::ExpNz => "expnz".into(),
            AluOp::ExpSubNz => "expsubnz".into(),
            AluOp::ZeroToNegInf => "zero_to_neginf".into(),
            AluOp::NegInfToZero => "neginf_to_zero".into(),
            AluOp::Scalar { op, scalar, scalar_first } => {
                let o = format!("{op:?}").to_lowercase();
                if scalar_first {
                    format!("{scalar}_{o}")
                } else {
                    format!("{o}_{scalar}")
                }
            }
        }
    }
}

/// A SAM primitive and its parameters. Port conventions are given per variant as
/// `inputs → outputs`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Op {
    /// Root reference generator: `() → ref` emitting `[0, D]`.
    Root,
    /// Level scanner: `ref → crd, ref`. Reads level `level` (logical dimension `dim`) of `tensor`.
    Scan {
        /// Tensor name.
        tensor: String,
        /// Storage level.
        level: u32,
        /// Logical dimension stored at that level.
        dim: u32,
        /// Level format.
        format: LevelFormat,
        /// Index variable iterated (informational).
        index: String,
    },
    /// Dense range scanner over `0..size` with no tensor behind it: `ref → crd, ref`.
    /// Used where a union must cover a full dimension (broadcast sums, functions with f(0)≠0).
    Range {
        /// Dimension size.
        size: u32,
        /// Index variable iterated (informational).
        index: String,
    },
    /// Repeat-signal generator: `crd|ref|val → repsig` (data and `N` → `R`, stop → `S`).
    RepSig,
    /// Repeater: `ref|val (payload), repsig → same kind as the payload`.
    Repeat {
        /// Index variable repeated over (informational).
        index: String,
    },
    /// n-ary joiner: inputs are, for each operand `p`, its crd stream followed by
    /// `payloads[p]` payload streams (refs or values); outputs are the joined crd stream and
    /// then every operand's payload streams in input order.
    Join {
        /// Intersection or union.
        kind: JoinKind,
        /// Number of payload streams per operand.
        payloads: Vec<u32>,
        /// Index variable joined (informational).
        index: String,
    },
    /// Locator for a dense level: `crd, ref (parent position, repeated) → ref` with
    /// `ref_out = parent * size + crd`. Replaces a dense scan plus intersection.
    Locate {
        /// Tensor located into.
        tensor: String,
        /// Storage level.
        level: u32,
        /// Dense size of the level.
        size: u32,
        /// Index variable (informational).
        index: String,
    },
    /// Value array: `ref → val` (`N` loads 0).
    Array {
        /// Tensor whose values are read.
        tensor: String,
    },
    /// ALU: `val[, val] → val`.
    Alu {
        /// Operation.
        op: AluOp,
    },
    /// Reducer over the innermost level: `val → val` (one level removed).
    Reduce {
        /// Sum or max.
        op: ReduceKind,
    },
    /// Sparse accumulator over a non-innermost level.
    /// Order 1: `reduced crd, inner crd, val → inner crd, val`.
    /// Order 2: `reduced crd, middle crd, inner crd, val → middle crd, inner crd, val`.
    Spacc {
        /// Number of levels inside the reduced one (1 or 2).
        order: u8,
        /// Sum or max.
        op: ReduceKind,
        /// Reduced index variable (informational).
        index: String,
    },
    /// Coordinate dropper (paper semantics): `outer crd, inner crd|val → outer crd, inner`.
    /// Removes outer coordinates whose inner fiber is empty, and those empty fibers.
    CrdDrop,
    /// Level writer: `crd → ()`.
    LevelWrite {
        /// Output tensor.
        tensor: String,
        /// Output level written.
        level: u32,
    },
    /// Value writer: `val → ()`.
    ValWrite {
        /// Output tensor.
        tensor: String,
    },
    /// Lane fork (Comal `Scatter`): `data → data × lanes`. Sends the stream's data tokens (the
    /// elements of the parallelized level, which is the stream's own level) to the lanes
    /// round-robin, the lane index advancing across fibers, and every stop and `D` to every
    /// lane. Opens parallel region `region` (see `docs/parallel.md`).
    Fork {
        /// Number of lanes (≥ 2).
        lanes: u32,
        /// Index variable parallelized (informational).
        index: String,
        /// Parallel region this fork feeds; its gathers carry the same number.
        region: u32,
    },
    /// Lane join (Comal `Gather`): `[control crd,] lane₀ … lane₋₁ → data`. Reassembles the
    /// lanes' streams in the original element order with the original stop levels. `depth` is
    /// how many levels the stream lies below the parallelized level: at depth 0 the elements
    /// are single tokens and no control is needed; deeper, the first input is the parallelized
    /// level's crd stream (the fork's input side), which says where each element's subtree
    /// ends and which fibers of the level are empty.
    Gather {
        /// Number of lanes (≥ 2).
        lanes: u32,
        /// Levels between the stream and the parallelized level.
        depth: u32,
        /// Index variable parallelized (informational).
        index: String,
        /// Parallel region whose lanes this gathers.
        region: u32,
    },
}

impl Op {
    /// Stable kind name, as used in counts and dumps.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Root => "root",
            Op::Scan { format: LevelFormat::Compressed, .. } => "scan_compressed",
            Op::Scan { format: LevelFormat::Dense, .. } => "scan_dense",
            Op::Range { .. } => "range",
            Op::RepSig => "repsig",
            Op::Repeat { .. } => "repeat",
            Op::Join { kind: JoinKind::Intersect, .. } => "intersect",
            Op::Join { kind: JoinKind::Union, .. } => "union",
            Op::Locate { .. } => "locate",
            Op::Array { .. } => "array",
            Op::Alu { .. } => "alu",
            Op::Reduce { .. } => "reduce",
            Op::Spacc { .. } => "spacc",
            Op::CrdDrop => "crddrop",
            Op::LevelWrite { .. } => "level_write",
            Op::ValWrite { .. } => "val_write",
            Op::Fork { .. } => "fork",
            Op::Gather { .. } => "gather",
        }
    }

    /// The parallel region of a fork or gather.
    pub fn region(&self) -> Option<u32> {
        match self {
            Op::Fork { region, .. } | Op::Gather { region, .. } => Some(*region),
            Op::Root
            | Op::Scan { .. }
            | Op::Range { .. }
            | Op::RepSig
            | Op::Repeat { .. }
            | Op::Join { .. }
            | Op::Locate { .. }
            | Op::Array { .. }
            | Op::Alu { .. }
            | Op::Reduce { .. }
            | Op::Spacc { .. }
            | Op::CrdDrop
            | Op::LevelWrite { .. }
            | Op::ValWrite { .. } => None,
        }
    }

    /// A copy with a fork's or gather's region renumbered by `f` (other primitives unchanged):
    /// each lane's copy of a nested region needs a number of its own.
    pub fn renumbered(&self, f: &mut impl FnMut(u32) -> u32) -> Op {
        let mut op = self.clone();
        if let Op::Fork { region, .. } | Op::Gather { region, .. } = &mut op {
            *region = f(*region);
        }
        op
    }

    /// Whether the node has no outputs (writers).
    pub fn is_sink(&self) -> bool {
        matches!(self, Op::LevelWrite { .. } | Op::ValWrite { .. })
    }

    /// Output stream kinds, given the input kinds.
    pub fn output_kinds(&self, ins: &[StreamKind]) -> Vec<StreamKind> {
        use StreamKind::*;
        match self {
            Op::Root => vec![Ref],
            Op::Scan { .. } | Op::Range { .. } => vec![Crd, Ref],
            Op::RepSig => vec![RepSig],
            Op::Repeat { .. } => vec![ins.first().copied().unwrap_or(Ref)],
            Op::Join { payloads, .. } => {
                let mut out = vec![Crd];
                let mut i = 0;
                for &p in payloads {
                    i += 1; // crd
                    for _ in 0..p {
                        out.push(ins.get(i).copied().unwrap_or(Ref));
                        i += 1;
                    }
                }
                out
            }
            Op::Locate { .. } => vec![Ref],
            Op::Array { .. } | Op::Alu { .. } | Op::Reduce { .. } => vec![Val],
            Op::Spacc { order, .. } => {
                let mut v = vec![Crd; *order as usize];
                v.push(Val);
                v
            }
            Op::CrdDrop => vec![Crd, ins.get(1).copied().unwrap_or(Crd)],
            Op::LevelWrite { .. } | Op::ValWrite { .. } => vec![],
            Op::Fork { lanes, .. } => vec![ins.first().copied().unwrap_or(Ref); *lanes as usize],
            Op::Gather { depth, .. } => vec![ins.get(usize::from(*depth > 0)).copied().unwrap_or(Ref)],
        }
    }

    /// Expected input kinds; `None` entries accept ref or val (payloads).
    pub fn input_kinds(&self) -> Vec<Option<StreamKind>> {
        use StreamKind::*;
        match self {
            Op::Root => vec![],
            Op::Scan { .. } | Op::Range { .. } => vec![Some(Ref)],
            Op::RepSig => vec![None],
            Op::Repeat { .. } => vec![None, Some(RepSig)],
            Op::Join { payloads, .. } => {
                let mut v = Vec::new();
                for &p in payloads {
                    v.push(Some(Crd));
                    v.extend(std::iter::repeat_n(None, p as usize));
                }
                v
            }
            Op::Locate { .. } => vec![Some(Crd), Some(Ref)],
            Op::Array { .. } => vec![Some(Ref)],
            Op::Alu { op } => vec![Some(Val); op.arity()],
            Op::Reduce { .. } => vec![Some(Val)],
            Op::Spacc { order, .. } => {
                let mut v = vec![Some(Crd); *order as usize + 1];
                v.push(Some(Val));
                v
            }
            Op::CrdDrop => vec![Some(Crd), None],
            Op::LevelWrite { .. } => vec![Some(Crd)],
            Op::ValWrite { .. } => vec![Some(Val)],
            // Lanes carry any kind but repeat signals (checked by the lane verifier: all of
            // one kind).
            Op::Fork { .. } => vec![None],
            Op::Gather { lanes, depth, .. } => {
                let mut v = if *depth > 0 { vec![Some(Crd)] } else { Vec::new() };
                v.extend(std::iter::repeat_n(None, *lanes as usize));
                v
            }
        }
    }

    /// Names of the output ports, for stream names.
    pub fn output_port_names(&self, n: usize) -> Vec<String> {
        match self {
            Op::Root | Op::Locate { .. } | Op::Repeat { .. } => vec!["ref".into()][..n.min(1)].to_vec(),
            Op::Scan { .. } | Op::Range { .. } => vec!["crd".into(), "ref".into()],
            Op::RepSig => vec!["repsig".into()],
            Op::Join { .. } => (0..n).map(|i| if i == 0 { "crd".into() } else { format!("out{}", i - 1) }).collect(),
            Op::Array { .. } | Op::Alu { .. } | Op::Reduce { .. } => vec!["val".into()],
            Op::Spacc { order, .. } => {
                let mut v: Vec<String> = (0..*order).map(|i| format!("crd{i}")).collect();
                v.push("val".into());
                v
            }
            Op::CrdDrop => vec!["outer".into(), "inner".into()],
            Op::LevelWrite { .. } | Op::ValWrite { .. } => vec![],
            Op::Fork { .. } => (0..n).map(|l| format!("lane{l}")).collect(),
            Op::Gather { .. } => vec!["out".into()],
        }
    }

    /// One-line description of the parameters, for dumps.
    pub fn describe(&self) -> String {
        match self {
            Op::Root => "root".into(),
            Op::Scan { tensor, level, dim, format, index } => {
                format!("scan_{}[{tensor} level={level} dim={dim} index={index}]", format.name())
            }
            Op::Range { size, index } => format!("range[size={size} index={index}]"),
            Op::RepSig => "repsig".into(),
            Op::Repeat { index } => format!("repeat[index={index}]"),
            Op::Join { kind, payloads, index } => {
                let k = if *kind == JoinKind::Intersect { "intersect" } else { "union" };
                let p: Vec<String> = payloads.iter().map(|p| p.to_string()).collect();
                format!("{k}[index={index} payloads={}]", p.join(","))
            }
            Op::Locate { tensor, level, size, index } => {
                format!("locate[{tensor} level={level} size={size} index={index}]")
            }
            Op::Array { tensor } => format!("array[{tensor}]"),
            Op::Alu { op } => format!("alu[{}]", op.name()),
            Op::Reduce { op } => format!("reduce[{}]", if *op == ReduceKind::Sum { "sum" } else { "max" }),
            Op::Spacc { order, op, index } => {
                format!("spacc{order}[{} index={index}]", if *op == ReduceKind::Sum { "sum" } else { "max" })
            }
            Op::CrdDrop => "crddrop".into(),
            Op::LevelWrite { tensor, level } => format!("level_write[{tensor} level={level}]"),
            Op::ValWrite { tensor } => format!("val_write[{tensor}]"),
            Op::Fork { lanes, index, region } => format!("fork[index={index} lanes={lanes} region={region}]"),
            Op::Gather { lanes, depth, index, region } => {
                format!("gather[index={index} lanes={lanes} depth={depth} region={region}]")
            }
        }
    }
}

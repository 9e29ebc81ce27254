//! Comal interop: our SAM graphs as tortilla protobuf graphs plus a SAM tensor directory.
//!
//! [`to_comal`] exports a [`fuseflow_graph::Graph`] as a [`proto::ComalGraph`] (the schema of
//! `stanford-ppl/tortilla`, reproduced in `proto/comal.proto`), [`export_dir`] writes it as
//! `graph.bin` next to the input tensors in the SAM/Comal text layout, and [`from_comal`] /
//! [`import_dir`] read such a graph back, ours or one emitted by the FuseFlow compiler, into a
//! verified graph and its input tensors. The export is in the form the Comal simulator
//! (`fuseflow-authors/comal`) runs: it follows Comal's wiring rules and works around the
//! Comal behaviours that would give other results (see "Forms only the export has" below).
//! Export then import reproduces our graphs exactly (same nodes in the same order, same
//! streams): the importer folds those forms back, so simulating the imported graph gives the
//! same cycles and outputs as simulating the original. [`comal_gaps`] lists what Comal still
//! cannot run; `scripts/comal-crosscheck.sh` and `docs/comal.md` compare Comal with us.
//!
//! # Wiring
//! Stream ids live in four namespaces (ref, crd, val, repsig) and start at 1 in each. Every id
//! has exactly one producer and one consumer: a stream with several consumers is produced into
//! a `broadcast` operation with a fresh output id per consumer, and an unconsumed (void)
//! output gets id 0. Consumers never read id 0. The importer resolves broadcasts (and Comal
//! locate pass-through outputs) back into fan-out and sorts the operations topologically,
//! breaking ties by `Operation.id`, which the exporter sets to our node index (extra
//! operations get ids after the last node).
//!
//! # Operation mapping and our conventions
//! Parameters the schema has no field for travel in `Operation.name`, which Comal ignores, as
//! `kind;key=value;...` (see the `meta` module). Per primitive:
//!
//! - **Root** → `root`. **Array** → `array`. **Reduce** → `reduce` (`ADD`/`MAX`; `ADDSUM`
//!   imports as a sum). **ValWrite** → `val_write`.
//! - **Scan** → `fiber_lookup` with `tensor`, `mode` = logical dimension, `format`
//!   `"compressed"`/`"dense"`, `index`, `label`, and `level=L` in the name. Without `level`
//!   (other emitters), the level is the number of levels above the scanner on its reference
//!   chain.
//! - **Range** (a dense scan of `0..size` with no tensor) → a dense `fiber_lookup` of the
//!   synthetic tensor `__range_<size>`, mode 0. [`export_dir`] writes its shape file
//!   `tensor___range_<size>_mode_shape`, which is all Comal needs; the importer reads the size
//!   from that file. Input tensor names starting with `__range_` are therefore reserved.
//! - **RepSig + Repeat.** Comal's `repeat` builds its repeat-signal generator itself from
//!   `rep_ref` (a ref stream) or `rep_val`, so no RepSig is exported as an operation of its
//!   own. A RepSig whose input is a ref or val stream is folded into every Repeat it drives
//!   (`rep_ref`/`rep_val` = the RepSig's input, with `repsig=<node>`, `sig_label`, `sig_name`
//!   in the name so the importer rebuilds one shared RepSig at its original position). A
//!   RepSig over a **crd** stream, which is what our compiler emits, is driven instead by the
//!   ref or val stream produced in step with that crd stream, which has the same tokens'
//!   structure: a scanner's (or range's) references, a joiner's first payload output (for a
//!   joiner without payloads, the payload given to its range operand, see Join), an order-1
//!   accumulator's values (order 2: the values next to its inner crd). When our graph leaves
//!   that port void, the export wires it up all the same. The name adds `sig_port=<p>` (the
//!   crd stream's output port at that producer) and `crd_name`, and the importer rebuilds the
//!   RepSig on the crd stream. Only a crd stream with no such sibling (none of our compiler's
//!   patterns) falls back to the standalone `repeatsig` operation (crd → repsig, field 16)
//!   with `sig=repsig` on the repeat, which our importer reads back but Comal cannot run. A
//!   `repeat` without these markers (other emitters) imports as a RepSig over
//!   `rep_ref`/`rep_val` plus a Repeat.
//! - **Join** (n-ary, `payloads[p]` payload streams per operand) → `joiner` with one
//!   `JoinBundle` per operand when every operand has exactly one payload. Otherwise it is split
//!   into `J = max(1, max payloads)` joiners, each fed by broadcast copies of every operand's
//!   crd stream: joiner `j` carries payload `j` of each operand that has one, and for an
//!   operand with fewer payloads a filler copy of its payload 0 whose output is void (so each
//!   joiner still has one payload per operand, as Comal requires). An operand with no payload
//!   at all (a range) gets the reference stream of its scanner as payload, with a void output
//!   (or, in part 0, the output a repeat signal reads). Only joiner 0 produces the joined crd
//!   stream. The parts carry `group=<node>;part=<j>;payloads=<list>` in their names and are
//!   merged back into one Join.
//! - **Locate** (`ref = parent * size + crd`) → `locate` with `input_crd`, `input_ref` (the
//!   repeated parent position) and `output_ref1` (the located reference; Comal's iterate-locate
//!   passes the coordinate there); `output_ref2` and `output_crd` are void. `tensor`, `level`,
//!   `dim`, `size` and `index` travel in the name. Only a locate at a tensor's top level (its
//!   parent position is always 0) is exported this way; for one below it, see "Forms only the
//!   export has". A locate without these keys (other emitters) locates into the tensor whose
//!   array or scanner reads its output, at the level below its parent reference, with that
//!   level's size from the shape file (Comal instead passes the coordinate as the reference,
//!   which agrees whenever the parent position is 0). Its pass-through outputs import as
//!   extra consumers of its inputs.
//! - **Alu** → `alu` with one stage where Comal's ALU computes the op exactly:
//!   Add/Sub/Mul/Div/Max → `ADD`/`SUB`/`MUL`/`DIV`/`MAX`, Exp/Rsqrt/Sigmoid →
//!   `EXP`/`RSQRT`/`SIGMOID`, Relu → `MAX` with scalar 0, `a+c`, `a×c`, `a÷c`, `max(a,c)` →
//!   `SCALARADD`/`SCALARMUL`/`SCALARDIV`/`MAX` with `scalar = c`, `a−c` → `SCALARADD` with
//!   `scalar = −c`, Neg → `SCALARMUL` with scalar −1. The exact op is always in the name
//!   (`op=<code>`, plus `first=1` for a constant left operand), so import is exact; an ALU
//!   without `op=` (other emitters) is read from its stage. An op this crate does not know is
//!   an export error. Beyond one stage:
//!   - The sparsity-preserving exponentials have no stage but an exact composition of Comal's
//!     (the `alu` module): **ExpSubNz(a, b)** is exported as five `alu` operations computing
//!     `max(exp((a ÷ a) × (a − b)), 0)` (`SUB`, `DIV` of `a` by itself, `MUL`, `EXP`, `MAX` with
//!     scalar 0), **ExpNz(a)** as four computing `max(exp((a ÷ a) × a), 0)`. `a ÷ a` is exactly
//!     1 for a finite nonzero `a` and NaN for ±0, and Comal's scalar `MAX` (`f32::max`) returns
//!     the operand that is not NaN, so the chain gives exactly f32's `e^(a−b)` where `a ≠ 0` and
//!     0 where `a = 0` (subnormal `a` included, no `∞ × 0`); it differs from ours only where `a`
//!     is ±∞ or NaN or `b` is NaN (0 instead of ∞ or NaN). The steps are named
//!     `alu;op=<code>;group=<node>;part=<k>`; step 0 has the node's id, the others ids after the
//!     last node, and the inner streams fresh val ids. The importer checks that the steps are
//!     complete and wired as defined, and folds them into the one node.
//!   - Comal has no ±∞ conversion. **ZeroToNegInf** → `SCALARADD` with scalar 0 (the value
//!     passes through) and **NegInfToZero** → `MAX` with scalar 0: around a max reduction (our
//!     `maxnz`) Comal then computes max(0, every entry) per group, whatever its reducer starts
//!     from, which is our result wherever a group's largest nonzero is ≥ 0 or the group has no
//!     nonzero (stored zeros only, or empty); [`comal_gaps`] notes it.
//!   - An op with no Comal form (Gelu, `c−a`, `c÷a`, the shifted exponential with a constant)
//!     gets an `alu` with **no stage**, so Comal rejects it rather than computing something
//!     else, and `scalar = c` for constant ops.
//! - **Spacc** → `spacc`: order 1 has `input_outer_crds = [reduced]`; order 2 has
//!   `input_outer_crds = [middle, reduced]` and `output_outer_crds = [middle out]`; a max
//!   accumulator has `op=max` in the name (the schema has no field for it: Comal sums).
//! - **CrdDrop** → `coord_drop` (outer/inner). A value inner stream (the schema's fields are
//!   crd-typed) is marked `inner=val`, with its ids in the val namespace.
//! - **LevelWrite** → `fiber_write` with `tensor`, `mode_val` = the logical dimension it
//!   writes, `size` = that dimension's size, `format` `"compressed"`, and `level=L` in the name;
//!   the importer rebuilds the output bindings from these. Without `level`, a tensor's level
//!   writers are numbered in the order they appear in the operation list. A `size` that is not
//!   a number (the FuseFlow compiler writes none) is the size of the input dimension, or
//!   range, whose coordinates reach the writer (through joiners, droppers and accumulators);
//!   only when no input determines it does an output shape file help.
//!
//! # Forms only the export has
//! Our stop tokens carry a `gap` (ARCHITECTURE.md, "Semantics decisions") that resolves the
//! SAM encoding ambiguity; Comal's tokens have none, and some Comal primitives differ from
//! ours. The export adds what Comal needs to write the same tensors, and the importer removes
//! it again:
//!
//! - **Coordinate droppers before the writers.** Our level writers record a segment for every
//!   real fiber, empty ones included; Comal's record one only at a stop that follows a
//!   coordinate, so a kept outer coordinate with an empty inner fiber would lose its segment.
//!   Our compiler drops such coordinates above compressed output levels only; the export adds a
//!   `coord_drop` (name `crddrop;compat=1`) above every other output level whose inner fibers
//!   can be empty (not a dense scan or range, nor a union with one), dense levels included:
//!   Comal writes every level compressed anyway. The importer turns each into plain wires.
//! - **Locates below the top level.** Comal's iterate-locate is right only where the parent
//!   position is 0. A locate whose reference input is a repeat of un-repeated parent references
//!   `P` driven by the locate's own coordinates `X` (our compiler's pattern) is exported as a
//!   dense `fiber_lookup` of the located level over `P` (name `fiberlookup;locate=<node>`)
//!   and an intersecting `joiner` (name `joiner;locate=<node>;...`, id = the locate's node) of
//!   `X` (with its sibling payload, output void) and that scan: the scan's references that
//!   survive are the located ones. The joiner's name carries the locate's `tensor`, `level`,
//!   `size`, `dim`, `index`, and its repeat (`rep`, `rep_label`, `rep_name`, `rep_index`, or
//!   `rep_kept=1` when the repeat has other consumers and is exported as usual) and that
//!   repeat's signal (`repsig`, `sig_label`, `sig_name`); the importer rebuilds the locate,
//!   the repeat and its RepSig. Comal times this form as the intersection it is.
//! - **Dense storage of unioned levels.** A union gives an operand that lacks a coordinate an
//!   `N` reference; our scanners turn it into an empty fiber, Comal's into an `N` coordinate
//!   that its joiners cannot take (its union panics). Where a union's references for an
//!   operand drive a scanner, and that operand's coordinates come from a compressed level of
//!   an input tensor that is not its last, [`export_dir`] stores that level densely (empty
//!   fibers below the coordinates without entries) and its scanners are exported as dense
//!   (name `stored=dense`): the operand then lacks nothing. The importer reads the level as
//!   stored and converts the tensor back to its compressed level (exact for tensors without
//!   stored empty fibers, which is what our readers and generators give).
//!
//! What the export cannot make Comal run, or makes it run with other results, is listed by
//! [`comal_gaps`] (and printed by `fuseflow compile`): ALU ops without a Comal form, a binary
//! `MAX` (Comal's binary ALU stops at a `todo!`), a max over nonzeros (exact only where a
//! group's largest nonzero is ≥ 0 or it has none, above) and the ±∞ conversions outside one,
//! other max reductions (Comal's restart from 0 after the first fiber), max accumulators
//! (Comal's `spacc` always sums), and joiners over the `N` coordinates that Comal's scanner
//! emits for a union's absent operand when dense storage cannot help (an operand computed in
//! the graph).
//! Two empty-fiber cases stay beyond Comal's primitives: a leading empty inner fiber (its
//! writer records a segment for a stop that is the stream's first token) and an empty fiber
//! above a reduction (a reducer without `gap` emits a value for it).
//!
//! Input bindings are rebuilt from the scanners and locators of each tensor (level, dimension,
//! format) and the tensor directory (`tensor_<T>_mode_shape` for the shape; a level no
//! operation describes is compressed if its `seg` file exists); the data is read and validated
//! with [`fuseflow_tensor::read_tensor_dir`]. An input binding no operation refers to is not
//! rebuilt.

#![warn(missing_docs)]

mod alu;
mod export;
mod import;
mod meta;
pub mod proto;

use std::path::Path;

pub use export::{comal_gaps, export_dir, to_comal};
pub use import::{decode_comal, from_comal, import_dir, import_file};
pub use proto::ComalGraph;

use fuseflow_graph::{NodeId, VerifyError};
use fuseflow_tensor::IoError;

/// File name of the binary protobuf graph inside an exported directory.
pub const GRAPH_FILE: &str = "graph.bin";

/// Prefix of the synthetic tensor names of range scanners.
pub const RANGE_PREFIX: &str = "__range_";

/// Channel size written to `ComalGraph.channel_size` (the value the FuseFlow emitter writes).
pub const CHANNEL_SIZE: u64 = 1024;

/// Export failures; each message is one line naming the node, tensor or file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The graph does not pass [`fuseflow_graph::Graph::verify`].
    #[error("graph {graph}: does not verify: {source}")]
    Verify {
        /// Graph name.
        graph: String,
        /// The verifier's error.
        #[source]
        source: VerifyError,
    },
    /// A node the tortilla schema cannot express.
    #[error("node {node} ({kind}): {message}")]
    Unsupported {
        /// Node.
        node: NodeId,
        /// Primitive kind.
        kind: &'static str,
        /// What cannot be expressed.
        message: String,
    },
    /// A tensor name the export reserves or cannot use.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the tensor directory failed (the error names the file).
    #[error(transparent)]
    TensorDir(#[from] IoError),
    /// Writing a file failed.
    #[error("{file}: cannot {action}: {source}")]
    Io {
        /// File or directory.
        file: String,
        /// What was attempted.
        action: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Import failures; each message is one line naming the operation, stream, tensor or file.
///
/// Operations are named as `operation #P (id N, kind)`, where `P` is the position in
/// `ProgramGraph.operators` and `N` its `Operation.id`.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading a file failed.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File.
        file: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid tortilla `ComalGraph` protobuf.
    #[error("{origin}: malformed tortilla protobuf: {message}")]
    Decode {
        /// File name or other origin of the bytes.
        origin: String,
        /// Decoder message.
        message: String,
    },
    /// `ComalGraph.graph` is absent.
    #[error("comal graph {name:?}: no program graph (field 3)")]
    NoGraph {
        /// `ComalGraph.name`.
        name: String,
    },
    /// An operation with no `op` set (an unknown or newer operation type).
    #[error("{op}: no op set (unknown or newer operation type)")]
    NoOp {
        /// The operation.
        op: String,
    },
    /// An operation we cannot import.
    #[error("{op}: unsupported: {message}")]
    Unsupported {
        /// The operation.
        op: String,
        /// What is unsupported.
        message: String,
    },
    /// A required field is absent.
    #[error("{op}: missing {field}")]
    MissingField {
        /// The operation.
        op: String,
        /// Field path.
        field: String,
    },
    /// A consumer names stream id 0, which means void.
    #[error("{op}: input {field} uses stream id 0 (void)")]
    VoidInput {
        /// The operation.
        op: String,
        /// Field path.
        field: String,
    },
    /// A consumed stream that nothing produces.
    #[error("{kind} stream {id}: consumed by {op} but produced by no operation")]
    Dangling {
        /// Namespace.
        kind: &'static str,
        /// Stream id.
        id: u64,
        /// Consumer.
        op: String,
    },
    /// Two producers for one stream id.
    #[error("{kind} stream {id}: produced by both {first} and {second}")]
    ProducedTwice {
        /// Namespace.
        kind: &'static str,
        /// Stream id.
        id: u64,
        /// First producer.
        first: String,
        /// Second producer.
        second: String,
    },
    /// Two consumers for one stream id (several consumers need a broadcast).
    #[error("{kind} stream {id}: consumed by both {first} and {second} (use a broadcast)")]
    ConsumedTwice {
        /// Namespace.
        kind: &'static str,
        /// Stream id.
        id: u64,
        /// First consumer.
        first: String,
        /// Second consumer.
        second: String,
    },
    /// A stream of the wrong kind, or the wrong number of streams, for an operation.
    #[error("{op}: {message}")]
    Kind {
        /// The operation.
        op: String,
        /// What does not match.
        message: String,
    },
    /// The operations form a cycle.
    #[error("{op}: part of a cycle of operations")]
    Cycle {
        /// One operation on the cycle.
        op: String,
    },
    /// Our `key=value` suffix of `Operation.name` is malformed or inconsistent.
    #[error("{op}: bad name {name:?}: {message}")]
    Meta {
        /// The operation.
        op: String,
        /// `Operation.name`.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Tensor data or declared shapes that contradict the graph.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// Reading the tensor directory failed (the error names the file).
    #[error(transparent)]
    TensorDir(#[from] IoError),
    /// The imported graph fails verification (should not happen; reported, not panicked).
    #[error("imported graph does not verify: {0}")]
    Verify(#[from] VerifyError),
}

/// Display name of a path for messages.
pub(crate) fn path_name(p: &Path) -> String {
    p.display().to_string()
}

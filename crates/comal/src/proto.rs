//! The tortilla protobuf schema (package `tortilla`), written by hand with `prost` derives.
//!
//! Every message, field number, oneof and enum mirrors `proto/comal.proto` exactly; names
//! follow what `prost-build` would generate (nested messages live in a module named after
//! their parent in snake case, `StreamID` becomes `StreamId`, `ALU` becomes `Alu`). The unit
//! tests at the bottom parse `proto/comal.proto` and check the field numbers and wire types of
//! every struct here against it, so the two cannot drift apart silently.

/// `tortilla.ComalGraph`: the top-level message Comal reads.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ComalGraph {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub name: ::prost::alloc::string::String,
    /// Channel depth hint; the emitter writes 1024 and Comal ignores it.
    #[prost(uint64, tag = "2")]
    pub channel_size: u64,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub graph: ::core::option::Option<ProgramGraph>,
}

/// `tortilla.ProgramGraph`: a named list of operations (fields 3–10 reserved).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ProgramGraph {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub name: ::prost::alloc::string::String,
    /// Field 2: `repeated message`.
    #[prost(message, repeated, tag = "2")]
    pub operators: ::prost::alloc::vec::Vec<Operation>,
}

/// Defines one of the four identical stream messages and its nested `StreamID`.
macro_rules! stream_message {
    ($(#[$doc:meta])* $name:ident, $module:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct $name {
            /// Field 1: `message`.
            #[prost(message, optional, tag = "1")]
            pub id: ::core::option::Option<$module::StreamId>,
            /// Field 2: `string`.
            #[prost(string, tag = "2")]
            pub name: ::prost::alloc::string::String,
        }

        /// Nested messages of the stream message.
        pub mod $module {
            /// `StreamID`: the numeric stream id (0 = void).
            #[derive(Clone, Copy, PartialEq, ::prost::Message)]
            pub struct StreamId {
                /// Field 1: `uint64`.
                #[prost(uint64, tag = "1")]
                pub id: u64,
            }
        }

        impl $name {
            /// A stream message with this id and name.
            pub fn new(id: u64, name: impl Into<String>) -> Self {
                $name { id: Some($module::StreamId { id }), name: name.into() }
            }

            /// The numeric id (0 when absent, i.e. void).
            pub fn sid(&self) -> u64 {
                self.id.map_or(0, |s| s.id)
            }
        }
    };
}

stream_message!(
    /// `tortilla.RefStream`: a reference stream end.
    RefStream,
    ref_stream
);
stream_message!(
    /// `tortilla.ValStream`: a value stream end.
    ValStream,
    val_stream
);
stream_message!(
    /// `tortilla.CrdStream`: a coordinate stream end.
    CrdStream,
    crd_stream
);
stream_message!(
    /// `tortilla.RepSigStream`: a repeat-signal stream end.
    RepSigStream,
    rep_sig_stream
);

/// `tortilla.Operation`: one primitive (fields 3–10 reserved).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Operation {
    /// Free-text kind label (Comal ignores it; see the crate docs for our `key=value` suffix).
    #[prost(string, tag = "1")]
    pub name: ::prost::alloc::string::String,
    /// Field 2: `uint64`.
    #[prost(uint64, tag = "2")]
    pub id: u64,
    /// The `op` oneof (fields 11–31): which primitive this is.
    #[prost(
        oneof = "operation::Op",
        tags = "11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31"
    )]
    pub op: ::core::option::Option<operation::Op>,
}

/// Nested types of [`Operation`].
pub mod operation {
    /// The `op` oneof (fields 11–31).
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Op {
        /// Field 11.
        #[prost(message, tag = "11")]
        Root(super::Generator),
        /// Field 12.
        #[prost(message, tag = "12")]
        Joiner(super::Joiner),
        /// Field 13.
        #[prost(message, tag = "13")]
        FiberLookup(super::FiberLookup),
        /// Field 14.
        #[prost(message, tag = "14")]
        FiberWrite(super::FiberWrite),
        /// Field 15.
        #[prost(message, tag = "15")]
        Repeat(super::Repeat),
        /// Field 16.
        #[prost(message, tag = "16")]
        Repeatsig(super::RepeatSig),
        /// Field 17.
        #[prost(message, tag = "17")]
        Alu(super::Alu),
        /// Field 18.
        #[prost(message, tag = "18")]
        Reduce(super::Reduce),
        /// Field 19.
        #[prost(message, tag = "19")]
        CoordHold(super::CoordHold),
        /// Field 20.
        #[prost(message, tag = "20")]
        CoordMask(super::CoordMask),
        /// Field 21.
        #[prost(message, tag = "21")]
        CoordDrop(super::CoordDrop),
        /// Field 22.
        #[prost(message, tag = "22")]
        Array(super::ArrayVals),
        /// Field 23.
        #[prost(message, tag = "23")]
        Spacc(super::SparseAccumulator),
        /// Field 24.
        #[prost(message, tag = "24")]
        ValWrite(super::ValWrite),
        /// Field 25.
        #[prost(message, tag = "25")]
        Func(super::Intrinsic),
        /// Field 26.
        #[prost(message, tag = "26")]
        Broadcast(super::Broadcast),
        /// Field 27.
        #[prost(message, tag = "27")]
        Fork(super::Fork),
        /// Field 28.
        #[prost(message, tag = "28")]
        Join(super::Join),
        /// Field 29.
        #[prost(message, tag = "29")]
        GenRef(super::GenRef),
        /// Field 30.
        #[prost(message, tag = "30")]
        Locate(super::Locate),
        /// Field 31.
        #[prost(message, tag = "31")]
        Concat(super::Concat),
    }
}

/// `tortilla.Generator`: the root reference generator.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Generator {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub label: ::prost::alloc::string::String,
    /// Field 2: `string`.
    #[prost(string, tag = "2")]
    pub tensor: ::prost::alloc::string::String,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub output_ref: ::core::option::Option<RefStream>,
}

/// `tortilla.Broadcast`: copies one stream to several consumers (one cycle in Comal).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Broadcast {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub label: ::prost::alloc::string::String,
    /// The `conn` oneof (fields 2, 3, 4, 5).
    #[prost(oneof = "broadcast::Conn", tags = "2, 3, 4, 5")]
    pub conn: ::core::option::Option<broadcast::Conn>,
}

/// `tortilla.Fork`: scatters one stream over several consumers.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Fork {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub label: ::prost::alloc::string::String,
    /// The `conn` oneof (fields 2, 3, 4, 5).
    #[prost(oneof = "fork::Conn", tags = "2, 3, 4, 5")]
    pub conn: ::core::option::Option<fork::Conn>,
}

/// Defines the nested bundles and `conn` oneof of a fan-out message (`Broadcast`, `Fork`).
macro_rules! fanout_module {
    ($(#[$doc:meta])* $module:ident) => {
        $(#[$doc])*
        pub mod $module {
            /// Crd bundle: one input, several outputs.
            #[derive(Clone, PartialEq, ::prost::Message)]
            pub struct CrdBundle {
                /// Field 1: `message`.
                #[prost(message, optional, tag = "1")]
                pub input: ::core::option::Option<super::CrdStream>,
                /// Field 2: `repeated message`.
                #[prost(message, repeated, tag = "2")]
                pub outputs: ::prost::alloc::vec::Vec<super::CrdStream>,
            }
            /// Ref bundle: one input, several outputs.
            #[derive(Clone, PartialEq, ::prost::Message)]
            pub struct RefBundle {
                /// Field 1: `message`.
                #[prost(message, optional, tag = "1")]
                pub input: ::core::option::Option<super::RefStream>,
                /// Field 2: `repeated message`.
                #[prost(message, repeated, tag = "2")]
                pub outputs: ::prost::alloc::vec::Vec<super::RefStream>,
            }
            /// Val bundle: one input, several outputs.
            #[derive(Clone, PartialEq, ::prost::Message)]
            pub struct ValBundle {
                /// Field 1: `message`.
                #[prost(message, optional, tag = "1")]
                pub input: ::core::option::Option<super::ValStream>,
                /// Field 2: `repeated message`.
                #[prost(message, repeated, tag = "2")]
                pub outputs: ::prost::alloc::vec::Vec<super::ValStream>,
            }
            /// Repeat-signal bundle: one input, several outputs.
            #[derive(Clone, PartialEq, ::prost::Message)]
            pub struct RepSigBundle {
                /// Field 1: `message`.
                #[prost(message, optional, tag = "1")]
                pub input: ::core::option::Option<super::RepSigStream>,
                /// Field 2: `repeated message`.
                #[prost(message, repeated, tag = "2")]
                pub outputs: ::prost::alloc::vec::Vec<super::RepSigStream>,
            }
            /// The `conn` oneof (fields 2–5).
            #[derive(Clone, PartialEq, ::prost::Oneof)]
            pub enum Conn {
                /// Field 2.
                #[prost(message, tag = "2")]
                Crd(CrdBundle),
                /// Field 3.
                #[prost(message, tag = "3")]
                Ref(RefBundle),
                /// Field 4.
                #[prost(message, tag = "4")]
                Val(ValBundle),
                /// Field 5.
                #[prost(message, tag = "5")]
                Repsig(RepSigBundle),
            }
        }
    };
}

fanout_module!(
    /// Nested types of [`Broadcast`].
    broadcast
);
fanout_module!(
    /// Nested types of [`Fork`].
    fork
);

/// `tortilla.Joiner`: an n-ary intersection or union with one payload per operand.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Joiner {
    /// Field 1: `enumeration = "joiner::Type"`.
    #[prost(enumeration = "joiner::Type", tag = "1")]
    pub join_type: i32,
    /// Field 2: `repeated message`.
    #[prost(message, repeated, tag = "2")]
    pub input_pairs: ::prost::alloc::vec::Vec<joiner::JoinBundle>,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub index: ::prost::alloc::string::String,
    /// Field 4: `string`.
    #[prost(string, tag = "4")]
    pub label: ::prost::alloc::string::String,
    /// Field 5: `repeated message`.
    #[prost(message, repeated, tag = "5")]
    pub output_refs: ::prost::alloc::vec::Vec<joiner::Payload>,
    /// Field 6: `message`.
    #[prost(message, optional, tag = "6")]
    pub output_crd: ::core::option::Option<CrdStream>,
}

/// Nested types of [`Joiner`].
pub mod joiner {
    /// A payload stream: a reference or a value stream.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Payload {
        /// The `stream` oneof (fields 1, 2).
        #[prost(oneof = "payload::Stream", tags = "1, 2")]
        pub stream: ::core::option::Option<payload::Stream>,
    }

    /// Nested types of [`Payload`].
    pub mod payload {
        /// The `stream` oneof.
        #[derive(Clone, PartialEq, ::prost::Oneof)]
        pub enum Stream {
            /// Field 1.
            #[prost(message, tag = "1")]
            RefStream(super::super::RefStream),
            /// Field 2.
            #[prost(message, tag = "2")]
            ValStream(super::super::ValStream),
        }
    }

    /// One operand: its coordinate stream and its payload.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct JoinBundle {
        /// Field 1: `message`.
        #[prost(message, optional, tag = "1")]
        pub crd: ::core::option::Option<super::CrdStream>,
        /// Field 2: `message`.
        #[prost(message, optional, tag = "2")]
        pub in_ref: ::core::option::Option<Payload>,
    }

    /// `Joiner.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        /// Keep coordinates present in every operand.
        Intersect = 0,
        /// Keep coordinates present in any operand.
        Union = 1,
    }

    /// `Joiner.RefType` (unused by Comal).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum RefType {
        /// Reference payloads.
        Ref = 0,
        /// Value payloads.
        Val = 1,
    }
}

/// `tortilla.FiberLookup`: a level scanner (field 1 unused).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FiberLookup {
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_ref: ::core::option::Option<RefStream>,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub output_ref: ::core::option::Option<RefStream>,
    /// Field 4: `message`.
    #[prost(message, optional, tag = "4")]
    pub output_crd: ::core::option::Option<CrdStream>,
    /// Field 5: `string`.
    #[prost(string, tag = "5")]
    pub index: ::prost::alloc::string::String,
    /// Field 6: `string`.
    #[prost(string, tag = "6")]
    pub tensor: ::prost::alloc::string::String,
    /// Logical dimension (names the `mode_<m>` files and the shape line).
    #[prost(uint64, tag = "7")]
    pub mode: u64,
    /// `"compressed"`, or anything else for dense.
    #[prost(string, tag = "8")]
    pub format: ::prost::alloc::string::String,
    /// Field 9: `bool`.
    #[prost(bool, tag = "9")]
    pub src: bool,
    /// Field 10: `bool`.
    #[prost(bool, tag = "10")]
    pub root: bool,
    /// Field 11: `string`.
    #[prost(string, tag = "11")]
    pub label: ::prost::alloc::string::String,
}

/// `tortilla.FiberWrite`: a level writer.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FiberWrite {
    /// Field 1: `bool`.
    #[prost(bool, tag = "1")]
    pub r#ref: bool,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_crd: ::core::option::Option<CrdStream>,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub index: ::prost::alloc::string::String,
    /// Field 4: `string`.
    #[prost(string, tag = "4")]
    pub tensor: ::prost::alloc::string::String,
    /// Field 5: `string`.
    #[prost(string, tag = "5")]
    pub mode_val: ::prost::alloc::string::String,
    /// Field 6: `string`.
    #[prost(string, tag = "6")]
    pub format: ::prost::alloc::string::String,
    /// Field 7: `string`.
    #[prost(string, tag = "7")]
    pub segsize: ::prost::alloc::string::String,
    /// Field 8: `string`.
    #[prost(string, tag = "8")]
    pub crdsize: ::prost::alloc::string::String,
    /// Field 9: `string`.
    #[prost(string, tag = "9")]
    pub size: ::prost::alloc::string::String,
    /// Field 10: `bool`.
    #[prost(bool, tag = "10")]
    pub sink: bool,
    /// Field 11: `string`.
    #[prost(string, tag = "11")]
    pub label: ::prost::alloc::string::String,
}

/// `tortilla.ValWrite`: a value writer.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ValWrite {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_val: ::core::option::Option<ValStream>,
    /// Field 2: `string`.
    #[prost(string, tag = "2")]
    pub label: ::prost::alloc::string::String,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub crdsize: ::prost::alloc::string::String,
    /// Field 4: `string`.
    #[prost(string, tag = "4")]
    pub segsize: ::prost::alloc::string::String,
    /// Field 5: `string`.
    #[prost(string, tag = "5")]
    pub tensor: ::prost::alloc::string::String,
    /// Field 6: `bool`.
    #[prost(bool, tag = "6")]
    pub sink: bool,
}

/// `tortilla.Repeat`: a repeater with its repeat-signal generator built in.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Repeat {
    /// The `input_ref` oneof (fields 1, 2).
    #[prost(oneof = "repeat::InputRef", tags = "1, 2")]
    pub input_ref: ::core::option::Option<repeat::InputRef>,
    /// The `output_ref` oneof (fields 3, 4).
    #[prost(oneof = "repeat::OutputRef", tags = "3, 4")]
    pub output_ref: ::core::option::Option<repeat::OutputRef>,
    /// The `input_rep_sig` oneof (fields 5, 6).
    #[prost(oneof = "repeat::InputRepSig", tags = "5, 6")]
    pub input_rep_sig: ::core::option::Option<repeat::InputRepSig>,
    /// Field 7: `string`.
    #[prost(string, tag = "7")]
    pub label: ::prost::alloc::string::String,
    /// Field 8: `string`.
    #[prost(string, tag = "8")]
    pub index: ::prost::alloc::string::String,
    /// Field 9: `bool`.
    #[prost(bool, tag = "9")]
    pub root: bool,
    /// Field 10: `string`.
    #[prost(string, tag = "10")]
    pub tensor: ::prost::alloc::string::String,
}

/// Nested types of [`Repeat`].
pub mod repeat {
    /// The `input_ref` oneof: the repeated payload.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum InputRef {
        /// Field 1.
        #[prost(message, tag = "1")]
        InRef(super::RefStream),
        /// Field 2.
        #[prost(message, tag = "2")]
        InVal(super::ValStream),
    }
    /// The `output_ref` oneof: the repeated output.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum OutputRef {
        /// Field 3.
        #[prost(message, tag = "3")]
        OutRef(super::RefStream),
        /// Field 4.
        #[prost(message, tag = "4")]
        OutVal(super::ValStream),
    }
    /// The `input_rep_sig` oneof: the stream the repeat signal is generated from.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum InputRepSig {
        /// Field 5.
        #[prost(message, tag = "5")]
        RepRef(super::RefStream),
        /// Field 6.
        #[prost(message, tag = "6")]
        RepVal(super::ValStream),
    }
}

/// `tortilla.RepeatSig`: a standalone repeat-signal generator (crd → repsig).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RepeatSig {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_crd: ::core::option::Option<CrdStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub output_rep_sig: ::core::option::Option<RepSigStream>,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub label: ::prost::alloc::string::String,
    /// Field 4: `string`.
    #[prost(string, tag = "4")]
    pub index: ::prost::alloc::string::String,
}

/// `tortilla.ALU`: an arithmetic unit (Comal reads only `stages[0].op`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Alu {
    /// The `conn` oneof (fields 1, 2).
    #[prost(oneof = "alu::Conn", tags = "1, 2")]
    pub conn: ::core::option::Option<alu::Conn>,
    /// Field 3: `repeated message`.
    #[prost(message, repeated, tag = "3")]
    pub stages: ::prost::alloc::vec::Vec<alu::Stage>,
    /// Field 4: `uint64`.
    #[prost(uint64, tag = "4")]
    pub output_val: u64,
    /// Field 5: `string`.
    #[prost(string, tag = "5")]
    pub label: ::prost::alloc::string::String,
    /// Field 6: `uint64`.
    #[prost(uint64, tag = "6")]
    pub stream_shape: u64,
    /// Field 7: `bool`.
    #[prost(bool, tag = "7")]
    pub blocked: bool,
    /// Field 8: `double`.
    #[prost(double, tag = "8")]
    pub scalar: f64,
}

/// Nested types of [`Alu`].
pub mod alu {
    /// `ALU.Val`: value inputs and output.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Val {
        /// Field 1: `repeated message`.
        #[prost(message, repeated, tag = "1")]
        pub inputs: ::prost::alloc::vec::Vec<super::ValStream>,
        /// Field 2: `message`.
        #[prost(message, optional, tag = "2")]
        pub output: ::core::option::Option<super::ValStream>,
    }
    /// `ALU.Crd`: coordinate inputs and output (not implemented in Comal).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Crd {
        /// Field 1: `repeated message`.
        #[prost(message, repeated, tag = "1")]
        pub inputs: ::prost::alloc::vec::Vec<super::CrdStream>,
        /// Field 2: `message`.
        #[prost(message, optional, tag = "2")]
        pub output: ::core::option::Option<super::CrdStream>,
    }
    /// `ALU.Stage`: one operation of the pipeline.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Stage {
        /// Field 1: `repeated uint64`.
        #[prost(uint64, repeated, tag = "1")]
        pub inputs: ::prost::alloc::vec::Vec<u64>,
        /// Field 2: `uint64`.
        #[prost(uint64, tag = "2")]
        pub output: u64,
        /// Field 3: `enumeration = "AluOp"`.
        #[prost(enumeration = "AluOp", tag = "3")]
        pub op: i32,
    }
    /// The `conn` oneof.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Conn {
        /// Field 1.
        #[prost(message, tag = "1")]
        Vals(Val),
        /// Field 2.
        #[prost(message, tag = "2")]
        Crds(Crd),
    }
    /// `ALU.ALUOp`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum AluOp {
        /// a + b
        Add = 0,
        /// a − b
        Sub = 1,
        /// a × b
        Mul = 2,
        /// a ÷ b
        Div = 3,
        /// eᵃ
        Exp = 4,
        /// sin a
        Sin = 5,
        /// cos a
        Cos = 6,
        /// max(a, b), or max(a, scalar) with one input
        Max = 7,
        /// a + scalar
        Scalaradd = 8,
        /// a × scalar
        Scalarmul = 9,
        /// a ÷ scalar
        Scalardiv = 10,
        /// 1/√a
        Rsqrt = 11,
        /// 1/(1+e⁻ᵃ)
        Sigmoid = 12,
        /// element-wise a × b (block modes)
        Elemmul = 13,
    }
}

/// `tortilla.Reduce`: a reducer over the innermost level.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Reduce {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_val: ::core::option::Option<ValStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub output_val: ::core::option::Option<ValStream>,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub label: ::prost::alloc::string::String,
    /// Field 4: `uint64`.
    #[prost(uint64, tag = "4")]
    pub stream_shape: u64,
    /// Field 5: `bool`.
    #[prost(bool, tag = "5")]
    pub blocked: bool,
    /// Field 6: `enumeration = "reduce::Type"`.
    #[prost(enumeration = "reduce::Type", tag = "6")]
    pub reduce_type: i32,
}

/// Nested types of [`Reduce`].
pub mod reduce {
    /// `Reduce.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        /// Sum.
        Add = 0,
        /// Maximum.
        Max = 1,
        /// Sum (tile row sums in true-block mode).
        Addsum = 2,
    }
}

/// `tortilla.GenRef` (both streams typed Val; not implemented in Comal).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GenRef {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_crd: ::core::option::Option<ValStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub output_ref: ::core::option::Option<ValStream>,
    /// Field 3: `string`.
    #[prost(string, tag = "3")]
    pub label: ::prost::alloc::string::String,
}

/// `tortilla.SparseAccumulator`: a sparse accumulator of order 1 or 2.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SparseAccumulator {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_inner_crd: ::core::option::Option<CrdStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub output_inner_crd: ::core::option::Option<CrdStream>,
    /// Field 3: `repeated message`.
    #[prost(message, repeated, tag = "3")]
    pub input_outer_crds: ::prost::alloc::vec::Vec<CrdStream>,
    /// Field 4: `message`.
    #[prost(message, optional, tag = "4")]
    pub input_val: ::core::option::Option<ValStream>,
    /// Field 5: `message`.
    #[prost(message, optional, tag = "5")]
    pub output_val: ::core::option::Option<ValStream>,
    /// Field 6: `uint64`.
    #[prost(uint64, tag = "6")]
    pub order: u64,
    /// Field 7: `string`.
    #[prost(string, tag = "7")]
    pub inner_crd: ::prost::alloc::string::String,
    /// Field 8: `repeated string`.
    #[prost(string, repeated, tag = "8")]
    pub outer_crds: ::prost::alloc::vec::Vec<::prost::alloc::string::String>,
    /// Field 9: `string`.
    #[prost(string, tag = "9")]
    pub label: ::prost::alloc::string::String,
    /// Field 10: `repeated message`.
    #[prost(message, repeated, tag = "10")]
    pub output_outer_crds: ::prost::alloc::vec::Vec<CrdStream>,
    /// Field 11: `uint64`.
    #[prost(uint64, tag = "11")]
    pub stream_shape: u64,
    /// Field 12: `bool`.
    #[prost(bool, tag = "12")]
    pub blocked: bool,
}

/// Defines a coordinate manager message (`CoordHold`, `CoordDrop`: same shape).
macro_rules! crd_manager_message {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct $name {
            /// Field 1: `message`.
            #[prost(message, optional, tag = "1")]
            pub input_inner_crd: ::core::option::Option<CrdStream>,
            /// Field 2: `message`.
            #[prost(message, optional, tag = "2")]
            pub input_outer_crd: ::core::option::Option<CrdStream>,
            /// Field 3: `message`.
            #[prost(message, optional, tag = "3")]
            pub output_inner_crd: ::core::option::Option<CrdStream>,
            /// Field 4: `message`.
            #[prost(message, optional, tag = "4")]
            pub output_outer_crd: ::core::option::Option<CrdStream>,
            /// Field 5: `string`.
            #[prost(string, tag = "5")]
            pub inner_crd: ::prost::alloc::string::String,
            /// Field 6: `string`.
            #[prost(string, tag = "6")]
            pub outer_crd: ::prost::alloc::string::String,
            /// Field 7: `string`.
            #[prost(string, tag = "7")]
            pub label: ::prost::alloc::string::String,
        }
    };
}

crd_manager_message!(
    /// `tortilla.CoordHold`.
    CoordHold
);
crd_manager_message!(
    /// `tortilla.CoordDrop`: drops outer coordinates whose inner fiber is empty.
    CoordDrop
);

/// `tortilla.Locate`: Comal's iterate-locate.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Locate {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_crd: ::core::option::Option<CrdStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_ref: ::core::option::Option<RefStream>,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub output_ref1: ::core::option::Option<RefStream>,
    /// Field 4: `message`.
    #[prost(message, optional, tag = "4")]
    pub output_ref2: ::core::option::Option<RefStream>,
    /// Field 5: `message`.
    #[prost(message, optional, tag = "5")]
    pub output_crd: ::core::option::Option<CrdStream>,
    /// Field 6: `string`.
    #[prost(string, tag = "6")]
    pub label: ::prost::alloc::string::String,
}

/// `tortilla.CoordMask` (not implemented in Comal).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CoordMask {
    /// Field 1: `message`.
    #[prost(message, optional, tag = "1")]
    pub input_inner_crd: ::core::option::Option<CrdStream>,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_outer_crd: ::core::option::Option<CrdStream>,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub input_ref: ::core::option::Option<RefStream>,
    /// Field 4: `message`.
    #[prost(message, optional, tag = "4")]
    pub output_inner_crd: ::core::option::Option<CrdStream>,
    /// Field 5: `message`.
    #[prost(message, optional, tag = "5")]
    pub output_outer_crd: ::core::option::Option<CrdStream>,
    /// Field 6: `message`.
    #[prost(message, optional, tag = "6")]
    pub output_ref: ::core::option::Option<RefStream>,
}

/// `tortilla.ArrayVals`: a value array.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ArrayVals {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub tensor: ::prost::alloc::string::String,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_ref: ::core::option::Option<RefStream>,
    /// Field 3: `message`.
    #[prost(message, optional, tag = "3")]
    pub output_val: ::core::option::Option<ValStream>,
    /// Field 4: `string`.
    #[prost(string, tag = "4")]
    pub label: ::prost::alloc::string::String,
    /// Field 5: `uint64`.
    #[prost(uint64, tag = "5")]
    pub stream_shape: u64,
    /// Field 6: `bool`.
    #[prost(bool, tag = "6")]
    pub blocked: bool,
}

/// `tortilla.Intrinsic`: a named function (not implemented in Comal).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Intrinsic {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub name: ::prost::alloc::string::String,
    /// Field 2: `message`.
    #[prost(message, optional, tag = "2")]
    pub input_val: ::core::option::Option<ValStream>,
    /// Field 3: `repeated message`.
    #[prost(message, repeated, tag = "3")]
    pub inputs: ::prost::alloc::vec::Vec<CrdStream>,
    /// Field 4: `message`.
    #[prost(message, optional, tag = "4")]
    pub output_val: ::core::option::Option<ValStream>,
    /// Field 5: `repeated message`.
    #[prost(message, repeated, tag = "5")]
    pub outputs: ::prost::alloc::vec::Vec<CrdStream>,
}

/// `tortilla.Join`: merges several streams of one kind into one.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Join {
    /// Field 1: `string`.
    #[prost(string, tag = "1")]
    pub label: ::prost::alloc::string::String,
    /// The `conn` oneof (fields 2, 3, 4, 5).
    #[prost(oneof = "join::Conn", tags = "2, 3, 4, 5")]
    pub conn: ::core::option::Option<join::Conn>,
}

/// Nested types of [`Join`].
pub mod join {
    /// Crd bundle: several inputs, one output.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct CrdBundle {
        /// Field 1: `message`.
        #[prost(message, optional, tag = "1")]
        pub output: ::core::option::Option<super::CrdStream>,
        /// Field 2: `repeated message`.
        #[prost(message, repeated, tag = "2")]
        pub inputs: ::prost::alloc::vec::Vec<super::CrdStream>,
    }
    /// Ref bundle: several inputs, one output.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RefBundle {
        /// Field 1: `message`.
        #[prost(message, optional, tag = "1")]
        pub output: ::core::option::Option<super::RefStream>,
        /// Field 2: `repeated message`.
        #[prost(message, repeated, tag = "2")]
        pub inputs: ::prost::alloc::vec::Vec<super::RefStream>,
    }
    /// Val bundle: several inputs, one output.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ValBundle {
        /// Field 1: `message`.
        #[prost(message, optional, tag = "1")]
        pub output: ::core::option::Option<super::ValStream>,
        /// Field 2: `repeated message`.
        #[prost(message, repeated, tag = "2")]
        pub inputs: ::prost::alloc::vec::Vec<super::ValStream>,
    }
    /// Repeat-signal bundle: several inputs, one output.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RepSigBundle {
        /// Field 1: `message`.
        #[prost(message, optional, tag = "1")]
        pub output: ::core::option::Option<super::RepSigStream>,
        /// Field 2: `repeated message`.
        #[prost(message, repeated, tag = "2")]
        pub inputs: ::prost::alloc::vec::Vec<super::RepSigStream>,
    }
    /// The `conn` oneof (fields 2–5).
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Conn {
        /// Field 2.
        #[prost(message, tag = "2")]
        Crd(CrdBundle),
        /// Field 3.
        #[prost(message, tag = "3")]
        Ref(RefBundle),
        /// Field 4.
        #[prost(message, tag = "4")]
        Val(ValBundle),
        /// Field 5.
        #[prost(message, tag = "5")]
        Repsig(RepSigBundle),
    }
}

/// `tortilla.Concat` (newest schema only; Comal's vendored copy lacks it).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Concat {
    /// Field 1: `repeated message`.
    #[prost(message, repeated, tag = "1")]
    pub in_crds: ::prost::alloc::vec::Vec<CrdStream>,
    /// Field 9: `repeated message`.
    #[prost(message, repeated, tag = "9")]
    pub in_refs: ::prost::alloc::vec::Vec<RefStream>,
    /// Field 10: `repeated message`.
    #[prost(message, repeated, tag = "10")]
    pub in_vals: ::prost::alloc::vec::Vec<ValStream>,
    /// Field 3: `uint64`.
    #[prost(uint64, tag = "3")]
    pub axis: u64,
    /// Field 4: `uint64`.
    #[prost(uint64, tag = "4")]
    pub rank: u64,
    /// Field 8: `uint64`.
    #[prost(uint64, tag = "8")]
    pub dim_len: u64,
    /// Field 5: `repeated message`.
    #[prost(message, repeated, tag = "5")]
    pub out_crds: ::prost::alloc::vec::Vec<CrdStream>,
    /// Field 11: `repeated message`.
    #[prost(message, repeated, tag = "11")]
    pub out_refs: ::prost::alloc::vec::Vec<RefStream>,
    /// Field 12: `message`.
    #[prost(message, optional, tag = "12")]
    pub out_val: ::core::option::Option<ValStream>,
    /// Field 7: `string`.
    #[prost(string, tag = "7")]
    pub label: ::prost::alloc::string::String,
}

#[cfg(test)]
mod tests {
    //! The Rust structs against `proto/comal.proto`: every field number and wire type of every
    //! message, every enum value, plus a few encodings computed by hand.

    use super::*;
    use prost::Message;
    use std::collections::{BTreeMap, BTreeSet};

    const PROTO: &str = include_str!("../proto/comal.proto");

    /// Per message (dotted nested name): field number → (type, repeated). Per enum: name → value.
    #[derive(Default)]
    struct Schema {
        messages: BTreeMap<String, BTreeMap<u32, (String, bool)>>,
        enums: BTreeMap<String, BTreeMap<String, i32>>,
    }

    fn parse_proto() -> Schema {
        let mut s = Schema::default();
        // Scope stack: (kind, name) with kind "message", "enum" or "oneof".
        let mut stack: Vec<(&str, String)> = Vec::new();
        let path = |stack: &[(&str, String)]| {
            stack.iter().filter(|(k, _)| *k != "oneof").map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(".")
        };
        for raw in PROTO.lines() {
            let line = raw.split("//").next().unwrap().trim();
            if line.is_empty() || line.starts_with("syntax") || line.starts_with("package") {
                continue;
            }
            let toks: Vec<&str> = line.split_whitespace().collect();
            match toks.as_slice() {
                ["}"] | ["};"] => {
                    stack.pop().expect("balanced braces");
                }
                [kind @ ("message" | "enum" | "oneof"), name, "{"] => {
                    stack.push((kind, name.to_string()));
                    let p = path(&stack);
                    if *kind == "message" {
                        s.messages.entry(p).or_default();
                    } else if *kind == "enum" {
                        s.enums.entry(p).or_default();
                    }
                }
                ["reserved", ..] => {}
                [name, "=", num] if stack.last().is_some_and(|(k, _)| *k == "enum") => {
                    let v: i32 = num.trim_end_matches(';').parse().unwrap();
                    s.enums.get_mut(&path(&stack)).unwrap().insert(name.to_string(), v);
                }
                [rest @ .., _name, "=", num] => {
                    let (repeated, ty) = match rest {
                        ["repeated", ty] => (true, *ty),
                        [ty] => (false, *ty),
                        other => panic!("unexpected field line {other:?}"),
                    };
                    let n: u32 = num.trim_end_matches(';').parse().unwrap();
                    let prev = s.messages.get_mut(&path(&stack)).unwrap().insert(n, (ty.to_string(), repeated));
                    assert!(prev.is_none(), "duplicate field {n} in {}", path(&stack));
                }
                other => panic!("unexpected line {other:?}"),
            }
        }
        assert!(stack.is_empty());
        s
    }

    /// Top-level (field number, wire type) pairs of an encoding.
    fn wire_fields(mut b: &[u8]) -> Vec<(u32, u8)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
            match wt {
                0 => {
                    varint(&mut b);
                }
                1 => b = &b[8..],
                2 => {
                    let n = varint(&mut b) as usize;
                    b = &b[n..];
                }
                5 => b = &b[4..],
                _ => panic!("wire type {wt}"),
            }
            out.push((field, wt));
        }
        out
    }

    fn r() -> Option<RefStream> {
        Some(RefStream::new(1, "r"))
    }
    fn c() -> Option<CrdStream> {
        Some(CrdStream::new(1, "c"))
    }
    fn v() -> Option<ValStream> {
        Some(ValStream::new(1, "v"))
    }
    fn s() -> Option<RepSigStream> {
        Some(RepSigStream::new(1, "s"))
    }
    fn t() -> String {
        "x".into()
    }

    fn enc<M: Message>(m: M) -> Vec<u8> {
        m.encode_to_vec()
    }

    /// One or more fully populated instances of every message, by proto name.
    fn instances() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        use operation::Op as O;
        let pay_r = joiner::Payload { stream: Some(joiner::payload::Stream::RefStream(RefStream::new(1, "r"))) };
        let pay_v = joiner::Payload { stream: Some(joiner::payload::Stream::ValStream(ValStream::new(1, "v"))) };
        let ops: Vec<O> = vec![
            O::Root(Default::default()),
            O::Joiner(Default::default()),
            O::FiberLookup(Default::default()),
            O::FiberWrite(Default::default()),
            O::Repeat(Default::default()),
            O::Repeatsig(Default::default()),
            O::Alu(Default::default()),
            O::Reduce(Default::default()),
            O::CoordHold(Default::default()),
            O::CoordMask(Default::default()),
            O::CoordDrop(Default::default()),
            O::Array(Default::default()),
            O::Spacc(Default::default()),
            O::ValWrite(Default::default()),
            O::Func(Default::default()),
            O::Broadcast(Default::default()),
            O::Fork(Default::default()),
            O::Join(Default::default()),
            O::GenRef(Default::default()),
            O::Locate(Default::default()),
            O::Concat(Default::default()),
        ];
        macro_rules! fanout {
            ($m:ident) => {{
                use $m::*;
                vec![
                    enc($m::Conn::Crd(CrdBundle::default()).into_msg(t())),
                    enc(Conn::Ref(RefBundle::default()).into_msg(t())),
                    enc(Conn::Val(ValBundle::default()).into_msg(t())),
                    enc(Conn::Repsig(RepSigBundle::default()).into_msg(t())),
                ]
            }};
        }
        vec![
            ("ComalGraph", vec![enc(ComalGraph { name: t(), channel_size: 1, graph: Some(Default::default()) })]),
            ("ProgramGraph", vec![enc(ProgramGraph { name: t(), operators: vec![Default::default()] })]),
            ("RefStream", vec![enc(r().unwrap())]),
            ("CrdStream", vec![enc(c().unwrap())]),
            ("ValStream", vec![enc(v().unwrap())]),
            ("RepSigStream", vec![enc(s().unwrap())]),
            ("RefStream.StreamID", vec![enc(ref_stream::StreamId { id: 1 })]),
            ("CrdStream.StreamID", vec![enc(crd_stream::StreamId { id: 1 })]),
            ("ValStream.StreamID", vec![enc(val_stream::StreamId { id: 1 })]),
            ("RepSigStream.StreamID", vec![enc(rep_sig_stream::StreamId { id: 1 })]),
            ("Operation", ops.into_iter().map(|op| enc(Operation { name: t(), id: 1, op: Some(op) })).collect()),
            ("Generator", vec![enc(Generator { label: t(), tensor: t(), output_ref: r() })]),
            ("Broadcast", fanout!(broadcast)),
            ("Fork", fanout!(fork)),
            ("Join", fanout!(join)),
            ("Broadcast.CrdBundle", vec![enc(broadcast::CrdBundle { input: c(), outputs: vec![c().unwrap()] })]),
            ("Broadcast.RefBundle", vec![enc(broadcast::RefBundle { input: r(), outputs: vec![r().unwrap()] })]),
            ("Broadcast.ValBundle", vec![enc(broadcast::ValBundle { input: v(), outputs: vec![v().unwrap()] })]),
            ("Broadcast.RepSigBundle", vec![enc(broadcast::RepSigBundle { input: s(), outputs: vec![s().unwrap()] })]),
            ("Fork.CrdBundle", vec![enc(fork::CrdBundle { input: c(), outputs: vec![c().unwrap()] })]),
            ("Fork.RefBundle", vec![enc(fork::RefBundle { input: r(), outputs: vec![r().unwrap()] })]),
            ("Fork.ValBundle", vec![enc(fork::ValBundle { input: v(), outputs: vec![v().unwrap()] })]),
            ("Fork.RepSigBundle", vec![enc(fork::RepSigBundle { input: s(), outputs: vec![s().unwrap()] })]),
            ("Join.CrdBundle", vec![enc(join::CrdBundle { output: c(), inputs: vec![c().unwrap()] })]),
            ("Join.RefBundle", vec![enc(join::RefBundle { output: r(), inputs: vec![r().unwrap()] })]),
            ("Join.ValBundle", vec![enc(join::ValBundle { output: v(), inputs: vec![v().unwrap()] })]),
            ("Join.RepSigBundle", vec![enc(join::RepSigBundle { output: s(), inputs: vec![s().unwrap()] })]),
            (
                "Joiner",
                vec![enc(Joiner {
                    join_type: joiner::Type::Union as i32,
                    input_pairs: vec![Default::default()],
                    index: t(),
                    label: t(),
                    output_refs: vec![Default::default()],
                    output_crd: c(),
                })],
            ),
            ("Joiner.Payload", vec![enc(pay_r.clone()), enc(pay_v)]),
            ("Joiner.JoinBundle", vec![enc(joiner::JoinBundle { crd: c(), in_ref: Some(pay_r) })]),
            (
                "FiberLookup",
                vec![enc(FiberLookup {
                    input_ref: r(),
                    output_ref: r(),
                    output_crd: c(),
                    index: t(),
                    tensor: t(),
                    mode: 1,
                    format: t(),
                    src: true,
                    root: true,
                    label: t(),
                })],
            ),
            (
                "FiberWrite",
                vec![enc(FiberWrite {
                    r#ref: true,
                    input_crd: c(),
                    index: t(),
                    tensor: t(),
                    mode_val: t(),
                    format: t(),
                    segsize: t(),
                    crdsize: t(),
                    size: t(),
                    sink: true,
                    label: t(),
                })],
            ),
            (
                "ValWrite",
                vec![enc(ValWrite { input_val: v(), label: t(), crdsize: t(), segsize: t(), tensor: t(), sink: true })],
            ),
            (
                "Repeat",
                vec![
                    enc(Repeat {
                        input_ref: r().map(repeat::InputRef::InRef),
                        output_ref: r().map(repeat::OutputRef::OutRef),
                        input_rep_sig: r().map(repeat::InputRepSig::RepRef),
                        label: t(),
                        index: t(),
                        root: true,
                        tensor: t(),
                    }),
                    enc(Repeat {
                        input_ref: v().map(repeat::InputRef::InVal),
                        output_ref: v().map(repeat::OutputRef::OutVal),
                        input_rep_sig: v().map(repeat::InputRepSig::RepVal),
                        ..Default::default()
                    }),
                ],
            ),
            ("RepeatSig", vec![enc(RepeatSig { input_crd: c(), output_rep_sig: s(), label: t(), index: t() })]),
            (
                "ALU",
                vec![
                    enc(Alu {
                        conn: Some(alu::Conn::Vals(Default::default())),
                        stages: vec![Default::default()],
                        output_val: 1,
                        label: t(),
                        stream_shape: 1,
                        blocked: true,
                        scalar: 1.5,
                    }),
                    enc(Alu { conn: Some(alu::Conn::Crds(Default::default())), ..Default::default() }),
                ],
            ),
            ("ALU.Val", vec![enc(alu::Val { inputs: vec![v().unwrap()], output: v() })]),
            ("ALU.Crd", vec![enc(alu::Crd { inputs: vec![c().unwrap()], output: c() })]),
            ("ALU.Stage", vec![enc(alu::Stage { inputs: vec![1, 2], output: 1, op: alu::AluOp::Elemmul as i32 })]),
            (
                "Reduce",
                vec![enc(Reduce {
                    input_val: v(),
                    output_val: v(),
                    label: t(),
                    stream_shape: 1,
                    blocked: true,
                    reduce_type: reduce::Type::Addsum as i32,
                })],
            ),
            ("GenRef", vec![enc(GenRef { input_crd: v(), output_ref: v(), label: t() })]),
            (
                "SparseAccumulator",
                vec![enc(SparseAccumulator {
                    input_inner_crd: c(),
                    output_inner_crd: c(),
                    input_outer_crds: vec![c().unwrap()],
                    input_val: v(),
                    output_val: v(),
                    order: 2,
                    inner_crd: t(),
                    outer_crds: vec![t()],
                    label: t(),
                    output_outer_crds: vec![c().unwrap()],
                    stream_shape: 1,
                    blocked: true,
                })],
            ),
            (
                "CoordHold",
                vec![enc(CoordHold {
                    input_inner_crd: c(),
                    input_outer_crd: c(),
                    output_inner_crd: c(),
                    output_outer_crd: c(),
                    inner_crd: t(),
                    outer_crd: t(),
                    label: t(),
                })],
            ),
            (
                "CoordDrop",
                vec![enc(CoordDrop {
                    input_inner_crd: c(),
                    input_outer_crd: c(),
                    output_inner_crd: c(),
                    output_outer_crd: c(),
                    inner_crd: t(),
                    outer_crd: t(),
                    label: t(),
                })],
            ),
            (
                "Locate",
                vec![enc(Locate {
                    input_crd: c(),
                    input_ref: r(),
                    output_ref1: r(),
                    output_ref2: r(),
                    output_crd: c(),
                    label: t(),
                })],
            ),
            (
                "CoordMask",
                vec![enc(CoordMask {
                    input_inner_crd: c(),
                    input_outer_crd: c(),
                    input_ref: r(),
                    output_inner_crd: c(),
                    output_outer_crd: c(),
                    output_ref: r(),
                })],
            ),
            (
                "ArrayVals",
                vec![enc(ArrayVals {
                    tensor: t(),
                    input_ref: r(),
                    output_val: v(),
                    label: t(),
                    stream_shape: 1,
                    blocked: true,
                })],
            ),
            (
                "Intrinsic",
                vec![enc(Intrinsic {
                    name: t(),
                    input_val: v(),
                    inputs: vec![c().unwrap()],
                    output_val: v(),
                    outputs: vec![c().unwrap()],
                })],
            ),
            (
                "Concat",
                vec![enc(Concat {
                    in_crds: vec![c().unwrap()],
                    in_refs: vec![r().unwrap()],
                    in_vals: vec![v().unwrap()],
                    axis: 1,
                    rank: 1,
                    dim_len: 1,
                    out_crds: vec![c().unwrap()],
                    out_refs: vec![r().unwrap()],
                    out_val: v(),
                    label: t(),
                })],
            ),
        ]
    }

    /// Wraps a fan-out `conn` into its message, for the `fanout!` macro.
    trait IntoMsg {
        type M: Message;
        fn into_msg(self, label: String) -> Self::M;
    }
    impl IntoMsg for broadcast::Conn {
        type M = Broadcast;
        fn into_msg(self, label: String) -> Broadcast {
            Broadcast { label, conn: Some(self) }
        }
    }
    impl IntoMsg for fork::Conn {
        type M = Fork;
        fn into_msg(self, label: String) -> Fork {
            Fork { label, conn: Some(self) }
        }
    }
    impl IntoMsg for join::Conn {
        type M = Join;
        fn into_msg(self, label: String) -> Join {
            Join { label, conn: Some(self) }
        }
    }

    #[test]
    fn every_message_matches_the_proto_file() {
        let schema = parse_proto();
        let enums: BTreeSet<&str> = schema.enums.keys().map(|k| k.rsplit('.').next().unwrap()).collect();
        let inst = instances();
        let covered: BTreeSet<&str> = inst.iter().map(|(n, _)| *n).collect();
        let declared: BTreeSet<&str> = schema.messages.keys().map(String::as_str).collect();
        assert_eq!(covered, declared, "messages in the .proto vs. messages tested here");
        for (name, encodings) in inst {
            let mut seen: BTreeMap<u32, u8> = BTreeMap::new();
            for e in &encodings {
                for (f, wt) in wire_fields(e) {
                    seen.insert(f, wt);
                }
            }
            let want: BTreeMap<u32, u8> = schema.messages[name]
                .iter()
                .map(|(&n, (ty, repeated))| {
                    let wt = match ty.as_str() {
                        "double" if !repeated => 1,
                        "uint64" | "bool" if !repeated => 0,
                        "uint64" | "bool" | "double" => 2, // packed
                        ty if enums.contains(ty) => 0,
                        _ => 2,
                    };
                    (n, wt)
                })
                .collect();
            assert_eq!(seen, want, "{name}: (field number, wire type) of the Rust struct vs. the .proto");
        }
    }

    #[test]
    fn every_enum_matches_the_proto_file() {
        fn check<E: TryFrom<i32> + std::fmt::Debug>(schema: &Schema, name: &str) {
            let want = &schema.enums[name];
            for (pname, &v) in want {
                let e = E::try_from(v).unwrap_or_else(|_| panic!("{name}: no value {v}"));
                assert_eq!(format!("{e:?}").to_uppercase(), *pname, "{name} = {v}");
            }
            let max = want.values().copied().max().unwrap();
            assert!(E::try_from(max + 1).is_err(), "{name} has extra values");
        }
        let schema = parse_proto();
        assert_eq!(schema.enums.len(), 4);
        check::<joiner::Type>(&schema, "Joiner.Type");
        check::<joiner::RefType>(&schema, "Joiner.RefType");
        check::<alu::AluOp>(&schema, "ALU.ALUOp");
        check::<reduce::Type>(&schema, "Reduce.Type");
    }

    #[test]
    fn hand_computed_encodings() {
        // RefStream id 3: field 1 (StreamID, length 2) = { field 1 varint 3 }.
        assert_eq!(RefStream::new(3, "").encode_to_vec(), [0x0a, 0x02, 0x08, 0x03]);
        // Operation id 5 with repeat { rep_ref = ref 3 }: field 2 varint 5; field 15 = 0x7a.
        let op = Operation {
            name: String::new(),
            id: 5,
            op: Some(operation::Op::Repeat(Repeat {
                input_rep_sig: Some(repeat::InputRepSig::RepRef(RefStream::new(3, ""))),
                ..Default::default()
            })),
        };
        assert_eq!(op.encode_to_vec(), [0x10, 0x05, 0x7a, 0x06, 0x2a, 0x04, 0x0a, 0x02, 0x08, 0x03]);
        // Concat (field 31): key (31 << 3) | 2 = 250 = varint fa 01; its label (field 7) "c".
        let op = Operation {
            op: Some(operation::Op::Concat(Concat { label: "c".into(), ..Default::default() })),
            ..Default::default()
        };
        assert_eq!(op.encode_to_vec(), [0xfa, 0x01, 0x03, 0x3a, 0x01, b'c']);
        // ALU scalar 1.0 (field 8, fixed64) and a stage with op SCALARMUL = 9.
        let alu = Alu {
            stages: vec![alu::Stage { inputs: vec![], output: 0, op: alu::AluOp::Scalarmul as i32 }],
            scalar: 1.0,
            ..Default::default()
        };
        assert_eq!(alu.encode_to_vec(), [0x1a, 0x02, 0x18, 0x09, 0x41, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        // Broadcast of repsig 1 to 2 (conn field 5): 2a 08 { 0a 04 {0a 02 08 01} 12 04 {0a 02 08 02} }.
        let b = Broadcast {
            label: String::new(),
            conn: Some(broadcast::Conn::Repsig(broadcast::RepSigBundle {
                input: Some(RepSigStream::new(1, "")),
                outputs: vec![RepSigStream::new(2, "")],
            })),
        };
        assert_eq!(
            b.encode_to_vec(),
            [0x2a, 0x0c, 0x0a, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0x08, 0x02]
        );
        // ComalGraph: name "g" (0a 01 67), channel_size 1024 (10 80 08), graph { name "p" } (1a 03 0a 01 70).
        let g = ComalGraph {
            name: "g".into(),
            channel_size: 1024,
            graph: Some(ProgramGraph { name: "p".into(), operators: vec![] }),
        };
        assert_eq!(g.encode_to_vec(), [0x0a, 0x01, b'g', 0x10, 0x80, 0x08, 0x1a, 0x03, 0x0a, 0x01, b'p']);
        // Joiner UNION (field 1 = 1) and spacc order 2 (field 6 = 2).
        assert_eq!(Joiner { join_type: 1, ..Default::default() }.encode_to_vec(), [0x08, 0x01]);
        assert_eq!(SparseAccumulator { order: 2, ..Default::default() }.encode_to_vec(), [0x30, 0x02]);
    }
}

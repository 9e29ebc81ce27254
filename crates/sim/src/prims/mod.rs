//! The SAM primitives, one state machine each.

pub(crate) mod bcast;
pub(crate) mod dot;
pub(crate) mod fill;
mod fork;
mod join;
pub(crate) mod link;
pub mod scan;
pub(crate) mod spacc;
mod stream;
mod values;
mod write;

pub use fork::{Fork, Gather};
pub use join::Join;
pub use scan::{Root, Scan};
pub use spacc::{Spacc1, Spacc2};
pub use stream::{CrdDrop, RepSig, Repeat};
pub use values::{Alu, Array, Locate, Reduce};
pub use write::{LevelWrite, Sink, Source, ValWrite};

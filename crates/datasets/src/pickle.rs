//! A minimal, safe reader for the Python pickles of the Planetoid release.
//!
//! Nothing is ever executed. The reader runs the pickle machine *symbolically*: a `GLOBAL`
//! becomes a name, `REDUCE` a record of "this callable applied to these arguments", `BUILD` a
//! record of the state. Every object lives in an arena and the stack and memo hold indices into
//! it, so shared references cost nothing and memory stays proportional to the input.
//!
//! Two entry points:
//! - [`parse_adjacency`] reads `ind.<name>.graph`: a `dict` or `collections.defaultdict(list)`
//!   mapping node ids to lists of node ids, protocol 2. Only the opcodes and globals that such a
//!   pickle needs are accepted; anything else is an error naming the opcode or global.
//! - [`parse_shape`] reads the shape of `ind.<name>.x`/`allx`/`tx` (scipy sparse matrices) and
//!   `ind.<name>.y`/`ally`/`ty` (numpy arrays), protocols 0 to 2. It accepts any global, since
//!   globals are only names here, and looks for the `_shape` entry of the object's state
//!   (scipy) or the shape in the state tuple of `numpy.core.multiarray._reconstruct` (numpy).

use std::collections::HashMap;

use crate::error::quote;
use crate::graph::MAX_NODES;
use crate::DatasetError;

/// Reads an adjacency dict pickle into directed edges `(key, neighbour)`, in the pickle's order.
///
/// Errors name the file and the byte offset of the offending opcode: truncated data, an opcode
/// or global outside the supported subset, a key or neighbour that is not a node id.
pub fn parse_adjacency(bytes: &[u8], file_name: &str) -> Result<Vec<(u32, u32)>, DatasetError> {
    let mut m = Machine::new(bytes, file_name, Mode::Adjacency);
    let top = m.run()?;
    let Obj::Dict(items) = &m.arena[top] else {
        return Err(m.err_at(top, format!("the pickle holds {}, expected a dict of lists", m.kind(top))));
    };
    // A list reached from many keys through the memo would expand to far more edges than the
    // file has bytes; each stored neighbour costs at least two bytes, so this bound never
    // rejects a real adjacency pickle.
    let total: usize = items.iter().map(|&(_, v)| if let Obj::List(l) = &m.arena[v] { l.len() } else { 0 }).sum();
    if total > bytes.len() {
        return Err(m.err_at(
            top,
            format!("{total} neighbours from {} bytes: lists are shared too often to expand safely", bytes.len()),
        ));
    }
    let mut edges = Vec::with_capacity(total);
    for &(k, v) in items {
        let src = m.node_id(k, "dict key")?;
        let list = match &m.arena[v] {
            Obj::List(l) => l,
            _ => {
                return Err(m.err_at(v, format!("the value of key {src} is {}, expected a list of ints", m.kind(v))));
            }
        };
        for &x in list {
            let dst = m.node_id(x, "neighbour")?;
            edges.push((src, dst));
        }
    }
    Ok(edges)
}

/// Reads the shape of a pickled scipy sparse matrix or numpy array, without executing anything
/// and without decoding its data.
///
/// Errors name the file and byte offset; a pickle that parses but holds neither kind of object
/// is an error too.
pub fn parse_shape(bytes: &[u8], file_name: &str) -> Result<Vec<usize>, DatasetError> {
    let mut m = Machine::new(bytes, file_name, Mode::Inspect);
    let top = m.run()?;
    let not_found = |m: &Machine| {
        m.err_at(top, format!("found {}, expected a pickled scipy sparse matrix or numpy array", m.kind(top)))
    };
    let Obj::Instance { state: Some(state), .. } = &m.arena[top] else {
        return Err(not_found(&m));
    };
    let shape_ref = match &m.arena[*state] {
        // scipy sparse matrices keep their shape in `_shape` (older versions: `shape`).
        Obj::Dict(items) => items
            .iter()
            .find(|(k, _)| matches!(&m.arena[*k], Obj::Str(s) if s == b"_shape" || s == b"shape"))
            .map(|&(_, v)| v),
        // numpy arrays: state is (version, shape, dtype, is_fortran, data).
        Obj::Tuple(t) if t.len() >= 2 => Some(t[1]),
        _ => None,
    };
    let Some(shape_ref) = shape_ref else { return Err(not_found(&m)) };
    let Obj::Tuple(dims) = &m.arena[shape_ref] else {
        return Err(m.err_at(shape_ref, format!("the shape is {}, expected a tuple of ints", m.kind(shape_ref))));
    };
    dims.iter()
        .map(|&d| match m.arena[d] {
            Obj::Int(v) if v >= 0 => Ok(v as usize),
            _ => Err(m.err_at(d, format!("a dimension is {}, expected a non-negative int", m.kind(d)))),
        })
        .collect()
}

/// Which pickles the machine accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The dict-of-lists subset, with only `collections.defaultdict` and `list` as globals.
    Adjacency,
    /// Every protocol 0-2 opcode except persistent ids and the extension registry.
    Inspect,
}

/// Index of an object in the arena.
type Ref = usize;

/// A value built by the symbolic machine.
#[derive(Debug)]
enum Obj {
    None,
    Bool,
    Int(i64),
    /// An integer that does not fit `i64`; its value is never needed.
    BigInt,
    Float,
    /// A byte string or (UTF-8 or raw-escaped) text string.
    Str(Vec<u8>),
    Tuple(Vec<Ref>),
    List(Vec<Ref>),
    Dict(Vec<(Ref, Ref)>),
    /// A global name, never resolved.
    Global(String, String),
    /// A callable applied to arguments (REDUCE, NEWOBJ, INST, OBJ), with the state BUILD gave it.
    Instance {
        state: Option<Ref>,
    },
}

/// A stack slot.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Mark,
    Val(Ref),
}

/// Highest protocol whose opcodes are understood.
const MAX_PROTOCOL: u8 = 2;

/// Name of an opcode, with the protocol that introduced it.
fn opcode_name(op: u8) -> Option<(&'static str, u8)> {
    Some(match op {
        b'(' => ("MARK", 0),
        b'.' => ("STOP", 0),
        b'0' => ("POP", 0),
        b'1' => ("POP_MARK", 1),
        b'2' => ("DUP", 0),
        b'F' => ("FLOAT", 0),
        b'I' => ("INT", 0),
        b'J' => ("BININT", 1),
        b'K' => ("BININT1", 1),
        b'L' => ("LONG", 0),
        b'M' => ("BININT2", 1),
        b'N' => ("NONE", 0),
        b'P' => ("PERSID", 0),
        b'Q' => ("BINPERSID", 1),
        b'R' => ("REDUCE", 0),
        b'S' => ("STRING", 0),
        b'T' => ("BINSTRING", 1),
        b'U' => ("SHORT_BINSTRING", 1),
        b'V' => ("UNICODE", 0),
        b'X' => ("BINUNICODE", 1),
        b'a' => ("APPEND", 0),
        b'b' => ("BUILD", 0),
        b'c' => ("GLOBAL", 0),
        b'd' => ("DICT", 0),
        b'}' => ("EMPTY_DICT", 1),
        b'e' => ("APPENDS", 1),
        b'g' => ("GET", 0),
        b'h' => ("BINGET", 1),
        b'i' => ("INST", 0),
        b'j' => ("LONG_BINGET", 1),
        b'l' => ("LIST", 0),
        b']' => ("EMPTY_LIST", 1),
        b'o' => ("OBJ", 1),
        b'p' => ("PUT", 0),
        b'q' => ("BINPUT", 1),
        b'r' => ("LONG_BINPUT", 1),
        b's' => ("SETITEM", 0),
        b't' => ("TUPLE", 0),
        b')' => ("EMPTY_TUPLE", 1),
        b'u' => ("SETITEMS", 1),
        b'G' => ("BINFLOAT", 1),
        0x80 => ("PROTO", 2),
        0x81 => ("NEWOBJ", 2),
        0x82 => ("EXT1", 2),
        0x83 => ("EXT2", 2),
        0x84 => ("EXT4", 2),
        0x85 => ("TUPLE1", 2),
        0x86 => ("TUPLE2", 2),
        0x87 => ("TUPLE3", 2),
        0x88 => ("NEWTRUE", 2),
        0x89 => ("NEWFALSE", 2),
        0x8a => ("LONG1", 2),
        0x8b => ("LONG4", 2),
        b'B' => ("BINBYTES", 3),
        b'C' => ("SHORT_BINBYTES", 3),
        0x8c => ("SHORT_BINUNICODE", 4),
        0x8d => ("BINUNICODE8", 4),
        0x8e => ("BINBYTES8", 4),
        0x8f => ("EMPTY_SET", 4),
        0x90 => ("ADDITEMS", 4),
        0x91 => ("FROZENSET", 4),
        0x92 => ("NEWOBJ_EX", 4),
        0x93 => ("STACK_GLOBAL", 4),
        0x94 => ("MEMOIZE", 4),
        0x95 => ("FRAME", 4),
        0x96 => ("BYTEARRAY8", 5),
        0x97 => ("NEXT_BUFFER", 5),
        0x98 => ("READONLY_BUFFER", 5),
        _ => return None,
    })
}

/// Opcodes an adjacency pickle may use.
fn adjacency_allows(op: u8) -> bool {
    matches!(
        op,
        0x80 | b'.'
            | b'('
            | b'c'
            | b'p'
            | b'q'
            | b'r'
            | b'g'
            | b'h'
            | b'j'
            | b'R'
            | b't'
            | 0x85
            | b')'
            | b'}'
            | b'd'
            | b']'
            | b'l'
            | b'a'
            | b'e'
            | b's'
            | b'u'
            | b'I'
            | b'J'
            | b'K'
            | b'M'
            | b'L'
            | 0x8a
    )
}

/// Globals an adjacency pickle may name.
fn adjacency_global(module: &str, name: &str) -> bool {
    matches!((module, name), ("collections", "defaultdict") | ("__builtin__" | "builtins", "list"))
}

/// The symbolic pickle machine.
struct Machine<'a> {
    data: &'a [u8],
    file: &'a str,
    mode: Mode,
    pos: usize,
    /// Offset of the opcode being executed.
    op_at: usize,
    op: u8,
    arena: Vec<Obj>,
    /// Offset of the opcode that created each arena object.
    origin: Vec<usize>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Ref>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8], file: &'a str, mode: Mode) -> Machine<'a> {
        Machine {
            data,
            file,
            mode,
            pos: 0,
            op_at: 0,
            op: 0,
            arena: Vec::new(),
            origin: Vec::new(),
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// An error at the current opcode.
    fn err(&self, msg: impl Into<String>) -> DatasetError {
        DatasetError::pickle(self.file, self.op_at, msg)
    }

    /// An error about an object, located at the opcode that created it.
    fn err_at(&self, r: Ref, msg: impl Into<String>) -> DatasetError {
        DatasetError::pickle(self.file, self.origin.get(r).copied().unwrap_or(0), msg)
    }

    fn op_name(&self) -> String {
        match opcode_name(self.op) {
            Some((n, _)) => n.to_string(),
            None => format!("0x{:02x}", self.op),
        }
    }

    /// A short description of an object's kind for messages.
    fn kind(&self, r: Ref) -> String {
        match &self.arena[r] {
            Obj::None => "None".into(),
            Obj::Bool => "a bool".into(),
            Obj::Int(_) | Obj::BigInt => "an int".into(),
            Obj::Float => "a float".into(),
            Obj::Str(_) => "a string".into(),
            Obj::Tuple(_) => "a tuple".into(),
            Obj::List(_) => "a list".into(),
            Obj::Dict(_) => "a dict".into(),
            Obj::Global(m, n) => format!("the global {m}.{n}"),
            Obj::Instance { .. } => "an object".into(),
        }
    }

    /// A node id held by object `r`.
    fn node_id(&self, r: Ref, what: &str) -> Result<u32, DatasetError> {
        match self.arena[r] {
            Obj::Int(v) if v >= 0 && (v as u64) < MAX_NODES as u64 => Ok(v as u32),
            Obj::Int(v) => Err(self.err_at(r, format!("{what} {v} is not a valid node id"))),
            Obj::BigInt => Err(self.err_at(r, format!("{what} is an integer too large for a node id"))),
            _ => Err(self.err_at(r, format!("{what} is {}, expected an int", self.kind(r)))),
        }
    }

    fn alloc(&mut self, obj: Obj) -> Ref {
        self.arena.push(obj);
        self.origin.push(self.op_at);
        self.arena.len() - 1
    }

    fn push(&mut self, obj: Obj) {
        let r = self.alloc(obj);
        self.stack.push(Slot::Val(r));
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DatasetError> {
        if self.data.len() - self.pos < n {
            return Err(self.err(format!(
                "truncated pickle: {} needs {n} more bytes, {} left",
                self.op_name(),
                self.data.len() - self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DatasetError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DatasetError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DatasetError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A newline-terminated argument of a text opcode (without the newline).
    fn line(&mut self) -> Result<&'a [u8], DatasetError> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => {
                self.pos += p + 1;
                Ok(&rest[..p])
            }
            None => Err(self.err(format!("truncated pickle: {} argument has no terminating newline", self.op_name()))),
        }
    }

    fn line_str(&mut self) -> Result<String, DatasetError> {
        let l = self.line()?;
        match std::str::from_utf8(l) {
            Ok(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(self.err(format!("{} argument {} is not a name", self.op_name(), quote(l)))),
        }
    }

    fn pop(&mut self) -> Result<Ref, DatasetError> {
        match self.stack.pop() {
            Some(Slot::Val(r)) => Ok(r),
            Some(Slot::Mark) => Err(self.err(format!("{} found a MARK where it expected a value", self.op_name()))),
            None => Err(self.err(format!("stack underflow at {}", self.op_name()))),
        }
    }

    fn top(&self) -> Result<Ref, DatasetError> {
        match self.stack.last() {
            Some(Slot::Val(r)) => Ok(*r),
            Some(Slot::Mark) => Err(self.err(format!("{} found a MARK where it expected a value", self.op_name()))),
            None => Err(self.err(format!("stack underflow at {}", self.op_name()))),
        }
    }

    /// Pops everything above the topmost MARK, and the MARK.
    fn pop_mark(&mut self) -> Result<Vec<Ref>, DatasetError> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.err(format!("{} without a MARK on the stack", self.op_name())));
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        // Nothing above the topmost MARK is a MARK, so this drops nothing.
        Ok(items
            .into_iter()
            .filter_map(|s| match s {
                Slot::Val(r) => Some(r),
                Slot::Mark => None,
            })
            .collect())
    }

    fn memo_get(&mut self, k: u64) -> Result<(), DatasetError> {
        match self.memo.get(&k) {
            Some(&r) => {
                self.stack.push(Slot::Val(r));
                Ok(())
            }
            None => Err(self.err(format!("{} of memo key {k}, which was never stored", self.op_name()))),
        }
    }

    fn memo_put(&mut self, k: u64) -> Result<(), DatasetError> {
        let r = self.top()?;
        self.memo.insert(k, r);
        Ok(())
    }

    fn int_from_text(&mut self, text: &[u8]) -> Obj {
        let s = std::str::from_utf8(text).unwrap_or("");
        let s = s.strip_suffix('L').unwrap_or(s);
        match s {
            "00" | "01" => Obj::Bool,
            _ => match s.parse::<i64>() {
                Ok(v) => Obj::Int(v),
                Err(_) => Obj::BigInt,
            },
        }
    }

    /// Little-endian two's complement integer of `LONG1`/`LONG4`.
    fn long_from_bytes(b: &[u8]) -> Obj {
        if b.is_empty() {
            return Obj::Int(0);
        }
        let negative = b[b.len() - 1] & 0x80 != 0;
        let fill = if negative { 0xff } else { 0 };
        if b.len() > 8 && b[8..].iter().any(|&x| x != fill) {
            return Obj::BigInt;
        }
        let mut buf = [fill; 8];
        let n = b.len().min(8);
        buf[..n].copy_from_slice(&b[..n]);
        let v = i64::from_le_bytes(buf);
        if (v < 0) != negative {
            Obj::BigInt
        } else {
            Obj::Int(v)
        }
    }

    /// Runs the machine to STOP and returns the object it yields.
    fn run(&mut self) -> Result<Ref, DatasetError> {
        loop {
            self.op_at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                let msg = if self.data.is_empty() { "empty file, not a pickle" } else { "pickle ends without STOP" };
                return Err(self.err(msg));
            };
            self.pos += 1;
            self.op = op;
            let name = opcode_name(op);
            match name {
                None => return Err(self.err(format!("unknown opcode 0x{op:02x}; not a pickle or corrupted"))),
                Some((n, proto)) if proto > MAX_PROTOCOL => {
                    return Err(self.err(format!(
                        "opcode {n} needs pickle protocol {proto}; only protocol {MAX_PROTOCOL} is supported"
                    )))
                }
                Some((n, _)) if self.mode == Mode::Adjacency && !adjacency_allows(op) => {
                    return Err(self.err(format!(
                        "opcode {n} is outside the dict-of-lists subset this reader accepts for adjacency pickles"
                    )))
                }
                _ => {}
            }
            if op == b'.' {
                return self.pop();
            }
            self.step(op)?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), DatasetError> {
        match op {
            0x80 => {
                let v = self.u8()?;
                if v > MAX_PROTOCOL {
                    return Err(self.err(format!(
                        "pickle protocol {v} is not supported (only protocol {MAX_PROTOCOL}, as the Planetoid release writes)"
                    )));
                }
            }
            b'(' => self.stack.push(Slot::Mark),
            b'0' => {
                if self.stack.pop().is_none() {
                    return Err(self.err("stack underflow at POP"));
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let r = self.top()?;
                self.stack.push(Slot::Val(r));
            }
            // Memo.
            b'p' => {
                let l = self.line()?;
                let k = std::str::from_utf8(l).ok().and_then(|s| s.parse::<u64>().ok());
                match k {
                    Some(k) => self.memo_put(k)?,
                    None => return Err(self.err(format!("PUT key {} is not an integer", quote(l)))),
                }
            }
            b'q' => {
                let k = self.u8()? as u64;
                self.memo_put(k)?;
            }
            b'r' => {
                let k = self.u32()? as u64;
                self.memo_put(k)?;
            }
            b'g' => {
                let l = self.line()?;
                let k = std::str::from_utf8(l).ok().and_then(|s| s.parse::<u64>().ok());
                match k {
                    Some(k) => self.memo_get(k)?,
                    None => return Err(self.err(format!("GET key {} is not an integer", quote(l)))),
                }
            }
            b'h' => {
                let k = self.u8()? as u64;
                self.memo_get(k)?;
            }
            b'j' => {
                let k = self.u32()? as u64;
                self.memo_get(k)?;
            }
            // Scalars.
            b'N' => self.push(Obj::None),
            0x88 | 0x89 => self.push(Obj::Bool),
            b'I' | b'L' => {
                let l = self.line()?;
                let obj = self.int_from_text(l);
                self.push(obj);
            }
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Obj::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Obj::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.push(Obj::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                self.push(Self::long_from_bytes(b));
            }
            0x8b => {
                let n = self.u32()? as i32;
                if n < 0 {
                    return Err(self.err(format!("LONG4 with negative length {n}")));
                }
                let b = self.take(n as usize)?;
                self.push(Self::long_from_bytes(b));
            }
            b'F' => {
                self.line()?;
                self.push(Obj::Float);
            }
            b'G' => {
                self.take(8)?;
                self.push(Obj::Float);
            }
            // Strings.
            b'S' => {
                let l = self.line()?;
                let inner = match l {
                    [q, mid @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => mid,
                    _ => return Err(self.err(format!("STRING argument {} is not quoted", quote(l)))),
                };
                self.push(Obj::Str(inner.to_vec()));
            }
            b'V' => {
                let l = self.line()?;
                self.push(Obj::Str(l.to_vec()));
            }
            b'T' | b'X' => {
                let n = self.u32()? as i32;
                if n < 0 {
                    return Err(self.err(format!("{} with negative length {n}", self.op_name())));
                }
                let b = self.take(n as usize)?;
                self.push(Obj::Str(b.to_vec()));
            }
            b'U' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?;
                self.push(Obj::Str(b.to_vec()));
            }
            // Containers.
            b')' => self.push(Obj::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Obj::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Obj::Tuple(items));
            }
            b']' => self.push(Obj::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Obj::List(items));
            }
            b'}' => self.push(Obj::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push(Obj::Dict(pairs));
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_list(vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_dict(vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.extend_dict(pairs)?;
            }
            // Objects: recorded, never called.
            b'c' => {
                let module = self.line_str()?;
                let name = self.line_str()?;
                if self.mode == Mode::Adjacency && !adjacency_global(&module, &name) {
                    return Err(self.err(format!(
                        "global {module}.{name} is not allowed in an adjacency pickle \
                         (only collections.defaultdict and list)"
                    )));
                }
                self.push(Obj::Global(module, name));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                if self.mode == Mode::Adjacency {
                    self.check_defaultdict(callable, args)?;
                    self.push(Obj::Dict(Vec::new()));
                } else {
                    self.push(Obj::Instance { state: None });
                }
            }
            0x81 => {
                self.pop()?;
                self.pop()?;
                self.push(Obj::Instance { state: None });
            }
            b'i' => {
                self.line_str()?;
                self.line_str()?;
                self.pop_mark()?;
                self.push(Obj::Instance { state: None });
            }
            b'o' => {
                let items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(self.err("OBJ without a class on the stack"));
                }
                self.push(Obj::Instance { state: None });
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                if let Obj::Instance { state: s } = &mut self.arena[target] {
                    *s = Some(state);
                }
            }
            _ => {
                // PERSID, BINPERSID and EXT1/2/4 need the unpickler's own tables.
                return Err(self.err(format!("opcode {} is not supported", self.op_name())));
            }
        }
        Ok(())
    }

    /// Checks that a REDUCE in an adjacency pickle is `collections.defaultdict(list)`.
    fn check_defaultdict(&self, callable: Ref, args: Ref) -> Result<(), DatasetError> {
        let is_global = |r: Ref, m: &[&str], n: &str| matches!(&self.arena[r], Obj::Global(gm, gn) if m.contains(&gm.as_str()) && gn == n);
        if !is_global(callable, &["collections"], "defaultdict") {
            return Err(self.err(format!(
                "REDUCE applies {}; only collections.defaultdict(list) is allowed",
                self.kind(callable)
            )));
        }
        let ok = match &self.arena[args] {
            Obj::Tuple(t) => t.is_empty() || (t.len() == 1 && is_global(t[0], &["__builtin__", "builtins"], "list")),
            _ => false,
        };
        if !ok {
            return Err(self.err("defaultdict arguments must be (list,)"));
        }
        Ok(())
    }

    /// Pairs up `k v k v ...` for DICT and SETITEMS.
    fn pairs(&self, items: Vec<Ref>) -> Result<Vec<(Ref, Ref)>, DatasetError> {
        if items.len() % 2 == 1 {
            return Err(self.err(format!(
                "{} with an odd number ({}) of keys and values",
                self.op_name(),
                items.len()
            )));
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Ref>) -> Result<(), DatasetError> {
        let target = self.top()?;
        let kind = self.kind(target);
        match &mut self.arena[target] {
            Obj::List(l) => {
                l.extend(items);
                Ok(())
            }
            // A list subclass built by REDUCE; its items are not needed.
            Obj::Instance { .. } if self.mode == Mode::Inspect => Ok(()),
            _ => Err(self.err(format!("{} to {kind}, not a list", self.op_name()))),
        }
    }

    fn extend_dict(&mut self, pairs: Vec<(Ref, Ref)>) -> Result<(), DatasetError> {
        let target = self.top()?;
        let kind = self.kind(target);
        match &mut self.arena[target] {
            Obj::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            // A dict subclass built by REDUCE (such as a defaultdict); its items are not needed.
            Obj::Instance { .. } if self.mode == Mode::Inspect => Ok(()),
            _ => Err(self.err(format!("{} on {kind}, not a dict", self.op_name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(collections.defaultdict(list, {0: [1, 2], 1: [0], 2: [0, 300]}), 2)`.
    const DEFAULTDICT: &[u8] = b"\x80\x02ccollections\ndefaultdict\nq\x00c__builtin__\nlist\nq\x01\x85q\x02Rq\x03(K\x00]q\x04(K\x01K\x02eK\x01]q\x05K\x00aK\x02]q\x06(K\x00M,\x01eu.";

    #[test]
    fn reads_a_defaultdict_of_lists() {
        let e = parse_adjacency(DEFAULTDICT, "g").unwrap();
        assert_eq!(e, vec![(0, 1), (0, 2), (1, 0), (2, 0), (2, 300)]);
    }

    #[test]
    fn protocols_0_and_1_use_the_same_subset() {
        let p0 = b"ccollections\ndefaultdict\np0\n(c__builtin__\nlist\np1\ntp2\nRp3\nI0\n(lp4\nI1\naI2\nasI1\n(lp5\nI0\nasI2\n(lp6\nI0\naI300\nas.";
        let p1 = b"ccollections\ndefaultdict\nq\x00(c__builtin__\nlist\nq\x01tq\x02Rq\x03(K\x00]q\x04(K\x01K\x02eK\x01]q\x05K\x00aK\x02]q\x06(K\x00M,\x01eu.";
        let want = parse_adjacency(DEFAULTDICT, "g").unwrap();
        assert_eq!(parse_adjacency(p0, "g").unwrap(), want);
        assert_eq!(parse_adjacency(p1, "g").unwrap(), want);
        assert_eq!(parse_adjacency(b"(dp0\nI0\n(lp1\nI1\nas.", "g").unwrap(), vec![(0, 1)]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..DEFAULTDICT.len() {
            let e = parse_adjacency(&DEFAULTDICT[..n], "g").unwrap_err();
            assert!(e.to_string().starts_with("g: byte "), "{e}");
        }
    }

    #[test]
    fn foreign_globals_and_opcodes_are_named() {
        let e = parse_adjacency(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.", "g").unwrap_err();
        assert_eq!(
            e.to_string(),
            "g: byte 2: global os.system is not allowed in an adjacency pickle (only collections.defaultdict and list)"
        );
        let e = parse_adjacency(b"\x80\x04\x95\x00.", "g").unwrap_err();
        assert!(e.to_string().contains("protocol 4"), "{e}");
        let e = parse_adjacency(b"}N.", "g").unwrap_err();
        assert!(e.to_string().contains("opcode NONE is outside"), "{e}");
        let e = parse_adjacency(b"]K\x01a.", "g").unwrap_err();
        assert!(e.to_string().contains("holds a list"), "{e}");
        let e = parse_adjacency(b"}K\x01K\x02s.", "g").unwrap_err();
        assert_eq!(e.to_string(), "g: byte 3: the value of key 1 is an int, expected a list of ints");
    }

    #[test]
    fn shared_lists_cannot_amplify_memory() {
        // {0: L, 1: L, ..., 7: L} with L = [0, 1, 2, 3, 4, 5, 6] shared through the memo: 56
        // neighbours from 53 bytes.
        let p = b"}(K\x00](K\x00K\x01K\x02K\x03K\x04K\x05K\x06eq\x01K\x01h\x01K\x02h\x01K\x03h\x01K\x04h\x01K\x05h\x01K\x06h\x01K\x07h\x01u.";
        assert_eq!(p.len(), 53);
        let e = parse_adjacency(p, "g").unwrap_err();
        assert!(e.to_string().contains("shared too often"), "{e}");
        // Shared once is fine.
        let p = b"}(K\x00](K\x01K\x02eq\x01K\x01h\x01u.";
        assert_eq!(parse_adjacency(p, "g").unwrap(), vec![(0, 1), (0, 2), (1, 1), (1, 2)]);
    }

    #[test]
    fn long_and_negative_ids() {
        // {-1: []}
        let e = parse_adjacency(b"}J\xff\xff\xff\xff]s.", "g").unwrap_err();
        assert!(e.to_string().contains("-1 is not a valid node id"), "{e}");
        // {70000: [1]} via LONG1.
        let e = parse_adjacency(b"}\x8a\x03p\x11\x01]K\x01as.", "g").unwrap();
        assert_eq!(e, vec![(70000, 1)]);
        assert!(matches!(Machine::long_from_bytes(&[0xff]), Obj::Int(-1)));
        assert!(matches!(Machine::long_from_bytes(&[0; 12]), Obj::Int(0)));
        assert!(matches!(Machine::long_from_bytes(&[1; 12]), Obj::BigInt));
    }

    #[test]
    fn shape_of_numpy_like_state() {
        // An object built as REDUCE + BUILD with state (1, (3, 4), None, False, b'').
        let p = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00)Rq\x01(K\x01K\x03K\x04\x86NI00\nU\x00tb.";
        assert_eq!(parse_shape(p, "y").unwrap(), vec![3, 4]);
        let e = parse_shape(b"K\x01.", "y").unwrap_err();
        assert!(e.to_string().contains("found an int"), "{e}");
    }
}

//! The hand-written parser of the MLIR subset (custom assembly forms as `mlir-opt` and
//! torch-mlir print them). It works on bytes with a cursor, never panics on any input (the
//! fuzz test feeds it arbitrary text), bounds its recursion, and skips operations it does not
//! know to the end of their line (or their balanced brackets) so that dead or ignorable
//! operations do not stop a file from loading.

use std::collections::BTreeMap;

use fuseflow_ir::Span;

use crate::ast::*;
use crate::error::MlirError;

/// Deepest nesting of brackets the parser follows.
const MAX_DEPTH: usize = 256;

/// A parsed `#name = ...` alias.
#[derive(Debug, Clone)]
enum Alias {
    /// An `affine_map`, kept with its `floordiv`/`mod` results: such a map is only an error
    /// where it is used as an indexing map (it may be a block encoding's `dimToLvl`).
    Map(RawMap),
    Encoding(Encoding),
    Other,
}

/// One result of an affine map as written, before it is known whether it indexes an operand
/// (dimensions and constants only) or maps dimensions to storage levels (where a block
/// encoding's `floordiv` and `mod` are meaningful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Dim(usize),
    Const(i64),
    /// `dN floordiv B`: the block coordinate of dimension `N`.
    FloorDiv(usize, u64),
    /// `dN mod B`: the coordinate of dimension `N` within its block.
    Mod(usize, u64),
}

/// An affine map as written: its dimension count and each result with its position.
#[derive(Debug, Clone)]
struct RawMap {
    /// The dimension names (`d0`, `i`).
    dims: Vec<String>,
    results: Vec<(Term, Span)>,
}

/// What an indexing map may not contain (a block encoding's level expressions among them).
const NOT_AN_INDEX: &str =
    "affine map results other than a dimension or a constant (e.g. `d0 + d1`, `floordiv`) are not supported";

impl RawMap {
    /// The map as an indexing map: dimensions and constants only.
    fn to_affine(&self, file: &str) -> Result<AffineMap, MlirError> {
        let results = self
            .results
            .iter()
            .map(|&(t, span)| match t {
                Term::Dim(d) => Ok(AffineExpr::Dim(d)),
                Term::Const(c) => Ok(AffineExpr::Const(c)),
                Term::FloorDiv(..) | Term::Mod(..) => Err(MlirError::at(file, span, NOT_AN_INDEX)),
            })
            .collect::<Result<_, _>>()?;
        Ok(AffineMap { dims: self.dims.len(), results })
    }
}

/// Parses MLIR text. `file` is used in error messages.
pub fn parse(src: &str, file: &str) -> Result<Module, MlirError> {
    let mut line_starts = vec![0];
    line_starts.extend(src.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
    let mut p = P { s: src.as_bytes(), pos: 0, file, line_starts, aliases: BTreeMap::new(), last_hex: None };
    p.module()
}

struct P<'a> {
    s: &'a [u8],
    pos: usize,
    file: &'a str,
    line_starts: Vec<usize>,
    aliases: BTreeMap<String, Alias>,
    /// The bit pattern of the last hex literal read (a float constant written in hex).
    last_hex: Option<u64>,
}

type R<T> = Result<T, MlirError>;

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$'
}

/// A value-name character after `%` (MLIR allows `[A-Za-z0-9_$.-]`).
fn is_ssa_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$' || b == b'-'
}

impl<'a> P<'a> {
    fn span_of(&self, pos: usize) -> Span {
        let line = self.line_starts.partition_point(|&s| s <= pos).max(1);
        let start = self.line_starts[line - 1];
        Span { line: line as u32, col: (pos.saturating_sub(start) + 1) as u32 }
    }

    fn span(&self) -> Span {
        self.span_of(self.pos)
    }

    fn err(&self, msg: impl Into<String>) -> MlirError {
        MlirError::at(self.file, self.span(), msg)
    }

    fn err_at(&self, span: Span, msg: impl Into<String>) -> MlirError {
        MlirError::at(self.file, span, msg)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.pos + k).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or(&[])
    }

    /// Skips spaces, newlines and `//` comments.
    fn ws(&mut self) {
        self.skip_blank(true);
    }

    /// Skips spaces and tabs (not newlines) and a trailing `//` comment.
    fn ws_line(&mut self) {
        self.skip_blank(false);
    }

    /// Skips blanks (newlines too when `newlines`) and `//` comments up to the end of a line.
    fn skip_blank(&mut self, newlines: bool) {
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' || b == b'\r' || (newlines && b.is_ascii_whitespace()) {
                self.pos += 1;
            } else if b == b'/' && self.peek_at(1) == Some(b'/') {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn looking_at(&mut self, t: &str) -> bool {
        self.ws();
        self.rest().starts_with(t.as_bytes())
    }

    /// Consumes `t` (after whitespace) if it is next.
    fn eat(&mut self, t: &str) -> bool {
        if self.looking_at(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// Consumes the keyword `t` if it is next and not followed by an identifier character.
    fn eat_kw(&mut self, t: &str) -> bool {
        if self.looking_at(t) && !self.s.get(self.pos + t.len()).is_some_and(|&b| is_ident_char(b)) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &str, ctx: &str) -> R<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{t}` {ctx}, found {}", self.found())))
        }
    }

    /// The next few characters (after whitespace), for error messages.
    fn found(&self) -> String {
        let mut q = self.pos;
        while q < self.s.len() {
            if self.s[q].is_ascii_whitespace() {
                q += 1;
            } else if self.s[q] == b'/' && self.s.get(q + 1) == Some(&b'/') {
                while q < self.s.len() && self.s[q] != b'\n' {
                    q += 1;
                }
            } else {
                break;
            }
        }
        let rest = self.s.get(q..).unwrap_or(&[]);
        if rest.is_empty() {
            return "end of file".into();
        }
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len()).min(24);
        format!("`{}`", String::from_utf8_lossy(&rest[..end]))
    }

    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.pos;
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        while self.peek().is_some_and(is_ident_char) {
            self.pos += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn expect_ident(&mut self, what: &str) -> R<String> {
        match self.ident() {
            Some(s) => Ok(s),
            None => Err(self.err(format!("expected {what}, found {}", self.found()))),
        }
    }

    fn uint(&mut self, what: &str) -> R<u64> {
        self.ws();
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        if text.is_empty() {
            return Err(self.err(format!("expected {what}, found {}", self.found())));
        }
        text.parse::<u64>().map_err(|_| self.err_at(self.span_of(start), format!("{what} {text} is too large")))
    }

    fn usize_(&mut self, what: &str) -> R<usize> {
        let v = self.uint(what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what} {v} is too large")))
    }

    /// A numeric literal (`-1.5e-3`, `42`, `0xFF800000`) as written.
    fn number_text(&mut self) -> Option<String> {
        self.ws();
        let start = self.pos;
        if matches!(self.peek(), Some(b'-') | Some(b'+')) {
            self.pos += 1;
        }
        if self.rest().starts_with(b"0x") || self.rest().starts_with(b"0X") {
            self.pos += 2;
            while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                self.pos += 1;
            }
        } else {
            let digits = self.pos;
            while let Some(b) = self.peek() {
                let exp_sign = (b == b'-' || b == b'+')
                    && matches!(self.s.get(self.pos.saturating_sub(1)), Some(b'e') | Some(b'E'));
                if b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || exp_sign {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            if self.pos == digits || !self.s[digits].is_ascii_digit() {
                self.pos = start;
                return None;
            }
        }
        Some(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn string(&mut self) -> R<String> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err(format!("expected a string, found {}", self.found())));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    out.push(b'\\');
                    out.extend(self.peek_at(1));
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Skips one balanced group that starts at the cursor with `(`, `[`, `{` or `<` (inside
    /// `<...>`, `->` is not a closing bracket); strings are skipped whole.
    fn skip_group(&mut self) -> R<()> {
        let start = self.span();
        let mut stack: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err_at(start, "unbalanced brackets: this group is never closed"));
            };
            match b {
                b'"' => {
                    self.string()?;
                    if stack.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                b'(' | b'[' | b'{' | b'<' => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.err(format!("brackets nested deeper than {MAX_DEPTH}")));
                    }
                    stack.push(match b {
                        b'(' => b')',
                        b'[' => b']',
                        b'{' => b'}',
                        _ => b'>',
                    })
                }
                b'-' if self.peek_at(1) == Some(b'>') => {
                    self.pos += 2;
                    continue;
                }
                b')' | b']' | b'}' | b'>' => {
                    if stack.last() == Some(&b) {
                        stack.pop();
                    } else if b != b'>' {
                        return Err(self.err(format!("unbalanced `{}`", b as char)));
                    }
                }
                _ => {}
            }
            self.pos += 1;
            if stack.is_empty() {
                return Ok(());
            }
        }
    }

    /// Skips to the end of the line, following brackets opened on it to their close.
    fn skip_op_rest(&mut self) -> R<Vec<Operand>> {
        let mut operands = Vec::new();
        loop {
            self.ws_line();
            match self.peek() {
                None | Some(b'\n') => return Ok(operands),
                Some(b'(' | b'[' | b'{' | b'<') => {
                    let from = self.pos;
                    self.skip_group()?;
                    let to = self.pos;
                    // Operands inside the group (e.g. `ins(%a : T)`), for liveness.
                    let mut q = from;
                    while q < to {
                        if self.s[q] == b'%' {
                            let save = self.pos;
                            self.pos = q;
                            if let Ok(o) = self.operand() {
                                operands.push(o);
                            }
                            q = self.pos.max(q + 1);
                            self.pos = save;
                        } else {
                            q += 1;
                        }
                    }
                }
                Some(b'%') => operands.push(self.operand()?),
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn ssa_name(&mut self) -> R<(String, Span)> {
        self.ws();
        let span = self.span();
        if self.peek() != Some(b'%') {
            return Err(self.err(format!("expected a value `%name`, found {}", self.found())));
        }
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(is_ssa_char) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err_at(span, "expected a value name after `%`"));
        }
        Ok((String::from_utf8_lossy(&self.s[start..self.pos]).into_owned(), span))
    }

    fn operand(&mut self) -> R<Operand> {
        let (name, span) = self.ssa_name()?;
        let index = if self.peek() == Some(b'#') {
            self.pos += 1;
            self.usize_("a result number")?
        } else {
            0
        };
        Ok(Operand { name, index, span })
    }

    // ---- module structure ----

    fn module(&mut self) -> R<Module> {
        let mut m = Module::default();
        let mut open_modules = 0usize;
        loop {
            self.ws();
            let Some(b) = self.peek() else { break };
            if self.rest().starts_with(b"{-#") {
                self.resources(&mut m)?;
            } else if b == b'#' {
                self.alias_def()?;
            } else if b == b'}' {
                if open_modules == 0 {
                    return Err(self.err("unexpected `}` outside a module"));
                }
                open_modules -= 1;
                self.pos += 1;
            } else if self.eat_kw("module") || self.eat_kw("builtin.module") {
                if self.peek_ws() == Some(b'@') {
                    self.pos += 1;
                    self.expect_ident("a module name")?;
                }
                if self.eat_kw("attributes") {
                    self.ws();
                    let from = self.pos;
                    self.skip_group()?;
                    let text = String::from_utf8_lossy(&self.s[from..self.pos]).into_owned();
                    if let Some(name) = debug_module_name(&text) {
                        m.debug_name = Some(name);
                    }
                }
                self.expect("{", "opening the module body")?;
                open_modules += 1;
            } else if self.looking_at("func.func") || self.looking_at("func ") {
                if let Some(f) = self.func()? {
                    m.funcs.push(f);
                }
            } else {
                let span = self.span();
                let name = self.expect_ident("`module`, `func.func` or an attribute alias")?;
                self.skip_op_rest()?;
                m.notes.push(format!("line {}: `{name}` ignored", span.line));
            }
        }
        if open_modules != 0 {
            return Err(self.err("the module is never closed (missing `}`)"));
        }
        Ok(m)
    }

    fn peek_ws(&mut self) -> Option<u8> {
        self.ws();
        self.peek()
    }

    /// `#name = value`.
    fn alias_def(&mut self) -> R<()> {
        let span = self.span();
        self.pos += 1;
        let name = self.expect_ident("an attribute alias name after `#`")?;
        self.expect("=", &format!("after #{name}"))?;
        let value = if self.eat("affine_map") {
            Alias::Map(self.raw_map_body()?)
        } else if self.eat("#sparse_tensor.encoding") {
            Alias::Encoding(self.encoding_body(span)?)
        } else {
            self.skip_attr_value()?;
            Alias::Other
        };
        self.aliases.insert(name, value);
        Ok(())
    }

    /// Skips one attribute value.
    fn skip_attr_value(&mut self) -> R<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'(' | b'[' | b'{' | b'<') => self.skip_group()?,
            Some(b'#') => {
                self.pos += 1;
                self.ident();
                if self.peek() == Some(b'<') {
                    self.skip_group()?;
                }
            }
            Some(b'%') => {
                self.operand()?;
            }
            _ => {
                if self.number_text().is_none() && self.ident().is_none() {
                    return Err(self.err(format!("expected an attribute value, found {}", self.found())));
                }
                if self.peek() == Some(b'<') {
                    self.skip_group()?;
                }
            }
        }
        if self.eat(":") {
            self.skip_type_text()?;
        }
        Ok(())
    }

    fn skip_type_text(&mut self) -> R<()> {
        self.ws();
        if self.ident().is_none() && self.peek() != Some(b'(') {
            return Err(self.err(format!("expected a type, found {}", self.found())));
        }
        if matches!(self.peek(), Some(b'<') | Some(b'(')) {
            self.skip_group()?;
        }
        Ok(())
    }

    /// `<(d0, d1) -> (d1, 0)>` after `affine_map`, as an indexing map.
    fn affine_map_body(&mut self) -> R<AffineMap> {
        self.raw_map_body()?.to_affine(self.file)
    }

    /// `<(d0, d1) -> (d1, 0)>` after `affine_map`, block terms (`d0 floordiv 2`, `d0 mod 2`)
    /// allowed.
    fn raw_map_body(&mut self) -> R<RawMap> {
        self.expect("<", "after affine_map")?;
        let dims = self.name_list("a dimension name")?;
        if self.looking_at("[") {
            return Err(self.err("affine maps with symbols are not supported"));
        }
        self.expect("->", "in the affine map")?;
        self.expect("(", "opening the affine map's results")?;
        let mut results = Vec::new();
        if !self.eat(")") {
            loop {
                let span = self.span();
                let t = self.term(&dims, "the affine map")?;
                self.ws();
                if !matches!(self.peek(), Some(b',') | Some(b')')) {
                    return Err(self.err_at(span, NOT_AN_INDEX));
                }
                results.push((t, span));
                if self.eat(")") {
                    break;
                }
                self.expect(",", "between affine map results")?;
            }
        }
        self.expect(">", "closing the affine map")?;
        Ok(RawMap { dims, results })
    }

    /// One affine term: a dimension, a constant, or `dim floordiv N` / `dim mod N`. `what`
    /// names the map in errors.
    fn term(&mut self, dims: &[String], what: &str) -> R<Term> {
        let span = self.span();
        if let Some(t) = self.number_text() {
            return Ok(Term::Const(t.parse::<i64>().map_err(|_| self.err_at(span, format!("bad constant {t}")))?));
        }
        let n = self.expect_ident("a dimension name or a constant")?;
        let Some(d) = dims.iter().position(|x| *x == n) else {
            return Err(self.err_at(span, format!("unknown dimension {n} in {what}")));
        };
        if self.eat_kw("floordiv") {
            Ok(Term::FloorDiv(d, self.uint("a block size after floordiv")?))
        } else if self.eat_kw("mod") {
            Ok(Term::Mod(d, self.uint("a block size after mod")?))
        } else {
            Ok(Term::Dim(d))
        }
    }

    /// `(a, b, c)`: identifiers.
    fn name_list(&mut self, what: &str) -> R<Vec<String>> {
        self.expect("(", &format!("opening a list of {what}s"))?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            out.push(self.expect_ident(what)?);
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",", &format!("between {what}s"))?;
        }
    }

    /// `<{ map = (i, j) -> (i : dense, j : compressed), posWidth = 32 }>` after
    /// `#sparse_tensor.encoding` (or the older `lvlTypes` + `dimToLvl` fields).
    fn encoding_body(&mut self, span: Span) -> R<Encoding> {
        self.expect("<", "after #sparse_tensor.encoding")?;
        self.expect("{", "opening the encoding")?;
        let mut enc: Option<Encoding> = None;
        let mut lvl_types: Option<Vec<(LevelKind, Span)>> = None;
        let mut dim_to_lvl: Option<RawMap> = None;
        if !self.eat("}") {
            loop {
                let kspan = self.span();
                let key = self.expect_ident("an encoding field (map, posWidth, crdWidth)")?;
                self.expect("=", &format!("after {key}"))?;
                match key.as_str() {
                    "map" => enc = Some(self.level_map(span)?),
                    "lvlTypes" => {
                        self.expect("[", "opening lvlTypes")?;
                        let mut v = Vec::new();
                        if !self.eat("]") {
                            loop {
                                let s = self.span();
                                let t = self.string()?;
                                v.push((level_kind(&t).ok_or_else(|| {
                                    self.err_at(s, format!("level type {t:?} is not supported (dense, compressed, compressed(nonunique), singleton)"))
                                })?, s));
                                if self.eat("]") {
                                    break;
                                }
                                self.expect(",", "between level types")?;
                            }
                        }
                        lvl_types = Some(v);
                    }
                    "dimToLvl" | "dimOrdering" => {
                        // Inline, or an alias (`dimToLvl = #map`).
                        let s = self.span();
                        dim_to_lvl = Some(if self.eat("affine_map") {
                            self.raw_map_body()?
                        } else {
                            self.expect("#", "(an affine_map or its alias) for dimToLvl")?;
                            let name = self.expect_ident("an affine map alias")?;
                            match self.aliases.get(&name) {
                                Some(Alias::Map(m)) => m.clone(),
                                Some(_) => return Err(self.err_at(s, format!("#{name} is not an affine map"))),
                                None => return Err(self.err_at(s, format!("unknown attribute alias #{name}"))),
                            }
                        });
                    }
                    "posWidth" | "crdWidth" | "pointerBitWidth" | "indexBitWidth" => {
                        self.uint("a bit width")?;
                    }
                    _ => {
                        return Err(self.err_at(kspan, format!("encoding field `{key}` is not supported")));
                    }
                }
                if self.eat("}") {
                    break;
                }
                self.expect(",", "between encoding fields")?;
            }
        }
        self.expect(">", "closing the encoding")?;
        if let Some(e) = enc {
            return Ok(e);
        }
        let Some(kinds) = lvl_types else {
            return Err(self.err_at(span, "encoding without `map` or `lvlTypes`"));
        };
        let n = kinds.len();
        let (dims, terms): (Vec<String>, Vec<(Term, Span)>) = match dim_to_lvl {
            Some(m) => (m.dims, m.results),
            None => ((0..n).map(|d| format!("d{d}")).collect(), (0..n).map(|d| (Term::Dim(d), span)).collect()),
        };
        if terms.len() != n {
            return Err(self.err_at(span, "dimToLvl and lvlTypes differ in length"));
        }
        let levels = terms.into_iter().zip(kinds).map(|((t, s), (k, _))| (t, s, k)).collect();
        encoding_of(self.file, span, &dims, levels)
    }

    /// `(i, j) -> (j : dense, i : compressed)`; block levels (`i floordiv 2 : dense`, `i mod 2 :
    /// dense`) and MLIR's explicit level variables (`{l0, l1} (i = ..., j = ...) -> (l0 = i
    /// floordiv 2 : ...)`) included.
    fn level_map(&mut self, span: Span) -> R<Encoding> {
        if self.looking_at("[") {
            return Err(self.err("encodings with symbols are not supported"));
        }
        // Level variables name the levels; the dimension-to-level expressions say the same.
        if self.looking_at("{") {
            self.skip_group()?;
        }
        let dims = self.dim_specs()?;
        self.expect("->", "in the encoding's map")?;
        self.expect("(", "opening the encoding's levels")?;
        let mut levels = Vec::new();
        loop {
            // `l0 = i floordiv 2`: the level variable is only a name.
            let save = self.pos;
            if !(self.ident().is_some() && self.eat("=")) {
                self.pos = save;
            }
            self.ws();
            let s = self.span();
            let term = self.term(&dims, "the encoding")?;
            if self.looking_at("*") || self.looking_at("+") || self.looking_at("-") || self.looking_at("ceildiv") {
                return Err(
                    self.err_at(s, "level expressions other than `d`, `d floordiv B` and `d mod B` are not supported")
                );
            }
            self.expect(":", "between a level's dimension and its type")?;
            let ts = self.span();
            let mut t = self.expect_ident("a level type")?;
            if self.peek_ws() == Some(b'(') {
                let from = self.pos;
                self.skip_group()?;
                t.push_str(&String::from_utf8_lossy(&self.s[from..self.pos]).replace(' ', ""));
            }
            let kind = level_kind(&t).ok_or_else(|| {
                self.err_at(
                    ts,
                    format!("level type `{t}` is not supported (dense, compressed, compressed(nonunique), singleton)"),
                )
            })?;
            levels.push((term, s, kind));
            if self.eat(")") {
                break;
            }
            self.expect(",", "between levels")?;
        }
        encoding_of(self.file, span, &dims, levels)
    }

    /// `(i, j)`, or with the level-to-dimension expressions MLIR's explicit form gives
    /// (`(i = l0 * 2 + l2, j = l1 * 2 + l3)`), which the levels' own expressions imply.
    fn dim_specs(&mut self) -> R<Vec<String>> {
        self.expect("(", "opening a list of dimension names")?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            out.push(self.expect_ident("a dimension name")?);
            if self.eat("=") {
                // Skip the expression to the next `,` or `)` of this list.
                loop {
                    self.ws();
                    match self.peek() {
                        None => return Err(self.err("the encoding's dimension list is never closed")),
                        Some(b',' | b')') => break,
                        Some(b'(') => self.skip_group()?,
                        Some(_) => self.pos += 1,
                    }
                }
            }
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",", "between dimension names")?;
        }
    }

    /// The `{-# dialect_resources: { builtin: { key: "0x..." } } #-}` section.
    fn resources(&mut self, m: &mut Module) -> R<()> {
        self.pos += 3;
        let mut depth = 0usize;
        loop {
            self.ws();
            if self.eat("#-}") {
                return Ok(());
            }
            match self.peek() {
                None => return Err(self.err("the `{-#` resource section is never closed with `#-}`")),
                Some(b'}') => {
                    self.pos += 1;
                    depth = depth.saturating_sub(1);
                }
                Some(b',') => self.pos += 1,
                _ => {
                    let key = if self.peek() == Some(b'"') {
                        self.string()?
                    } else {
                        let start = self.pos;
                        while self.peek().is_some_and(|b| is_ident_char(b) || b == b'-') {
                            self.pos += 1;
                        }
                        if start == self.pos {
                            return Err(self.err(format!("expected a resource key, found {}", self.found())));
                        }
                        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
                    };
                    self.expect(":", "after a resource key")?;
                    self.ws();
                    if self.peek() == Some(b'{') {
                        if depth >= MAX_DEPTH {
                            return Err(self.err("resource section nested too deeply"));
                        }
                        self.pos += 1;
                        depth += 1;
                    } else {
                        let s = self.span();
                        let text = self.string()?;
                        let bytes = hex_bytes(&text)
                            .ok_or_else(|| self.err_at(s, format!("resource {key}: expected a hex blob \"0x...\"")))?;
                        m.resources.insert(key, bytes);
                    }
                }
            }
        }
    }

    // ---- types ----

    fn ty(&mut self) -> R<Type> {
        self.ws();
        let span = self.span();
        if self.eat("tensor") {
            self.expect("<", "after tensor")?;
            let mut shape = Vec::new();
            loop {
                self.ws();
                match self.peek() {
                    Some(b) if b.is_ascii_digit() => {
                        shape.push(self.uint("a dimension size")?);
                        if self.peek() != Some(b'x') {
                            return Err(
                                self.err(format!("expected `x` after a dimension size, found {}", self.found()))
                            );
                        }
                        self.pos += 1;
                    }
                    Some(b'?') => {
                        // A dynamic size: resolved before translation (`crate::dynamic`).
                        self.pos += 1;
                        shape.push(DYNAMIC);
                        if self.peek() != Some(b'x') {
                            return Err(self.err(format!("expected `x` after `?`, found {}", self.found())));
                        }
                        self.pos += 1;
                    }
                    _ => break,
                }
            }
            let elem = self.expect_ident("an element type")?;
            let encoding = if self.eat(",") {
                let es = self.span();
                if self.eat("#sparse_tensor.encoding") {
                    Some(self.encoding_body(es)?)
                } else {
                    self.expect("#", "(an encoding alias)")?;
                    let name = self.expect_ident("an encoding alias")?;
                    match self.aliases.get(&name) {
                        Some(Alias::Encoding(e)) => Some(e.clone()),
                        Some(_) => return Err(self.err_at(es, format!("#{name} is not a sparse tensor encoding"))),
                        None => return Err(self.err_at(es, format!("unknown attribute alias #{name}"))),
                    }
                }
            } else {
                None
            };
            self.expect(">", "closing the tensor type")?;
            if let Some(e) = &encoding {
                if e.dims != shape.len() {
                    return Err(self.err_at(
                        span,
                        format!("the encoding has {} dimensions but the tensor has rank {}", e.dims, shape.len()),
                    ));
                }
            }
            return Ok(Type::Tensor(TensorType { shape, elem, encoding }));
        }
        let name = self.expect_ident("a type")?;
        if matches!(name.as_str(), "memref" | "vector") || self.peek() == Some(b'<') {
            return Err(self.err_at(span, format!("type `{name}` is not supported (only tensors and scalars)")));
        }
        Ok(Type::Scalar(name))
    }

    /// `T` or `(T, T)` after `->`.
    fn result_types(&mut self) -> R<Vec<Type>> {
        if self.eat("(") {
            let mut v = Vec::new();
            if self.eat(")") {
                return Ok(v);
            }
            loop {
                v.push(self.ty()?);
                if self.eat(")") {
                    return Ok(v);
                }
                self.expect(",", "between result types")?;
            }
        }
        Ok(vec![self.ty()?])
    }

    // ---- functions and operations ----

    fn func(&mut self) -> R<Option<Func>> {
        self.ws();
        let span = self.span();
        if !self.eat_kw("func.func") {
            self.eat_kw("func");
        }
        let _ = self.eat_kw("private") || self.eat_kw("public") || self.eat_kw("nested");
        self.expect("@", "before the function name")?;
        let name = self.expect_ident("a function name")?;
        self.expect("(", "opening the argument list")?;
        let mut args = Vec::new();
        let mut arg_names = Vec::new();
        if !self.eat(")") {
            loop {
                let (a, s) = self.ssa_name()?;
                self.expect(":", &format!("after argument %{a}"))?;
                let t = self.ty()?;
                let mut named = None;
                if self.peek_ws() == Some(b'{') {
                    let from = self.pos;
                    self.skip_group()?;
                    let text = String::from_utf8_lossy(&self.s[from..self.pos]).into_owned();
                    named = ARG_NAME_KEYS.iter().find_map(|k| string_attr(&text, k));
                }
                args.push((a, t, s));
                arg_names.push(named);
                if self.eat(")") {
                    break;
                }
                self.expect(",", "between arguments")?;
            }
        }
        let results = if self.eat("->") { self.result_types()? } else { Vec::new() };
        if self.eat_kw("attributes") {
            self.ws();
            self.skip_group()?;
        }
        if !self.eat("{") {
            // A declaration without a body.
            return Ok(None);
        }
        let mut body = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                None => return Err(self.err_at(span, format!("function @{name} is never closed (missing `}}`)"))),
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => body.push(self.op()?),
            }
        }
        Ok(Some(Func { name, args, arg_names, results, body, span }))
    }

    fn op(&mut self) -> R<Op> {
        self.ws();
        let mut result = None;
        if self.peek() == Some(b'%') {
            let (name, _) = self.ssa_name()?;
            let count = if self.peek() == Some(b':') {
                self.pos += 1;
                self.usize_("a result count")?
            } else {
                1
            };
            if self.looking_at(",") {
                return Err(self.err("operations with several result names are not supported (use `%r:2`)"));
            }
            self.expect("=", &format!("after %{name}"))?;
            result = Some((name, count));
        }
        self.ws();
        let span = self.span();
        if self.peek() == Some(b'"') {
            return Err(self.err("operations in the generic form (`\"dialect.op\"(...)`) are not supported"));
        }
        let name = self.expect_ident("an operation name")?;
        let kind = match name.as_str() {
            "arith.constant" => self.constant()?,
            "tensor.empty" => {
                self.expect("(", "after tensor.empty")?;
                // The sizes of dynamic dimensions (`tensor.empty(%d0) : tensor<?x4xf32>`): the
                // translation takes them from what the dimensions are tied to instead.
                if !self.eat(")") {
                    loop {
                        self.operand()?;
                        if self.eat(")") {
                            break;
                        }
                        self.expect(",", "between tensor.empty's sizes")?;
                    }
                }
                self.expect(":", "before the type of tensor.empty")?;
                match self.ty()? {
                    Type::Tensor(t) => OpKind::Empty(t),
                    Type::Scalar(s) => return Err(self.err_at(span, format!("tensor.empty of scalar type {s}"))),
                }
            }
            "linalg.fill" => {
                let ins = self.operand_group("ins")?;
                let outs = self.operand_group("outs")?;
                let rt = self.arrow_types()?;
                let (Some((value, _)), Some((out, _))) = (ins.first(), outs.first()) else {
                    return Err(self.err_at(span, "`linalg.fill` needs one input and one output"));
                };
                OpKind::Fill { value: value.clone(), out: out.clone(), ty: single_tensor(self, span, &name, &rt)? }
            }
            "linalg.matmul"
            | "linalg.batch_matmul"
            | "linalg.matvec"
            | "linalg.add"
            | "linalg.sub"
            | "linalg.mul"
            | "linalg.div"
            | "linalg.max"
            | "linalg.exp" => {
                if self.peek_ws() == Some(b'{') {
                    self.skip_group()?;
                }
                if self.looking_at("indexing_maps") {
                    return Err(self.err_at(span, format!("`{name}` with explicit indexing_maps is not supported")));
                }
                let ins = self.operand_group("ins")?;
                let outs = self.operand_group("outs")?;
                let rt = self.arrow_types()?;
                let which = match name.as_str() {
                    "linalg.matmul" => NamedOp::Matmul,
                    "linalg.batch_matmul" => NamedOp::BatchMatmul,
                    "linalg.add" => NamedOp::Add,
                    "linalg.sub" => NamedOp::Sub,
                    "linalg.mul" => NamedOp::Mul,
                    "linalg.div" => NamedOp::Div,
                    "linalg.max" => NamedOp::Max,
                    "linalg.exp" => NamedOp::Exp,
                    _ => NamedOp::Matvec,
                };
                let arity = if which == NamedOp::Exp { 1 } else { 2 };
                if ins.len() != arity || outs.len() != 1 {
                    return Err(self.err_at(span, format!("`{name}` needs {arity} inputs and one output")));
                }
                let ty = single_tensor(self, span, &name, &rt)?;
                OpKind::Named { which, ins, out: outs[0].clone(), ty }
            }
            "linalg.transpose" => {
                let ins = self.operand_group("ins")?;
                let outs = self.operand_group("outs")?;
                self.expect("permutation", "in linalg.transpose")?;
                self.expect("=", "after permutation")?;
                let perm = self.int_list()?;
                if ins.len() != 1 || outs.len() != 1 {
                    return Err(self.err_at(span, "`linalg.transpose` needs one input and one output"));
                }
                OpKind::Transpose { input: ins[0].clone(), out: outs[0].clone(), perm }
            }
            "linalg.generic" => OpKind::Generic(Box::new(self.generic(span)?)),
            "tensor.expand_shape" | "tensor.collapse_shape" => {
                let src = self.operand()?;
                let groups = self.reassociation()?;
                if self.eat_kw("output_shape") {
                    self.ws();
                    self.skip_group()?;
                }
                self.expect(":", &format!("before the types of {name}"))?;
                let from = self.ty()?;
                self.expect("into", &format!("in {name}"))?;
                let to = self.ty()?;
                OpKind::Reshape { src, groups, from, to }
            }
            // `tensor.cast %x : T to U` (torch-mlir casts a result to the declared sparse type):
            // a reshape that keeps every dimension.
            "tensor.cast" => {
                let src = self.operand()?;
                self.expect(":", "before the types of tensor.cast")?;
                let from = self.ty()?;
                self.expect("to", "in tensor.cast")?;
                let to = self.ty()?;
                OpKind::Reshape { src, groups: Vec::new(), from, to }
            }
            "return" | "func.return" => {
                let mut v = Vec::new();
                self.ws_line();
                if self.peek() == Some(b'%') {
                    loop {
                        v.push(self.operand()?);
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.expect(":", "before the returned types")?;
                    loop {
                        self.ty()?;
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                OpKind::Return(v)
            }
            _ => OpKind::Other(self.skip_op_rest()?),
        };
        Ok(Op { result, name, kind, span })
    }

    fn int_list(&mut self) -> R<Vec<usize>> {
        self.expect("[", "opening a list")?;
        let mut v = Vec::new();
        if self.eat("]") {
            return Ok(v);
        }
        loop {
            v.push(self.usize_("an integer")?);
            if self.eat("]") {
                return Ok(v);
            }
            self.expect(",", "between list items")?;
        }
    }

    fn reassociation(&mut self) -> R<Vec<Vec<usize>>> {
        self.expect("[", "opening the reassociation")?;
        let mut v = Vec::new();
        if self.eat("]") {
            return Ok(v);
        }
        loop {
            v.push(self.int_list()?);
            if self.eat("]") {
                return Ok(v);
            }
            self.expect(",", "between reassociation groups")?;
        }
    }

    /// `-> T` or `-> (T, T)`, or nothing.
    fn arrow_types(&mut self) -> R<Vec<Type>> {
        self.ws_line();
        if self.eat("->") {
            self.result_types()
        } else {
            Ok(Vec::new())
        }
    }

    /// `KW(%a, %b : T1, T2)`.
    fn operand_group(&mut self, kw: &str) -> R<Vec<(Operand, Type)>> {
        self.expect(kw, "")?;
        self.expect("(", &format!("after {kw}"))?;
        let mut ops = Vec::new();
        if self.eat(")") {
            return Ok(Vec::new());
        }
        loop {
            ops.push(self.operand()?);
            if !self.eat(",") {
                break;
            }
        }
        self.expect(":", &format!("before the types in {kw}(...)"))?;
        let mut types = Vec::new();
        loop {
            types.push(self.ty()?);
            if !self.eat(",") {
                break;
            }
        }
        self.expect(")", &format!("closing {kw}(...)"))?;
        if ops.len() != types.len() {
            return Err(self.err(format!("{kw}(...) has {} values but {} types", ops.len(), types.len())));
        }
        Ok(ops.into_iter().zip(types).collect())
    }

    fn constant(&mut self) -> R<OpKind> {
        self.ws();
        let span = self.span();
        let value = if self.eat("dense_resource") {
            self.expect("<", "after dense_resource")?;
            self.ws();
            let start = self.pos;
            while self.peek().is_some_and(|b| b != b'>' && b != b'\n') {
                self.pos += 1;
            }
            let key = String::from_utf8_lossy(&self.s[start..self.pos]).trim().to_string();
            self.expect(">", "closing dense_resource")?;
            ConstValue::Resource(key)
        } else if self.eat("dense") {
            self.expect("<", "after dense")?;
            self.ws();
            let v = if self.peek() == Some(b'"') {
                let s = self.span();
                let text = self.string()?;
                let bytes = hex_bytes(&text).ok_or_else(|| self.err_at(s, "expected a hex string \"0x...\""))?;
                ConstValue::Array(bytes_to_f32(&bytes))
            } else if self.peek() == Some(b'[') {
                let mut vals = Vec::new();
                self.nested_numbers(&mut vals, 0)?;
                ConstValue::Array(vals)
            } else {
                ConstValue::Splat(self.scalar_literal()?)
            };
            self.expect(">", "closing dense<...>")?;
            v
        } else {
            ConstValue::Scalar(self.scalar_literal()?)
        };
        self.expect(":", "before the constant's type")?;
        let ty = self.ty()?;
        let value = match (value, &ty) {
            // A hex literal of a float type is its bit pattern (0xFF800000 : f32 is -inf).
            (ConstValue::Scalar(_), Type::Scalar(t)) if self.last_hex.is_some() => {
                let bits = self.last_hex.take().unwrap_or(0);
                ConstValue::Scalar(hex_float(bits, t))
            }
            // So is a splat's (`dense<0xFF800000> : tensor<f32>`, torch-mlir's masked_fill value).
            (ConstValue::Splat(_), Type::Tensor(t)) if self.last_hex.is_some() => {
                let bits = self.last_hex.take().unwrap_or(0);
                ConstValue::Splat(hex_float(bits, &t.elem))
            }
            (v, _) => v,
        };
        self.last_hex = None;
        let _ = span;
        Ok(OpKind::Constant { value, ty })
    }

    fn nested_numbers(&mut self, out: &mut Vec<f64>, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("dense<...> nested too deeply"));
        }
        self.expect("[", "")?;
        if self.eat("]") {
            return Ok(());
        }
        loop {
            if self.peek_ws() == Some(b'[') {
                self.nested_numbers(out, depth + 1)?;
            } else {
                out.push(self.scalar_literal()?);
            }
            if self.eat("]") {
                return Ok(());
            }
            self.expect(",", "between elements")?;
        }
    }

    fn scalar_literal(&mut self) -> R<f64> {
        self.ws();
        let span = self.span();
        if self.eat_kw("true") {
            return Ok(1.0);
        }
        if self.eat_kw("false") {
            return Ok(0.0);
        }
        let Some(t) = self.number_text() else {
            return Err(self.err(format!("expected a number, found {}", self.found())));
        };
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            let bits = u64::from_str_radix(h, 16).map_err(|_| self.err_at(span, format!("bad hex literal {t}")))?;
            self.last_hex = Some(bits);
            return Ok(bits as f64);
        }
        self.last_hex = None;
        t.parse::<f64>().map_err(|_| self.err_at(span, format!("bad number {t}")))
    }

    // ---- linalg.generic ----

    fn generic(&mut self, span: Span) -> R<Generic> {
        self.expect("{", "opening linalg.generic's attributes")?;
        let mut maps = Vec::new();
        let mut iterators = Vec::new();
        if !self.eat("}") {
            loop {
                let key = self.expect_ident("an attribute name")?;
                self.expect("=", &format!("after {key}"))?;
                match key.as_str() {
                    "indexing_maps" => {
                        self.expect("[", "opening indexing_maps")?;
                        loop {
                            maps.push(self.map_ref()?);
                            if self.eat("]") {
                                break;
                            }
                            self.expect(",", "between indexing maps")?;
                        }
                    }
                    "iterator_types" => {
                        self.expect("[", "opening iterator_types")?;
                        while !self.eat("]") {
                            let s = self.span();
                            let t = if self.peek_ws() == Some(b'"') {
                                self.string()?
                            } else {
                                self.expect("#linalg.iterator_type", "or a string")?;
                                self.expect("<", "")?;
                                let t = self.expect_ident("an iterator type")?;
                                self.expect(">", "")?;
                                t
                            };
                            iterators.push(match t.as_str() {
                                "parallel" => Iterator::Parallel,
                                "reduction" => Iterator::Reduction,
                                _ => return Err(self.err_at(s, format!("iterator type {t:?} is not supported"))),
                            });
                            if self.eat("]") {
                                break;
                            }
                            self.expect(",", "between iterator types")?;
                        }
                    }
                    _ => self.skip_attr_value()?,
                }
                if self.eat("}") {
                    break;
                }
                self.expect(",", "between attributes")?;
            }
        }
        let ins = if self.looking_at("ins") { self.operand_group("ins")? } else { Vec::new() };
        let outs = self.operand_group("outs")?;
        if self.eat_kw("attrs") {
            self.expect("=", "after attrs")?;
            self.ws();
            self.skip_group()?;
        }
        self.expect("{", "opening linalg.generic's body")?;
        self.expect("^", "(the body's block header ^bb0(...))")?;
        self.expect_ident("a block name")?;
        self.expect("(", "opening the block arguments")?;
        let mut block_args = Vec::new();
        if !self.eat(")") {
            loop {
                let (a, _) = self.ssa_name()?;
                self.expect(":", "after a block argument")?;
                self.ty()?;
                block_args.push(a);
                if self.eat(")") {
                    break;
                }
                self.expect(",", "between block arguments")?;
            }
        }
        self.expect(":", "after the block header")?;
        let mut body = Vec::new();
        let yields;
        loop {
            self.ws();
            let ospan = self.span();
            if self.peek().is_none() {
                return Err(self.err_at(span, "`linalg.generic` body is never closed"));
            }
            if self.eat_kw("linalg.yield") {
                let mut v = Vec::new();
                self.ws_line();
                if self.peek() == Some(b'%') {
                    loop {
                        v.push(self.operand()?);
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                self.skip_op_rest()?;
                yields = v;
                break;
            }
            body.push(self.body_op(ospan)?);
        }
        self.expect("}", "closing linalg.generic's body")?;
        let results = self.arrow_types()?;
        Ok(Generic { maps, iterators, ins, outs, block_args, body, yields, results })
    }

    fn map_ref(&mut self) -> R<AffineMap> {
        let s = self.span();
        if self.eat("affine_map") {
            return self.affine_map_body();
        }
        self.expect("#", "(an affine map alias)")?;
        let name = self.expect_ident("an affine map alias")?;
        match self.aliases.get(&name) {
            Some(Alias::Map(m)) => m.to_affine(self.file),
            Some(_) => Err(self.err_at(s, format!("#{name} is not an affine map"))),
            None => Err(self.err_at(s, format!("unknown attribute alias #{name}"))),
        }
    }

    /// One operation of a generic's body (one line).
    fn body_op(&mut self, span: Span) -> R<BodyOp> {
        let mut result = None;
        if self.peek() == Some(b'%') {
            let (r, _) = self.ssa_name()?;
            if self.peek() == Some(b':') {
                return Err(self.err_at(span, "body operations with several results are not supported"));
            }
            self.expect("=", &format!("after %{r}"))?;
            result = Some(r);
        }
        let name = self.expect_ident("an operation name")?;
        let mut attr = None;
        let mut constant = None;
        match name.as_str() {
            "arith.cmpf" | "arith.cmpi" => {
                attr = Some(self.expect_ident("a comparison predicate")?);
                self.expect(",", "after the predicate")?;
            }
            "linalg.index" => attr = Some(self.uint("a dimension")?.to_string()),
            "arith.constant" => {
                if let OpKind::Constant { value: ConstValue::Scalar(v), .. } = self.constant()? {
                    constant = Some(v);
                } else {
                    return Err(self.err_at(span, "tensor constants inside a linalg.generic body are not supported"));
                }
            }
            _ => {}
        }
        let operands = self.skip_op_rest()?;
        Ok(BodyOp { result, name, operands, attr, constant, span })
    }
}

/// The first tensor type of an op's results.
fn single_tensor(p: &P, span: Span, name: &str, types: &[Type]) -> R<TensorType> {
    match types.first() {
        Some(Type::Tensor(t)) if types.len() == 1 => Ok(t.clone()),
        _ => Err(p.err_at(span, format!("`{name}` must have one tensor result"))),
    }
}

/// The encoding of a dimension-to-level map with one level type per result. Without
/// `floordiv`/`mod` every level is a dimension (a permutation: CSR, CSC, DCSR, COO). With
/// them, it must be a block encoding that our blocked formats hold: on a matrix (or a vector),
/// first every dimension `floordiv B` (the block levels, `dense` or `compressed`, in dimension
/// order for BSR or permuted for BSC), then every dimension `mod B` in any order (`dense`: a
/// tile is a dense `B × B` array); one square block size `B ≥ 2`. Anything else is a one-line error at the
/// level that breaks the rule.
fn encoding_of(file: &str, span: Span, names: &[String], levels: Vec<(Term, Span, LevelKind)>) -> R<Encoding> {
    let err = |s: Span, m: String| MlirError::at(file, s, m);
    let dims = names.len();
    let name = |d: usize| names.get(d).cloned().unwrap_or_else(|| format!("d{d}"));
    let show = |t: Term| match t {
        Term::Dim(d) => name(d),
        Term::Const(c) => c.to_string(),
        Term::FloorDiv(d, b) => format!("{} floordiv {b}", name(d)),
        Term::Mod(d, b) => format!("{} mod {b}", name(d)),
    };
    let blocked = levels.iter().any(|(t, _, _)| matches!(t, Term::FloorDiv(..) | Term::Mod(..)));
    if !blocked {
        let mut out = Vec::new();
        for (t, s, k) in levels {
            match t {
                Term::Dim(d) => out.push((d, k)),
                _ => return Err(err(s, format!("level `{}`: a constant level is not supported", show(t)))),
            }
        }
        return Ok(Encoding { dims, levels: out, block: None, span });
    }
    let first = levels.iter().find(|(t, _, _)| matches!(t, Term::FloorDiv(..) | Term::Mod(..))).map_or(span, |l| l.1);
    if !(1..=2).contains(&dims) {
        return Err(err(
            first,
            format!(
                "block encoding (floordiv/mod levels) of a {dims}-D tensor: only matrices and vectors can be blocked"
            ),
        ));
    }
    // Pairing first: every `d mod B` needs `d floordiv B`, and the other way round.
    for (t, s, _) in &levels {
        match *t {
            Term::Dim(_) | Term::Const(_) => {
                return Err(err(
                    *s,
                    format!("level `{}` in a block encoding: every dimension must be split into `floordiv B` and `mod B` levels", show(*t)),
                ))
            }
            Term::Mod(d, b) if !levels.iter().any(|(u, _, _)| *u == Term::FloorDiv(d, b)) => {
                return Err(err(*s, format!("`{}` without a matching `{} floordiv {b}` level", show(*t), name(d))))
            }
            Term::Mod(..) | Term::FloorDiv(..) => {}
        }
    }
    for (t, s, _) in &levels {
        if let Term::FloorDiv(d, b) = *t {
            if !levels.iter().any(|(u, _, _)| *u == Term::Mod(d, b)) {
                return Err(err(*s, format!("`{}` without a matching `{} mod {b}` level", show(*t), name(d))));
            }
        }
    }
    if levels.len() != 2 * dims {
        return Err(err(
            first,
            format!(
                "a block encoding of a {dims}-D tensor needs {} levels (every dimension `floordiv B`, then every dimension `mod B`), not {}",
                2 * dims,
                levels.len()
            ),
        ));
    }
    let block = match levels[0].0 {
        Term::FloorDiv(_, b) | Term::Mod(_, b) => b,
        Term::Dim(_) | Term::Const(_) => 0,
    };
    if let Some((t, s, _)) =
        levels.iter().find(|(t, _, _)| !matches!(t, Term::FloorDiv(_, b) | Term::Mod(_, b) if *b == block))
    {
        return Err(err(
            *s,
            format!(
                "level `{}`: blocks of different sizes per dimension (non-square blocks) are not supported; use one block size B for every dimension",
                show(*t)
            ),
        ));
    }
    if block < 2 {
        return Err(err(first, format!("block size {block}: a block size must be at least 2")));
    }
    // The block levels first (their order is the storage order of the blocks: BSR, or BSC
    // with the column blocks outer), then the in-block levels (in any order: a tile is a dense
    // array, indexed by its coordinates whatever the order it is stored in).
    for (k, (t, s, _)) in levels.iter().enumerate() {
        let (ok, want) = if k < dims {
            (matches!(t, Term::FloorDiv(..)), "a block level (`d floordiv B`)")
        } else {
            (matches!(t, Term::Mod(..)), "an in-block level (`d mod B`)")
        };
        if !ok {
            return Err(err(
                *s,
                format!(
                    "level {k} is `{}`, expected {want}: a block encoding lists every dimension `floordiv {block}`, then every dimension `mod {block}`",
                    show(*t)
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (k, (t, s, kind)) in levels.into_iter().enumerate() {
        let dim = match t {
            Term::FloorDiv(d, _) | Term::Mod(d, _) | Term::Dim(d) => d,
            Term::Const(_) => 0,
        };
        if k >= dims {
            if kind != LevelKind::Dense {
                return Err(err(
                    s,
                    format!("in-block level `{}` must be dense (a tile is a dense {block} × {block} block)", show(t)),
                ));
            }
        } else if !matches!(kind, LevelKind::Dense | LevelKind::Compressed) {
            return Err(err(
                s,
                format!(
                    "block level `{}` must be dense or compressed (COO levels of blocks are not supported)",
                    show(t)
                ),
            ));
        } else {
            out.push((dim, kind));
        }
    }
    Ok(Encoding { dims, levels: out, block: Some(block), span })
}

fn level_kind(t: &str) -> Option<LevelKind> {
    let t = t.trim_matches('"');
    let (base, props) = match t.split_once('(') {
        Some((b, p)) => (b, p.trim_end_matches(')')),
        None => (t, ""),
    };
    let nonunique = props.split(',').any(|p| p.trim() == "nonunique");
    Some(match base {
        "dense" => LevelKind::Dense,
        "compressed" | "compressed-nu" if nonunique || base.ends_with("-nu") => LevelKind::CompressedNonunique,
        "compressed" => LevelKind::Compressed,
        "singleton" | "singleton-nu" => LevelKind::Singleton,
        _ => return None,
    })
}

/// Argument attributes that name an argument (torch-mlir's `torch.arg_name`, and the generic
/// `mlir.name`), in order of preference.
const ARG_NAME_KEYS: [&str; 2] = ["torch.arg_name", "mlir.name"];

/// The string value of `key = "value"` in an attribute dictionary's text (`key` as a whole
/// word: `xtorch.arg_name` is another key).
fn string_attr(text: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = text.get(from..)?.find(key).map(|k| k + from) {
        from = at + key.len();
        let before = text[..at].bytes().last();
        if before.is_some_and(is_ident_char) {
            continue;
        }
        // A key may be quoted (`"torch.arg_name" = ...`).
        let rest = if before == Some(b'"') { text[from..].strip_prefix('"').unwrap_or("") } else { &text[from..] };
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let rest = rest.trim_start().strip_prefix('"')?;
        let end = rest.find('"')?;
        return Some(rest[..end].to_string());
    }
    None
}

/// `torch.debug_module_name = "GCN"` in a module's attribute dictionary.
fn debug_module_name(text: &str) -> Option<String> {
    let at = text.find("torch.debug_module_name")?;
    let rest = &text[at..];
    let q1 = rest.find('"')?;
    let q2 = rest[q1 + 1..].find('"')?;
    Some(rest[q1 + 1..q1 + 1 + q2].to_string())
}

/// `"0x0A0B..."` → bytes.
pub(crate) fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let h = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    if h.len() % 2 != 0 {
        return None;
    }
    let b = h.as_bytes();
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    (0..b.len() / 2).map(|i| Some(digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?)).collect()
}

/// Little-endian f32 values.
pub(crate) fn bytes_to_f32(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
}

/// A float constant written as its bit pattern.
fn hex_float(bits: u64, ty: &str) -> f64 {
    match ty {
        "f32" => f32::from_bits(bits as u32) as f64,
        "f64" => f64::from_bits(bits),
        _ => bits as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_blobs_and_float_bit_patterns() {
        assert_eq!(hex_bytes("0x0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_bytes("0x0"), None);
        assert_eq!(hex_bytes("12"), None);
        assert_eq!(bytes_to_f32(&[0, 0, 0x80, 0x3f, 0, 0, 0]), vec![1.0]);
        assert_eq!(hex_float(0xFF80_0000, "f32"), f64::NEG_INFINITY);
        assert_eq!(hex_float(0x3FF0_0000_0000_0000, "f64"), 1.0);
    }

    #[test]
    fn argument_names_come_from_their_attributes() {
        assert_eq!(string_attr(r#"{torch.arg_name = "adj"}"#, "torch.arg_name"), Some("adj".into()));
        assert_eq!(string_attr(r#"{a = 1, mlir.name="x.1" }"#, "mlir.name"), Some("x.1".into()));
        assert_eq!(string_attr(r#"{my.torch.arg_name = "no"}"#, "torch.arg_name"), None);
        assert_eq!(string_attr(r#"{torch.arg_name}"#, "torch.arg_name"), None);
        assert_eq!(string_attr(r#"{"torch.arg_name" = "q"}"#, "torch.arg_name"), Some("q".into()));
        let m = parse(
            "func.func @f(%arg0: tensor<4xf32> {torch.arg_name = \"adj\"}, %arg1: tensor<4xf32>) -> tensor<4xf32> {\n  return %arg0 : tensor<4xf32>\n}\n",
            "n.mlir",
        )
        .unwrap();
        assert_eq!(m.funcs[0].arg_names, vec![Some("adj".to_string()), None]);
    }

    #[test]
    fn level_types() {
        assert_eq!(level_kind("compressed(nonunique)"), Some(LevelKind::CompressedNonunique));
        assert_eq!(level_kind("singleton(soa)"), Some(LevelKind::Singleton));
        assert_eq!(level_kind("\"dense\""), Some(LevelKind::Dense));
        assert_eq!(level_kind("loose_compressed"), None);
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let e = parse("module {\n  func.func @f(%a: tensor<4xf32) {", "p.mlir").unwrap_err();
        assert_eq!((e.line, e.col), (2, 32), "{e}");
        assert!(e.message.contains("expected `>` closing the tensor type"), "{e}");
    }
}

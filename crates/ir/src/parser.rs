//! The line-oriented parser from program text to a [`Program`].
//!
//! Grammar (one item per line, `#` comments, blank lines ignored):
//!
//! ```text
//! line    := param | preset | decl | fuse | par | stmt
//! param   := "param" NAME "=" ["-"] INT
//! preset  := "preset" NAME (PARAM_NAME "=" ["-"] INT)+
//! decl    := ("input" | "output" | "temp") NAME "[" [dim ("," dim)*] "]" format
//!            ["order" "(" INT ("," INT)* ")"] ["block" "(" bdim ["," bdim] ")"] ["=" source]
//! dim     := INT | PARAM_NAME
//! format  := "dense" | "sparse" | "dcsr" | "csf" | "csr" | "csc" | "dcsc"
//!          | ("bcsr" | "bdcsr") "(" bdim ")"       bdim := INT | PARAM_NAME (a block size ≥ 2)
//!          | "(" level ("," level)* ")"          level := dense | compressed | d | c
//! source  := "random" "(" [kwarg ("," kwarg)*] ")"   kwarg := "density" "=" NUM | "seed" "=" INT
//!          | "bigbird" "(" [("block"|"global"|"window"|"random"|"seed") "=" (INT | PARAM_NAME), ...] ")"
//!          | "file" "(" STRING ")"
//! fuse    := "fuse" group ("," group)*           group := range ("+" range)*   range := INT | INT "-" INT
//! par     := "par" [INT ":"] INDEX "=" INT ("," INDEX "=" INT)*   (lanes ≥ 1; INT: = a group)
//! stmt    := access "=" (expr | BUILTIN "(" INDEX "," expr ")")
//! expr    := term (("+" | "-") term)*
//! term    := unary (("*" | "/") unary)*
//! unary   := "-" unary | primary
//! primary := NUM | "(" expr ")" | FUNC "(" expr ")" | ("max" | "expsubnz") "(" expr "," expr ")"
//!          | ("sum" | "maxr" | "maxnz") "(" INDEX "," expr ")" | PARAM_NAME | access
//! access  := NAME ["(" [INDEX ("," INDEX)*] ")"]
//! FUNC    := relu | exp | expnz | neg | rsqrt | sigmoid | gelu
//! BUILTIN := softmax | masked_softmax | layernorm
//! ```
//!
//! A `preset` line names a set of parameter values, e.g. `preset paper N=2708 F=1433`; selecting
//! it ([`Overrides::preset`], `--preset paper` on the command line) replaces those parameters'
//! defaults. Precedence, lowest first: the `param` line's default, the selected preset, explicit
//! values ([`Overrides::params`], `--param`). A preset may appear anywhere in the file, may only
//! name parameters the program declares, and preset names must be distinct; selecting a preset
//! the program does not have is an error listing the ones it has.
//!
//! In an expression, a bare parameter name (no parentheses) is that parameter's value as a
//! constant; tensors and parameters therefore may not share names. Unary minus binds tighter
//! than `*` and `/`, and a negated number literal is folded into the constant.
//!
//! Sparsity-aware operators: `expnz(e)` is `exp` of the nonzero entries of `e` (zeros stay 0);
//! `maxnz(k, e)` is the maximum over the nonzero entries of `e` along `k` (a group without any
//! is 0), where `maxr` counts implicit zeros; `expsubnz(a, b)` is `exp(a - b)` where `a` is
//! nonzero and 0 elsewhere.
//!
//! A statement-level built-in (`softmax`, `masked_softmax`, `layernorm`) must be the whole
//! right-hand side; the parser expands it into ordinary statements over temporaries it declares
//! (`Y__max`, `Y__exp`, ... — see [`crate::builtin`]), so a [`Program`] never contains one.
//!
//! `fuse` lines name groups of statements **as written**, numbered from 0 in the order written,
//! where a statement using a built-in counts as one statement. Each `fuse` group is a single
//! statement index or an inclusive range, so `fuse 0-3, 4` names two groups. [`Program::groups`]
//! keep that numbering and [`Program::user_stmts`] maps every written statement to the
//! statements it expands to: with `Y(i,j) = softmax(j, A(i,j))` as statement 0 and an ordinary
//! statement 1, `fuse 0-1` is the group of user statements 0 and 1, expanded statements 0 to 4.
//!
//! A name followed by `(` and anything but a list of index names is a function call; one the
//! language lacks is an error naming it and listing the known functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use fuseflow_tensor::{Format, LevelFormat};

use crate::ast::{
    Access, BinOp, Expr, FuseGroup, ParSpec, Program, ReduceOp, Role, Source, Span, Stmt, TensorDecl, UnaryOp, UserStmt,
};
use crate::builtin::{expand, Builtin, BuiltinStmt, SourceStmt, BUILTINS};
use crate::error::IrError;
use crate::lexer::{lex_line, Tok, Token};

/// Names that are functions in expressions (or statement-level built-ins) and therefore cannot
/// name tensors.
pub const RESERVED: [&str; 16] = [
    "relu",
    "exp",
    "neg",
    "rsqrt",
    "sigmoid",
    "gelu",
    "erf",
    "max",
    "sum",
    "maxr",
    "expnz",
    "maxnz",
    "expsubnz",
    "softmax",
    "masked_softmax",
    "layernorm",
];

/// Deepest expression tree accepted (keeps every recursive pass far from stack exhaustion).
pub const MAX_EXPR_DEPTH: usize = 200;

/// Most lanes one `par` item may ask for (beyond it the graph grows past any useful machine).
pub const MAX_LANES: u32 = 1024;

/// Largest dimension size (coordinates are 32-bit).
const MAX_DIM: u64 = 1 << 32;

/// Functions an expression may call, for error messages.
const FUNCTIONS: &str =
    "relu, exp, expnz, neg, rsqrt, sigmoid, gelu, max(a, b), expsubnz(a, b), sum(k, e), maxr(k, e), maxnz(k, e)";

/// Names that are well-known functions elsewhere, so that `tanh(x)` with `x` an index reads as
/// an unknown function rather than an undeclared tensor.
const FOREIGN_FUNCTIONS: [&str; 16] = [
    "tanh", "log", "ln", "sqrt", "abs", "sin", "cos", "tan", "pow", "min", "softplus", "silu", "elu", "exp2", "log2",
    "sign",
];

/// The message for a call of a function the language does not have.
pub(crate) fn unknown_function(name: &str) -> String {
    format!(
        "unknown function {name} (functions: {FUNCTIONS}; statement built-ins: {})",
        BUILTINS.iter().map(|b| format!("{b}(k, e)")).collect::<Vec<_>>().join(", ")
    )
}

/// Whether `name(...)` naming no tensor is most likely a call of a function we lack.
pub(crate) fn is_foreign_function(name: &str) -> bool {
    FOREIGN_FUNCTIONS.contains(&name)
}

fn unary_op(name: &str) -> Option<UnaryOp> {
    Some(match name {
        "relu" => UnaryOp::Relu,
        "exp" => UnaryOp::Exp,
        "expnz" => UnaryOp::ExpNz,
        "neg" => UnaryOp::Neg,
        "rsqrt" => UnaryOp::Rsqrt,
        "sigmoid" => UnaryOp::Sigmoid,
        "gelu" => UnaryOp::Gelu,
        "erf" => UnaryOp::Erf,
        _ => return None,
    })
}

/// Values that replace a program's `param` defaults: a preset, then explicit values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The `preset` line to apply (its values replace the defaults of the parameters it names).
    pub preset: Option<String>,
    /// Explicit parameter values, applied after the preset (they win over it).
    pub params: BTreeMap<String, i64>,
}

impl Overrides {
    /// Explicit parameter values only (no preset).
    pub fn params(params: &BTreeMap<String, i64>) -> Overrides {
        Overrides { preset: None, params: params.clone() }
    }
}

/// One `preset` line.
struct Preset {
    name: String,
    span: Span,
    /// `(parameter, value, position of the parameter name)` in the order written.
    values: Vec<(String, i64, Span)>,
}

/// Parses program text. `file` is used in error messages; `params` overrides the values of
/// `param` lines (naming a parameter the program does not declare is an error). Equivalent to
/// [`parse_with`] without a preset.
pub fn parse(src: &str, file: &str, params: &BTreeMap<String, i64>) -> Result<Program, IrError> {
    parse_with(src, file, &Overrides::params(params))
}

/// Parses program text with parameter overrides: the selected `preset` line's values replace
/// the declared defaults, and explicit values replace both. Naming a preset the program does
/// not have, or an explicit parameter it does not declare, is an error.
pub fn parse_with(src: &str, file: &str, overrides: &Overrides) -> Result<Program, IrError> {
    let mut lines = Vec::new();
    let mut presets: Vec<Preset> = Vec::new();
    for (n, text) in src.lines().enumerate() {
        let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let (toks, end_col) = lex_line(file, line_no, text)?;
        if toks.is_empty() {
            continue;
        }
        let mut p = LineParser {
            file,
            line: line_no,
            toks,
            pos: 0,
            end_col,
            params: BTreeMap::new(),
            tensors: BTreeSet::new(),
        };
        if is_preset_line(&p.toks) {
            let preset = parse_preset(&mut p)?;
            if presets.iter().any(|q| q.name == preset.name) {
                return Err(p.err_at(preset.span, format!("preset {} is declared twice", preset.name)));
            }
            presets.push(preset);
        } else {
            lines.push(p);
        }
    }
    let mut values = BTreeMap::new();
    if let Some(name) = &overrides.preset {
        let Some(preset) = presets.iter().find(|q| &q.name == name) else {
            let available = if presets.is_empty() {
                "the program has no `preset` lines".to_string()
            } else {
                let names: Vec<&str> = presets.iter().map(|q| q.name.as_str()).collect();
                format!("available: {}", names.join(", "))
            };
            return Err(IrError::whole_file(file, format!("unknown preset `{name}` ({available})")));
        };
        values.extend(preset.values.iter().map(|(k, v, _)| (k.clone(), *v)));
    }
    values.extend(overrides.params.iter().map(|(k, v)| (k.clone(), *v)));
    let params = &overrides.params;
    let mut st = State {
        overrides: &values,
        params: BTreeMap::new(),
        decls: Vec::new(),
        stmts: Vec::new(),
        groups: Vec::new(),
        pars: Vec::new(),
    };
    for mut p in lines {
        st.line(&mut p)?;
    }
    for preset in &presets {
        for (k, _, span) in &preset.values {
            if !st.params.contains_key(k) {
                return Err(IrError::at(
                    file,
                    *span,
                    format!("preset {}: parameter {k} is not declared by a `param` line", preset.name),
                ));
            }
        }
    }
    for name in params.keys() {
        if !st.params.contains_key(name) {
            return Err(IrError::whole_file(
                file,
                format!("parameter {name} is given but not declared by a `param` line"),
            ));
        }
    }
    // Fusion groups name source statements; validate them before expansion.
    let n_stmts = st.stmts.len();
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    for (g, (group, span)) in st.groups.iter().enumerate() {
        for &s in group {
            if s >= n_stmts {
                return Err(IrError::at(
                    file,
                    *span,
                    format!("fuse: statement {s} does not exist (the program has {n_stmts} statements)"),
                ));
            }
            if let Some(prev) = owner.insert(s, g) {
                let what =
                    if prev == g { "twice in one group".to_string() } else { "in two fusion groups".to_string() };
                return Err(IrError::at(file, *span, format!("fuse: statement {s} is {what}")));
            }
        }
    }
    let sources: Vec<(Span, Option<&'static str>)> = st
        .stmts
        .iter()
        .map(|s| match s {
            SourceStmt::Plain(x) => (x.span, None),
            SourceStmt::Builtin(b) => (b.span, Some(b.kind.name())),
        })
        .collect();
    let expanded = expand(file, st.decls, &st.params, st.stmts)?;
    let user_stmts = sources
        .into_iter()
        .zip(expanded.ranges)
        .map(|((span, builtin), stmts)| UserStmt { stmts, builtin, span })
        .collect();
    let groups = st.groups.into_iter().map(|(stmts, span)| FuseGroup { stmts, span }).collect();
    Ok(Program {
        file: file.to_string(),
        decls: expanded.decls,
        stmts: expanded.stmts,
        user_stmts,
        groups,
        pars: st.pars,
        params: st.params,
    })
}

/// Whether a line is a `preset` line (`preset` followed by a name).
fn is_preset_line(toks: &[Token]) -> bool {
    matches!(&toks[0].tok, Tok::Ident(s) if s == "preset") && matches!(toks.get(1).map(|t| &t.tok), Some(Tok::Ident(_)))
}

/// `preset NAME (PARAM = [-] INT)+`.
fn parse_preset(p: &mut LineParser) -> Result<Preset, IrError> {
    p.pos = 1;
    let (name, span) = p.ident("a preset name")?;
    let mut values: Vec<(String, i64, Span)> = Vec::new();
    while p.peek().is_some() || values.is_empty() {
        let (param, pspan) = p.ident(&format!("`PARAM=VALUE` in preset {name}"))?;
        p.sym('=', "`=`")?;
        let neg = p.eat_sym('-');
        let (v, vspan) = p.uint(&format!("an integer value for {param} in preset {name}"))?;
        let v = i64::try_from(v).map_err(|_| p.err_at(vspan, format!("preset {name}: value of {param} too large")))?;
        if values.iter().any(|(k, _, _)| *k == param) {
            return Err(p.err_at(pspan, format!("preset {name} sets {param} twice")));
        }
        values.push((param, if neg { -v } else { v }, pspan));
    }
    Ok(Preset { name, span, values })
}

struct State<'a> {
    overrides: &'a BTreeMap<String, i64>,
    params: BTreeMap<String, i64>,
    decls: Vec<TensorDecl>,
    stmts: Vec<SourceStmt>,
    groups: Vec<(Vec<usize>, Span)>,
    pars: Vec<ParSpec>,
}

impl State<'_> {
    fn line(&mut self, p: &mut LineParser) -> Result<(), IrError> {
        let first = match &p.toks[0].tok {
            Tok::Ident(s) => s.clone(),
            _ => String::new(),
        };
        let second = p.toks.get(1).map(|t| &t.tok);
        let second_is_ident = matches!(second, Some(Tok::Ident(_)));
        match first.as_str() {
            "param" if second_is_ident => self.param(p),
            "fuse" if matches!(second, Some(Tok::Num(_))) => self.fuse(p),
            "par"
                if matches!(second, Some(Tok::Num(_)))
                    || (second_is_ident && matches!(p.toks.get(2).map(|t| &t.tok), Some(Tok::Sym('=')))) =>
            {
                self.par(p)
            }
            "input" | "output" | "temp" if second_is_ident => self.decl(p),
            _ => {
                p.tensors = self.decls.iter().map(|d| d.name.clone()).collect();
                let stmt = p.stmt(&self.params)?;
                self.stmts.push(stmt);
                Ok(())
            }
        }
    }

    fn param(&mut self, p: &mut LineParser) -> Result<(), IrError> {
        p.pos = 1;
        let (name, span) = p.ident("a parameter name")?;
        p.sym('=', "`=`")?;
        let neg = p.eat_sym('-');
        let (v, vspan) = p.uint("an integer parameter value")?;
        let v = i64::try_from(v).map_err(|_| p.err_at(vspan, format!("parameter {name}: value too large")))?;
        let v = if neg { -v } else { v };
        p.end()?;
        if self.params.contains_key(&name) {
            return Err(p.err_at(span, format!("parameter {name} is declared twice")));
        }
        if self.decls.iter().any(|d| d.name == name) {
            return Err(p.err_at(span, format!("parameter {name} has the name of a tensor")));
        }
        let value = self.overrides.get(&name).copied().unwrap_or(v);
        self.params.insert(name, value);
        Ok(())
    }

    fn fuse(&mut self, p: &mut LineParser) -> Result<(), IrError> {
        p.pos = 1;
        loop {
            // A group is ranges joined by `+` (`0-2+4`): convex groups need not be contiguous
            // in program order; the checker decides whether the group is legal.
            let mut group: Vec<usize> = Vec::new();
            let mut group_span = None;
            loop {
                let (a, span) = p.uint("a statement index")?;
                group_span.get_or_insert(span);
                let b = if p.eat_sym('-') { p.uint("a statement index")?.0 } else { a };
                if b < a {
                    return Err(p.err_at(span, format!("fuse: empty range {a}-{b}")));
                }
                if b - a > 1_000_000 || group.len() > 1_000_000 {
                    return Err(p.err_at(span, format!("fuse: range {a}-{b} is too large")));
                }
                group.extend((a..=b).map(|s| usize::try_from(s).unwrap_or(usize::MAX)));
                if !p.eat_sym('+') {
                    break;
                }
            }
            // Sorted so that a group means the same whatever order its ranges are written in;
            // a statement named twice is caught where groups are validated.
            group.sort_unstable();
            let Some(span) = group_span else { break };
            self.groups.push((group, span));
            if !p.eat_sym(',') {
                break;
            }
        }
        p.end()
    }

    /// `par [GROUP:] INDEX=LANES, ...`.
    fn par(&mut self, p: &mut LineParser) -> Result<(), IrError> {
        p.pos = 1;
        let group = if matches!(p.peek(), Some(Tok::Num(_))) {
            let (g, _) = p.uint("a group index")?;
            p.sym(':', "`:` after the group index")?;
            Some(usize::try_from(g).unwrap_or(usize::MAX))
        } else {
            None
        };
        loop {
            let (index, span) = p.ident("an index variable")?;
            p.sym('=', "`=`")?;
            let (lanes, lspan) = p.uint(&format!("a lane count for {index}"))?;
            if lanes == 0 {
                return Err(p.err_at(lspan, format!("par: {index}=0: the lane count must be at least 1")));
            }
            let lanes = u32::try_from(lanes)
                .ok()
                .filter(|&l| l <= MAX_LANES)
                .ok_or_else(|| p.err_at(lspan, format!("par: {index}={lanes}: at most {MAX_LANES} lanes")))?;
            self.pars.push(ParSpec { group, index, lanes, span });
            if !p.eat_sym(',') {
                break;
            }
        }
        p.end()
    }

    fn decl(&mut self, p: &mut LineParser) -> Result<(), IrError> {
        let span = Span { line: p.line, col: p.toks[0].col };
        let role = match &p.toks[0].tok {
            Tok::Ident(s) if s == "input" => Role::Input,
            Tok::Ident(s) if s == "output" => Role::Output,
            _ => Role::Temp,
        };
        p.pos = 1;
        let (name, name_span) = p.ident("a tensor name")?;
        if RESERVED.contains(&name.as_str()) {
            return Err(p.err_at(name_span, format!("`{name}` is a function name and cannot name a tensor")));
        }
        if self.params.contains_key(&name) {
            return Err(p.err_at(name_span, format!("`{name}` is a parameter and cannot name a tensor")));
        }
        p.sym('[', "`[` and the dimensions")?;
        let mut shape = Vec::new();
        if !p.eat_sym(']') {
            loop {
                shape.push(self.dim(p, &name)?);
                if p.eat_sym(']') {
                    break;
                }
                p.sym(',', "`,` or `]`")?;
            }
        }
        let rank = shape.len();
        // `bcsr(B)` / `bdcsr(B)`: CSR / DCSR with a `block(B)` clause.
        let mut block = None;
        if let Some(Tok::Ident(f)) = p.peek() {
            let base = match f.to_ascii_lowercase().as_str() {
                "bcsr" => Some("csr"),
                "bdcsr" => Some("dcsr"),
                _ => None,
            };
            if let Some(base) = base {
                let at = p.pos;
                p.pos += 1;
                block = Some(self.block_size(p, &name)?);
                // What remains is the base format and its optional clauses.
                p.toks.drain(at + 1..p.pos);
                p.toks[at].tok = Tok::Ident(base.into());
                p.pos = at;
            }
        }
        let format = parse_format(p, &name, rank)?;
        if matches!(p.peek(), Some(Tok::Ident(s)) if s == "block") {
            if block.is_some() {
                return Err(p.err_at(p.span(), format!("{name} has a block size already (bcsr(B) is csr block(B))")));
            }
            p.pos += 1;
            block = Some(self.block_size(p, &name)?);
        }
        if let Some(b) = block {
            let dims: Vec<bool> = (0..rank).map(|d| d + 2 >= rank).collect();
            fuseflow_tensor::block::check_blockable(&shape, &format, b, &dims).map_err(|e| {
                let why = e.to_string();
                let why = why.strip_prefix("invalid argument: ").unwrap_or(&why).to_string();
                p.err_at(name_span, format!("{name} cannot be blocked: {why}"))
            })?;
        }
        let source = if p.eat_sym('=') { Some(parse_source(p, &name, &self.params)?) } else { None };
        p.end()?;
        let source = match (role, source) {
            (Role::Input, Some(s)) => Some(s),
            (Role::Input, None) => {
                if format.is_all_dense() {
                    Some(Source::Random { density: 1.0, seed: None })
                } else {
                    return Err(p.err_at(
                        name_span,
                        format!("input {name} needs a data source (`= random(density=...)` or `= file(\"...\")`)"),
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(p.err_at(name_span, format!("only inputs take a data source, but {name} is not an input")))
            }
            (_, None) => None,
        };
        self.decls.push(TensorDecl { name, shape, format, block, role, source, span });
        Ok(())
    }

    /// `(B)` or `(B, B)` after `block`, `bcsr` or `bdcsr`: a square block size of at least 2,
    /// an integer or a parameter.
    fn block_size(&self, p: &mut LineParser, tensor: &str) -> Result<usize, IrError> {
        p.sym('(', "`(` and the block size")?;
        let span = p.span();
        let b = self.dim(p, tensor)?;
        if p.eat_sym(',') {
            let span2 = p.span();
            let b2 = self.dim(p, tensor)?;
            if b2 != b {
                return Err(p.err_at(span2, format!("block({b}, {b2}) of {tensor}: only square blocks are supported")));
            }
        }
        p.sym(')', "`)`")?;
        if b < 2 {
            return Err(p.err_at(span, format!("block size of {tensor} must be at least 2, got {b}")));
        }
        Ok(b)
    }

    fn dim(&self, p: &mut LineParser, tensor: &str) -> Result<usize, IrError> {
        let span = p.span();
        let v: i64 = match p.next() {
            Some(Tok::Num(s)) => match s.parse::<u64>() {
                Ok(v) => i64::try_from(v).unwrap_or(i64::MAX),
                Err(_) => {
                    return Err(p.err_at(span, format!("dimension of {tensor} must be a positive integer, not {s}")))
                }
            },
            Some(Tok::Ident(s)) => match self.params.get(&s) {
                Some(&v) => v,
                None => {
                    return Err(p.err_at(
                        span,
                        format!(
                            "unknown parameter {s} in the shape of {tensor} (declare it with `param {s} = ...` first)"
                        ),
                    ))
                }
            },
            other => return Err(p.unexpected(span, other, "a dimension (integer or parameter name)")),
        };
        if v <= 0 || v as u64 > MAX_DIM {
            return Err(p.err_at(span, format!("dimension of {tensor} must be between 1 and {MAX_DIM}, got {v}")));
        }
        Ok(v as usize)
    }
}

/// Parses the format (and optional `order(...)`) of a declaration of the given rank.
fn parse_format(p: &mut LineParser, name: &str, rank: usize) -> Result<Format, IrError> {
    use LevelFormat::{Compressed as C, Dense as D};
    let span = p.span();
    let (levels, mut order): (Vec<LevelFormat>, Vec<usize>) = match p.next() {
        Some(Tok::Sym('(')) => {
            let mut levels = Vec::new();
            if !p.eat_sym(')') {
                loop {
                    let (lv, lspan) = p.ident("a level format (dense or compressed)")?;
                    levels.push(match lv.to_ascii_lowercase().as_str() {
                        "dense" | "d" => D,
                        "compressed" | "c" => C,
                        _ => {
                            return Err(p.err_at(
                                lspan,
                                format!("unknown level format `{lv}` for {name} (expected dense, compressed, d or c)"),
                            ))
                        }
                    });
                    if p.eat_sym(')') {
                        break;
                    }
                    p.sym(',', "`,` or `)`")?;
                }
            }
            if levels.len() != rank {
                return Err(
                    p.err_at(span, format!("format of {name} has {} levels but {name} has rank {rank}", levels.len()))
                );
            }
            (levels, (0..rank).collect())
        }
        Some(Tok::Ident(f)) => {
            let f = f.to_ascii_lowercase();
            let need2 = |p: &LineParser| {
                if rank == 2 {
                    Ok(())
                } else {
                    Err(p.err_at(span, format!("format {f} needs rank 2, but {name} has rank {rank}")))
                }
            };
            match f.as_str() {
                "dense" => (vec![D; rank], (0..rank).collect()),
                "sparse" | "dcsr" | "csf" => (vec![C; rank], (0..rank).collect()),
                "csr" => {
                    need2(p)?;
                    (vec![D, C], vec![0, 1])
                }
                "csc" => {
                    need2(p)?;
                    (vec![D, C], vec![1, 0])
                }
                "dcsc" => {
                    need2(p)?;
                    (vec![C, C], vec![1, 0])
                }
                _ => {
                    return Err(p.err_at(
                        span,
                        format!("unknown format `{f}` for {name} (expected dense, sparse, dcsr, csf, csr, csc, dcsc or a level list like (dense, compressed))"),
                    ))
                }
            }
        }
        other => return Err(p.unexpected(span, other, "a format")),
    };
    if matches!(p.peek(), Some(Tok::Ident(s)) if s == "order") {
        let ospan = p.span();
        p.pos += 1;
        p.sym('(', "`(`")?;
        order = Vec::new();
        if !p.eat_sym(')') {
            loop {
                let (d, dspan) = p.uint("a dimension number")?;
                order.push(usize::try_from(d).map_err(|_| p.err_at(dspan, "dimension number too large"))?);
                if p.eat_sym(')') {
                    break;
                }
                p.sym(',', "`,` or `)`")?;
            }
        }
        if order.len() != rank {
            return Err(p.err_at(
                ospan,
                format!("order(...) of {name} has {} entries but {name} has rank {rank}", order.len()),
            ));
        }
        let text = order.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        return Format::new(levels, order)
            .map_err(|_| p.err_at(ospan, format!("order({text}) of {name} is not a permutation of 0..{rank}")));
    }
    Ok(Format { levels, mode_order: order })
}

/// Parses `random(...)`, `bigbird(...)` or `file("...")`; `bigbird` arguments may name
/// parameters declared above.
fn parse_source(p: &mut LineParser, name: &str, params: &BTreeMap<String, i64>) -> Result<Source, IrError> {
    let (kind, span) = p.ident("a data source (random(...) or file(\"...\"))")?;
    match kind.as_str() {
        "random" => {
            p.sym('(', "`(`")?;
            let mut density = None;
            let mut seed = None;
            if !p.eat_sym(')') {
                loop {
                    let (key, kspan) = p.ident("`density` or `seed`")?;
                    p.sym('=', "`=`")?;
                    match key.as_str() {
                        "density" if density.is_none() => {
                            let (v, vspan) = p.number("a density")?;
                            if !(0.0..=1.0).contains(&v) {
                                return Err(p.err_at(vspan, format!("density of {name} must be in [0, 1], got {v}")));
                            }
                            density = Some(v);
                        }
                        "seed" if seed.is_none() => seed = Some(p.uint("an integer seed")?.0),
                        "density" | "seed" => {
                            return Err(p.err_at(kspan, format!("random(...) of {name}: {key} given twice")))
                        }
                        _ => {
                            return Err(p.err_at(
                                kspan,
                                format!("random(...) of {name}: unknown argument `{key}` (expected density or seed)"),
                            ))
                        }
                    }
                    if p.eat_sym(')') {
                        break;
                    }
                    p.sym(',', "`,` or `)`")?;
                }
            }
            Ok(Source::Random { density: density.unwrap_or(1.0), seed })
        }
        "bigbird" => {
            p.sym('(', "`(`")?;
            let (mut block, mut global, mut window, mut random, mut seed) = (16u64, 2u64, 1u64, 2u64, None);
            if !p.eat_sym(')') {
                loop {
                    let (key, kspan) = p.ident("`block`, `global`, `window`, `random` or `seed`")?;
                    p.sym('=', "`=`")?;
                    let v = p.uint_or_param(params, &format!("bigbird(...) of {name}: {key}"))?;
                    match key.as_str() {
                        "block" => block = v,
                        "global" => global = v,
                        "window" => window = v,
                        "random" => random = v,
                        "seed" => seed = Some(v),
                        _ => return Err(p.err_at(kspan, format!("bigbird(...) of {name}: unknown argument `{key}`"))),
                    }
                    if p.eat_sym(')') {
                        break;
                    }
                    p.sym(',', "`,` or `)`")?;
                }
            }
            if block == 0 {
                return Err(p.err_at(span, format!("bigbird(...) of {name}: block must be positive")));
            }
            Ok(Source::BigBird {
                block: block as usize,
                global: global as usize,
                window: window as usize,
                random: random as usize,
                seed,
            })
        }
        "file" => {
            p.sym('(', "`(`")?;
            let sspan = p.span();
            let path = match p.next() {
                Some(Tok::Str(s)) => s,
                other => return Err(p.unexpected(sspan, other, "a quoted path")),
            };
            p.sym(')', "`)`")?;
            Ok(Source::File { path: PathBuf::from(path) })
        }
        _ => Err(
            p.err_at(span, format!("unknown data source `{kind}` for {name} (expected random(...) or file(\"...\"))"))
        ),
    }
}

/// Cursor over the tokens of one line.
struct LineParser<'a> {
    file: &'a str,
    line: u32,
    toks: Vec<Token>,
    pos: usize,
    end_col: u32,
    /// Parameters usable as constants in expressions.
    params: BTreeMap<String, i64>,
    /// Tensors declared above the line (statements only).
    tensors: BTreeSet<String>,
}

impl LineParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn span(&self) -> Span {
        Span { line: self.line, col: self.toks.get(self.pos).map_or(self.end_col, |t| t.col) }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn err_at(&self, span: Span, msg: impl Into<String>) -> IrError {
        IrError::at(self.file, span, msg)
    }

    fn unexpected(&self, span: Span, got: Option<Tok>, expected: &str) -> IrError {
        match got {
            Some(t) => self.err_at(span, format!("expected {expected}, found {}", t.describe())),
            None => self.err_at(span, format!("expected {expected}, found end of line")),
        }
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, c: char, what: &str) -> Result<(), IrError> {
        let span = self.span();
        match self.next() {
            Some(Tok::Sym(x)) if x == c => Ok(()),
            other => Err(self.unexpected(span, other, what)),
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, Span), IrError> {
        let span = self.span();
        match self.next() {
            Some(Tok::Ident(s)) => Ok((s, span)),
            other => Err(self.unexpected(span, other, what)),
        }
    }

    fn uint(&mut self, what: &str) -> Result<(u64, Span), IrError> {
        let span = self.span();
        match self.next() {
            Some(Tok::Num(s)) => match s.parse::<u64>() {
                Ok(v) => Ok((v, span)),
                Err(_) => Err(self.err_at(span, format!("expected {what}, found number {s}"))),
            },
            other => Err(self.unexpected(span, other, what)),
        }
    }

    /// A non-negative integer, given literally or as the name of a declared parameter; `what`
    /// names the value in errors.
    fn uint_or_param(&mut self, params: &BTreeMap<String, i64>, what: &str) -> Result<u64, IrError> {
        let span = self.span();
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                match params.get(&s) {
                    Some(&v) => u64::try_from(v).map_err(|_| {
                        self.err_at(span, format!("{what} = {s} is {v}, expected a non-negative integer"))
                    }),
                    None => Err(self.err_at(
                        span,
                        format!("{what}: unknown parameter {s} (declare it with `param {s} = ...` first)"),
                    )),
                }
            }
            _ => Ok(self.uint("a non-negative integer or a parameter name")?.0),
        }
    }

    fn number(&mut self, what: &str) -> Result<(f64, Span), IrError> {
        let span = self.span();
        match self.next() {
            Some(Tok::Num(s)) => Ok((self.num_value(&s, span)?, span)),
            other => Err(self.unexpected(span, other, what)),
        }
    }

    fn num_value(&self, s: &str, span: Span) -> Result<f64, IrError> {
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.err_at(span, format!("number {s} is out of range"))),
        }
    }

    fn end(&mut self) -> Result<(), IrError> {
        let span = self.span();
        match self.next() {
            None => Ok(()),
            Some(t) => Err(self.err_at(span, format!("unexpected {} (expected end of line)", t.describe()))),
        }
    }

    fn stmt(&mut self, params: &BTreeMap<String, i64>) -> Result<SourceStmt, IrError> {
        self.params = params.clone();
        let span = self.span();
        let (name, nspan) = self.ident("a statement `X(i,j) = ...` or a declaration")?;
        let lhs = self.access_rest(name, nspan)?;
        self.sym('=', "`=`")?;
        let builtin = match self.peek() {
            Some(Tok::Ident(f)) => Builtin::from_name(f),
            _ => None,
        };
        if let Some(kind) = builtin {
            return self.builtin(kind, lhs, span);
        }
        let (rhs, _) = self.expr(0)?;
        self.end()?;
        Ok(SourceStmt::Plain(Stmt { lhs, rhs, span }))
    }

    /// `BUILTIN "(" INDEX "," expr ")"` as the whole right-hand side.
    fn builtin(&mut self, kind: Builtin, lhs: Access, span: Span) -> Result<SourceStmt, IrError> {
        let name_span = self.span();
        let name = match self.next() {
            Some(Tok::Ident(f)) => f,
            _ => String::new(),
        };
        self.sym('(', &format!("`(` after {name}"))?;
        let (index, index_span) =
            self.ident(&format!("the index to normalise over as the first argument of {name}"))?;
        self.sym(',', &format!("`,` ({name} takes an index and an expression)"))?;
        // The argument is nested up to three levels deeper by the expansion.
        let (arg, _) = self.expr(3)?;
        self.sym(')', &format!("`)` closing {name}(...)"))?;
        let after = self.span();
        if let Some(t) = self.next() {
            return Err(self.err_at(
                after,
                format!(
                    "{name}(...) must be the whole right-hand side of a statement, but {} follows it",
                    t.describe()
                ),
            ));
        }
        Ok(SourceStmt::Builtin(BuiltinStmt { kind, lhs, index, index_span, arg, span, name_span }))
    }

    /// Whether the tokens from the cursor are `( [INDEX ("," INDEX)*] )`, the indices of a
    /// tensor access (anything else after a name and `(` is a function call).
    fn index_list_follows(&self) -> bool {
        let mut k = self.pos + 1;
        let tok = |k: usize| self.toks.get(k).map(|t| &t.tok);
        if tok(k) == Some(&Tok::Sym(')')) {
            return true;
        }
        loop {
            if !matches!(tok(k), Some(Tok::Ident(_))) {
                return false;
            }
            match tok(k + 1) {
                Some(Tok::Sym(')')) => return true,
                Some(Tok::Sym(',')) => k += 2,
                _ => return false,
            }
        }
    }

    /// Parses the optional `(i, j, ...)` after a tensor name.
    fn access_rest(&mut self, tensor: String, span: Span) -> Result<Access, IrError> {
        let mut indices = Vec::new();
        if self.eat_sym('(') && !self.eat_sym(')') {
            loop {
                indices.push(self.ident("an index variable")?.0);
                if self.eat_sym(')') {
                    break;
                }
                self.sym(',', "`,` or `)`")?;
            }
        }
        Ok(Access { tensor, indices, span })
    }

    fn check_depth(&self, depth: usize, span: Span) -> Result<(), IrError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(self.err_at(span, format!("expression nested deeper than {MAX_EXPR_DEPTH} levels")));
        }
        Ok(())
    }

    /// `expr := term (("+" | "-") term)*`; returns the expression and its tree depth.
    fn expr(&mut self, depth: usize) -> Result<(Expr, usize), IrError> {
        let (mut lhs, mut d) = self.term(depth)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym('+')) => BinOp::Add,
                Some(Tok::Sym('-')) => BinOp::Sub,
                _ => return Ok((lhs, d)),
            };
            let span = self.span();
            self.pos += 1;
            let (rhs, rd) = self.term(depth)?;
            d = d.max(rd) + 1;
            self.check_depth(d + depth, span)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    /// `term := unary (("*" | "/") unary)*`.
    fn term(&mut self, depth: usize) -> Result<(Expr, usize), IrError> {
        let (mut lhs, mut d) = self.unary(depth)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym('*')) => BinOp::Mul,
                Some(Tok::Sym('/')) => BinOp::Div,
                _ => return Ok((lhs, d)),
            };
            let span = self.span();
            self.pos += 1;
            let (rhs, rd) = self.unary(depth)?;
            d = d.max(rd) + 1;
            self.check_depth(d + depth, span)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    /// `unary := "-" unary | primary`; negated constants are folded.
    fn unary(&mut self, depth: usize) -> Result<(Expr, usize), IrError> {
        let span = self.span();
        self.check_depth(depth, span)?;
        if self.eat_sym('-') {
            let (e, d) = self.unary(depth + 1)?;
            return Ok(match e {
                Expr::Const(c) => (Expr::Const(-c), d),
                e => (Expr::Unary(UnaryOp::Neg, Box::new(e)), d + 1),
            });
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<(Expr, usize), IrError> {
        let span = self.span();
        self.check_depth(depth, span)?;
        match self.next() {
            Some(Tok::Num(s)) => Ok((Expr::Const(self.num_value(&s, span)?), 1)),
            Some(Tok::Sym('(')) => {
                let (e, d) = self.expr(depth + 1)?;
                self.sym(')', "`)`")?;
                Ok((e, d))
            }
            Some(Tok::Ident(name)) if BUILTINS.contains(&name.as_str()) => Err(self.err_at(
                span,
                format!(
                    "{name}(...) must be the whole right-hand side of a statement, as in `Y(i,j) = {name}(j, ...)`"
                ),
            )),
            Some(Tok::Ident(name)) if RESERVED.contains(&name.as_str()) => {
                self.sym('(', &format!("`(` after function {name}"))?;
                let res = match name.as_str() {
                    "max" | "expsubnz" => {
                        let op = if name == "max" { BinOp::Max } else { BinOp::ExpSubNz };
                        let (a, da) = self.expr(depth + 1)?;
                        self.sym(',', &format!("`,` ({name} takes two arguments)"))?;
                        let (b, db) = self.expr(depth + 1)?;
                        (Expr::Binary(op, Box::new(a), Box::new(b)), da.max(db) + 1)
                    }
                    "sum" | "maxr" | "maxnz" => {
                        let op = match name.as_str() {
                            "sum" => ReduceOp::Sum,
                            "maxr" => ReduceOp::Max,
                            _ => ReduceOp::MaxNz,
                        };
                        let (index, _) =
                            self.ident(&format!("the reduced index variable as the first argument of {name}"))?;
                        self.sym(',', &format!("`,` ({name} takes an index and an expression)"))?;
                        let (body, d) = self.expr(depth + 1)?;
                        (Expr::Reduce { op, index, body: Box::new(body) }, d + 1)
                    }
                    _ => {
                        let op = unary_op(&name).unwrap_or(UnaryOp::Neg);
                        let (a, d) = self.expr(depth + 1)?;
                        (Expr::Unary(op, Box::new(a)), d + 1)
                    }
                };
                self.sym(')', &format!("`)` closing {name}(...)"))?;
                Ok(res)
            }
            Some(Tok::Ident(name)) if self.peek() != Some(&Tok::Sym('(')) && self.params.contains_key(&name) => {
                Ok((Expr::Const(self.params[&name] as f64), 1))
            }
            Some(Tok::Ident(name))
                if self.peek() == Some(&Tok::Sym('('))
                    && !self.index_list_follows()
                    && !self.tensors.contains(&name) =>
            {
                Err(self.err_at(span, unknown_function(&name)))
            }
            Some(Tok::Ident(name)) => Ok((Expr::Access(self.access_rest(name, span)?), 1)),
            other => Err(self.unexpected(span, other, "an expression")),
        }
    }
}

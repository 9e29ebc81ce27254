//! Prints programs back to text. The output parses back to the same checked program (up to
//! source positions and parameter names, which are printed as their values).

use std::fmt;

use fuseflow_tensor::{Format, LevelFormat};

use crate::ast::{BinOp, CheckedProgram, Expr, ReduceOp, Role, Source, Stmt, TensorDecl, UnaryOp};

/// Prints a checked program as program text, with every reduction as an explicit `sum(...)` /
/// `maxr(...)` / `maxnz(...)`: declarations, a blank line, statements, then `fuse` lines if
/// any. Built-ins appear expanded (their temporaries declared, `fuse` groups over the expanded
/// statements), which parses back to the same program.
pub fn pretty(p: &CheckedProgram) -> String {
    let mut out = String::new();
    for d in &p.decls {
        out.push_str(&pretty_decl(d));
        out.push('\n');
    }
    if !p.decls.is_empty() && !p.stmts.is_empty() {
        out.push('\n');
    }
    for s in &p.stmts {
        out.push_str(&pretty_stmt(s));
        out.push('\n');
    }
    if !p.groups.is_empty() {
        out.push('\n');
        // The printed program is expanded: every statement is one user statement there.
        let groups: Vec<String> = p.groups.iter().map(|g| group_text(&p.expand_user_stmts(&g.stmts))).collect();
        out.push_str(&format!("fuse {}\n", groups.join(", ")));
    }
    for par in &p.pars {
        let group = par.group.map(|g| format!("{g}: ")).unwrap_or_default();
        out.push_str(&format!("par {group}{}={}\n", par.index, par.lanes));
    }
    out
}

/// A group of statements as `fuse` lines and `--fusion` write it: runs of consecutive
/// statements as ranges joined by `+` (`0-2+4`, `3`, `1+0` for an unsorted list).
pub fn group_text(g: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < g.len() {
        let mut e = k;
        while e + 1 < g.len() && g[e + 1] == g[e] + 1 {
            e += 1;
        }
        parts.push(if e == k { g[k].to_string() } else { format!("{}-{}", g[k], g[e]) });
        k = e + 1;
    }
    parts.join("+")
}

/// Prints one declaration, e.g. `input  A[100, 80] dcsr = random(density=0.05)`.
pub fn pretty_decl(d: &TensorDecl) -> String {
    let role = match d.role {
        Role::Input => "input ",
        Role::Output => "output",
        Role::Temp => "temp  ",
    };
    let shape: Vec<String> = d.shape.iter().map(|n| n.to_string()).collect();
    let mut s = format!("{role} {}[{}] {}", d.name, shape.join(", "), format_name(&d.format));
    if let Some(b) = d.block {
        s.push_str(&format!(" block({b})"));
    }
    match &d.source {
        Some(Source::Random { density, seed }) => {
            s.push_str(&format!(" = random(density={}", number(*density)));
            if let Some(seed) = seed {
                s.push_str(&format!(", seed={seed}"));
            }
            s.push(')');
        }
        Some(Source::BigBird { block, global, window, random, seed }) => {
            s.push_str(&format!(" = bigbird(block={block}, global={global}, window={window}, random={random}"));
            if let Some(seed) = seed {
                s.push_str(&format!(", seed={seed}"));
            }
            s.push(')');
        }
        Some(Source::File { path }) => {
            let p = path.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
            s.push_str(&format!(" = file(\"{p}\")"));
        }
        None => {}
    }
    s
}

/// The shortest program-text spelling of a format: a named format (`dense`, `sparse`, `csr`,
/// `csc`, `dcsr`, `dcsc`, `csf`) or a level list, plus `order(...)` when needed.
pub fn format_name(f: &Format) -> String {
    use LevelFormat::{Compressed as C, Dense as D};
    let rank = f.levels.len();
    let identity = f.mode_order.iter().enumerate().all(|(i, &d)| i == d);
    let order = || {
        let o: Vec<String> = f.mode_order.iter().map(|d| d.to_string()).collect();
        format!(" order({})", o.join(","))
    };
    if rank == 2 {
        let swapped = f.mode_order == [1, 0];
        match (f.levels[0], f.levels[1], identity, swapped) {
            (D, C, true, _) => return "csr".into(),
            (D, C, _, true) => return "csc".into(),
            (C, C, true, _) => return "dcsr".into(),
            (C, C, _, true) => return "dcsc".into(),
            _ => {}
        }
    }
    let base = if f.levels.iter().all(|l| *l == D) {
        "dense".to_string()
    } else if f.levels.iter().all(|l| *l == C) {
        if rank >= 3 { "csf" } else { "sparse" }.to_string()
    } else {
        let lv: Vec<&str> = f.levels.iter().map(|l| l.name()).collect();
        format!("({})", lv.join(", "))
    };
    if identity {
        base
    } else {
        base + &order()
    }
}

/// Prints one statement, e.g. `X(i,j) = sum(k, A(i,k) * B(k,j))`.
pub fn pretty_stmt(s: &Stmt) -> String {
    format!("{}({}) = {}", s.lhs.tensor, s.lhs.indices.join(","), pretty_expr(&s.rhs))
}

/// Prints an expression with minimal parentheses.
pub fn pretty_expr(e: &Expr) -> String {
    let mut s = String::new();
    write_expr(&mut s, e);
    s
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pretty_expr(self))
    }
}

/// Binding strength: 1 for `+ -`, 2 for `* /`, 3 for everything printed as an atom or prefix.
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Binary(BinOp::Add | BinOp::Sub, ..) => 1,
        Expr::Binary(BinOp::Mul | BinOp::Div, ..) => 2,
        _ => 3,
    }
}

fn number(v: f64) -> String {
    let s = format!("{v}");
    if s.len() > 12 {
        format!("{v:e}")
    } else {
        s
    }
}

fn write_expr(out: &mut String, e: &Expr) {
    let paren = |out: &mut String, e: &Expr, need: bool| {
        if need {
            out.push('(');
        }
        write_expr(out, e);
        if need {
            out.push(')');
        }
    };
    match e {
        Expr::Access(a) => {
            out.push_str(&a.tensor);
            out.push('(');
            out.push_str(&a.indices.join(","));
            out.push(')');
        }
        Expr::Const(c) => out.push_str(&number(*c)),
        Expr::Unary(UnaryOp::Neg, a) if !matches!(**a, Expr::Const(_)) => {
            out.push('-');
            paren(out, a, prec(a) < 3);
        }
        Expr::Unary(op, a) => {
            out.push_str(unary_name(*op));
            out.push('(');
            write_expr(out, a);
            out.push(')');
        }
        Expr::Binary(op @ (BinOp::Max | BinOp::ExpSubNz), a, b) => {
            out.push_str(binary_name(*op));
            out.push('(');
            write_expr(out, a);
            out.push_str(", ");
            write_expr(out, b);
            out.push(')');
        }
        Expr::Binary(op, a, b) => {
            let p = prec(e);
            paren(out, a, prec(a) < p);
            out.push(' ');
            out.push_str(binary_name(*op));
            out.push(' ');
            paren(out, b, prec(b) <= p);
        }
        Expr::Reduce { op, index, body } => {
            out.push_str(reduce_name(*op));
            out.push('(');
            out.push_str(index);
            out.push_str(", ");
            write_expr(out, body);
            out.push(')');
        }
    }
}

/// The program-text name of a unary function.
pub fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "neg",
        UnaryOp::Relu => "relu",
        UnaryOp::Exp => "exp",
        UnaryOp::ExpNz => "expnz",
        UnaryOp::Rsqrt => "rsqrt",
        UnaryOp::Sigmoid => "sigmoid",
        UnaryOp::Gelu => "gelu",
        UnaryOp::Erf => "erf",
    }
}

/// The program-text spelling of a binary operator: the symbol of an infix operator (`+`, `-`,
/// `*`, `/`) or the function name of one written as a call (`max`, `expsubnz`).
pub fn binary_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Max => "max",
        BinOp::ExpSubNz => "expsubnz",
    }
}

/// The program-text name of a reduction (`sum`, `maxr`, `maxnz`).
pub fn reduce_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "sum",
        ReduceOp::Max => "maxr",
        ReduceOp::MaxNz => "maxnz",
    }
}

//! The statement as an arena tree with index variables resolved to small ids.

use std::collections::BTreeSet;

use fuseflow_ir::{BinOp, CheckedProgram, Expr, ReduceOp, Stmt, UnaryOp};
use fuseflow_tensor::LevelFormat;

/// Index of a node in the tree.
pub(crate) type Nid = usize;
/// Index of an index variable.
pub(crate) type Var = usize;

/// A tensor operand.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub tensor: String,
    /// Index variable of each storage level, outermost first.
    pub level_vars: Vec<Var>,
    /// Logical dimension of each storage level.
    pub level_dims: Vec<usize>,
    /// Format of each storage level.
    pub formats: Vec<LevelFormat>,
    /// Size of each storage level.
    pub sizes: Vec<usize>,
    /// A program input read once in the statement (or the statement's output): under
    /// `LowerOptions::free_layout` it is stored in whatever mode order the dataflow order
    /// wants, so its level order constrains nothing.
    pub movable: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Leaf(Leaf),
    Const(f64),
    Unary(UnaryOp, Nid),
    Binary(BinOp, Nid, Nid),
    Reduce { op: ReduceOp, var: Var, child: Nid },
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub parent: Option<Nid>,
    /// Free index variables.
    pub vars: BTreeSet<Var>,
}

/// A statement ready for lowering.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    pub root: Nid,
    /// Index variable names.
    pub var_names: Vec<String>,
    /// Index variable sizes.
    pub var_sizes: Vec<usize>,
    /// Output tensor, its level variables and dims.
    pub out: Leaf,
    /// Movable leaves follow the dataflow order (`LowerOptions::free_layout`).
    pub free_layout: bool,
}

impl Tree {
    /// Builds the tree of a (possibly fused) statement with the given index sizes (constants
    /// folded). With `hoist`, sums are moved up through products (`Σk(x)·y = Σk(x·y)` when `y`
    /// lacks `k`), giving one iteration space for a product chain (global iteration) instead of
    /// one per factor (factored iteration).
    pub fn from_parts(
        p: &CheckedProgram,
        stmt: &Stmt,
        sizes: &std::collections::BTreeMap<String, usize>,
        pinned: &BTreeSet<String>,
        hoist: bool,
    ) -> Result<Tree, String> {
        let mut t = Tree {
            nodes: Vec::new(),
            root: 0,
            var_names: sizes.keys().cloned().collect(),
            var_sizes: sizes.values().copied().collect(),
            out: Leaf {
                tensor: String::new(),
                level_vars: vec![],
                level_dims: vec![],
                formats: vec![],
                sizes: vec![],
                movable: false,
            },
            free_layout: false,
        };
        let rhs = if hoist { hoist_sums(&stmt.rhs) } else { stmt.rhs.clone() };
        let root = t.add_expr(p, &rhs)?;
        t.root = root;
        t.out = t.leaf(p, &stmt.lhs.tensor, &stmt.lhs.indices)?;
        t.out.movable = true;
        // An input read twice keeps its declared layout: one stored copy cannot follow two
        // access patterns.
        let mut reads: std::collections::BTreeMap<String, usize> = Default::default();
        for n in &t.nodes {
            if let Kind::Leaf(l) = &n.kind {
                *reads.entry(l.tensor.clone()).or_default() += 1;
            }
        }
        for n in &mut t.nodes {
            if let Kind::Leaf(l) = &mut n.kind {
                l.movable &= reads[&l.tensor] == 1 && !pinned.contains(&l.tensor);
            }
        }
        if let Kind::Const(_) = t.nodes[root].kind {
            return Err(format!("{} is assigned a constant; give it a tensor operand", stmt.lhs.tensor));
        }
        Ok(t)
    }

    pub fn var(&self, name: &str) -> Result<Var, String> {
        self.var_names.iter().position(|n| n == name).ok_or_else(|| format!("unknown index {name}"))
    }

    fn leaf(&self, p: &CheckedProgram, tensor: &str, indices: &[String]) -> Result<Leaf, String> {
        let decl = p.decl(tensor).ok_or_else(|| format!("unknown tensor {tensor}"))?;
        let f = &decl.format;
        let mut level_vars = Vec::new();
        for &d in &f.mode_order {
            let v = self.var(&indices[d])?;
            if level_vars.contains(&v) {
                return Err(format!("tensor {tensor} uses index {} twice (diagonal access)", indices[d]));
            }
            level_vars.push(v);
        }
        Ok(Leaf {
            tensor: tensor.to_string(),
            level_vars,
            level_dims: f.mode_order.clone(),
            formats: f.levels.clone(),
            sizes: f.mode_order.iter().map(|&d| decl.shape[d]).collect(),
            movable: decl.role == fuseflow_ir::Role::Input,
        })
    }

    /// The tree with every movable leaf's levels in the order of `pos` (a variable's position
    /// in the dataflow order), when the layout is free; level formats stay by level.
    pub fn relayout(&self, pos: &[usize]) -> std::borrow::Cow<'_, Tree> {
        if !self.free_layout {
            return std::borrow::Cow::Borrowed(self);
        }
        let sort = |l: &mut Leaf| {
            if !l.movable {
                return;
            }
            let mut idx: Vec<usize> = (0..l.level_vars.len()).collect();
            idx.sort_by_key(|&i| pos.get(l.level_vars[i]).copied().unwrap_or(usize::MAX));
            l.level_vars = idx.iter().map(|&i| l.level_vars[i]).collect();
            l.level_dims = idx.iter().map(|&i| l.level_dims[i]).collect();
            l.sizes = idx.iter().map(|&i| l.sizes[i]).collect();
        };
        let mut t = self.clone();
        for n in &mut t.nodes {
            if let Kind::Leaf(l) = &mut n.kind {
                sort(l);
            }
        }
        sort(&mut t.out);
        std::borrow::Cow::Owned(t)
    }

    fn push(&mut self, kind: Kind, vars: BTreeSet<Var>) -> Nid {
        self.nodes.push(Node { kind, parent: None, vars });
        self.nodes.len() - 1
    }

    fn add_expr(&mut self, p: &CheckedProgram, e: &Expr) -> Result<Nid, String> {
        Ok(match e {
            Expr::Access(a) => {
                let leaf = self.leaf(p, &a.tensor, &a.indices)?;
                let vars = leaf.level_vars.iter().copied().collect();
                self.push(Kind::Leaf(leaf), vars)
            }
            Expr::Const(c) => self.push(Kind::Const(*c), BTreeSet::new()),
            Expr::Unary(op, x) => {
                let c = self.add_expr(p, x)?;
                if let Kind::Const(v) = self.nodes[c].kind {
                    self.nodes.pop();
                    return Ok(self.push(Kind::Const(op.apply(v)), BTreeSet::new()));
                }
                let vars = self.nodes[c].vars.clone();
                let n = self.push(Kind::Unary(*op, c), vars);
                self.nodes[c].parent = Some(n);
                n
            }
            Expr::Binary(op, a, b) => {
                let x = self.add_expr(p, a)?;
                let y = self.add_expr(p, b)?;
                if let (Kind::Const(u), Kind::Const(v)) = (&self.nodes[x].kind, &self.nodes[y].kind) {
                    let r = op.apply(*u, *v);
                    self.nodes.truncate(x);
                    return Ok(self.push(Kind::Const(r), BTreeSet::new()));
                }
                let vars = self.nodes[x].vars.union(&self.nodes[y].vars).copied().collect();
                let n = self.push(Kind::Binary(*op, x, y), vars);
                self.nodes[x].parent = Some(n);
                self.nodes[y].parent = Some(n);
                n
            }
            Expr::Reduce { op, index, body } => {
                let c = self.add_expr(p, body)?;
                let var = self.var(index)?;
                let mut vars = self.nodes[c].vars.clone();
                vars.remove(&var);
                let n = self.push(Kind::Reduce { op: *op, var, child: c }, vars);
                self.nodes[c].parent = Some(n);
                n
            }
        })
    }
}

/// Free index variables of an expression.
fn free_vars(e: &Expr) -> BTreeSet<String> {
    match e {
        Expr::Access(a) => a.indices.iter().cloned().collect(),
        Expr::Const(_) => BTreeSet::new(),
        Expr::Unary(_, x) => free_vars(x),
        Expr::Binary(_, a, b) => free_vars(a).union(&free_vars(b)).cloned().collect(),
        Expr::Reduce { index, body, .. } => {
            let mut v = free_vars(body);
            v.remove(index);
            v
        }
    }
}

/// Moves sum reductions above the products that contain them.
fn hoist_sums(e: &Expr) -> Expr {
    match e {
        Expr::Access(_) | Expr::Const(_) => e.clone(),
        Expr::Unary(op, x) => Expr::Unary(*op, Box::new(hoist_sums(x))),
        Expr::Reduce { op, index, body } => {
            Expr::Reduce { op: *op, index: index.clone(), body: Box::new(hoist_sums(body)) }
        }
        Expr::Binary(op, a, b) => {
            let a = hoist_sums(a);
            let b = hoist_sums(b);
            if *op == BinOp::Mul {
                if let Expr::Reduce { op: ReduceOp::Sum, index, body } = &a {
                    if !free_vars(&b).contains(index) {
                        let inner = hoist_sums(&Expr::Binary(BinOp::Mul, body.clone(), Box::new(b)));
                        return Expr::Reduce { op: ReduceOp::Sum, index: index.clone(), body: Box::new(inner) };
                    }
                }
                if let Expr::Reduce { op: ReduceOp::Sum, index, body } = &b {
                    if !free_vars(&a).contains(index) {
                        let inner = hoist_sums(&Expr::Binary(BinOp::Mul, Box::new(a), body.clone()));
                        return Expr::Reduce { op: ReduceOp::Sum, index: index.clone(), body: Box::new(inner) };
                    }
                }
            }
            Expr::Binary(*op, Box::new(a), Box::new(b))
        }
    }
}

impl Tree {
    /// Reorders chains of nested sums so that the sum over the variable visited last is the
    /// innermost (sums commute), which keeps sparse accumulators at the lowest order.
    pub fn sort_sums(&mut self, pos: &[usize]) {
        for n in 0..self.nodes.len() {
            // Start at the top of a chain: a sum whose parent is not a sum.
            let is_sum = |t: &Tree, x: Nid| matches!(t.nodes[x].kind, Kind::Reduce { op: ReduceOp::Sum, .. });
            if !is_sum(self, n) || self.nodes[n].parent.is_some_and(|p| is_sum(self, p)) {
                continue;
            }
            let mut chain = vec![n];
            while let Kind::Reduce { child, .. } = self.nodes[*chain.last().unwrap()].kind {
                if !is_sum(self, child) {
                    break;
                }
                chain.push(child);
            }
            if chain.len() < 2 {
                continue;
            }
            let mut vars: Vec<Var> = chain
                .iter()
                .map(|&x| match self.nodes[x].kind {
                    Kind::Reduce { var, .. } => var,
                    _ => unreachable!(),
                })
                .collect();
            // Outermost node reduces the earliest variable.
            vars.sort_by_key(|&v| pos[v]);
            let bottom = match self.nodes[*chain.last().unwrap()].kind {
                Kind::Reduce { child, .. } => child,
                _ => unreachable!(),
            };
            let mut acc = self.nodes[bottom].vars.clone();
            for (i, &x) in chain.iter().enumerate().rev() {
                if let Kind::Reduce { var, .. } = &mut self.nodes[x].kind {
                    *var = vars[i];
                }
                acc.remove(&vars[i]);
                self.nodes[x].vars = acc.clone();
            }
        }
    }
}

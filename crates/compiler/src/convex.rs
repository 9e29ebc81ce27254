//! Convex fusion partitions of the dependence DAG of a program's user statements.
//!
//! Statement `b` depends on statement `a` when `b` reads a tensor `a` writes (a built-in line
//! is one statement, as everywhere users number statements). Fusion groups need not be
//! ranges of the statement list: statements that do not depend on each other (GPT-3's Q, K and
//! V projections) may be grouped in any combination the dependences allow. A group is
//! *convex* when no path of the DAG leaves it and comes back into it (such a group would need
//! the outside statement's result before it could finish, and that statement would need the
//! group's). A partition is *legal* when its quotient graph (one node per group, an edge where
//! a statement of one group reads a statement of another) is acyclic; that implies every group
//! is convex. Groups then run in the topological order that always takes the ready group with
//! the smallest statement ([`Dag::schedule`]), so one partition has one execution order, and a
//! partition into ranges runs in program order.
//!
//! Because program order is itself a topological order (a statement reads only tensors
//! assigned above it), [`Dag::convex_partitions`] can enumerate legal partitions by placing
//! statements one at a time in program order, each into an existing group or a new one,
//! refusing a placement that closes a cycle of groups. Every refusal is final (adding
//! statements only adds edges) and no prefix is a dead end (the remaining statements can
//! always go alone), so the enumeration does work proportional to what it outputs.

use std::collections::BTreeSet;
use std::fmt;

use fuseflow_ir::CheckedProgram;

/// The dependence DAG of a program's user statements (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// Direct predecessors of each statement, sorted, all below the statement.
    preds: Vec<Vec<usize>>,
    /// Direct successors of each statement, sorted.
    succs: Vec<Vec<usize>>,
    /// What each statement writes, for messages (empty names are left out).
    names: Vec<String>,
}

/// Most statements [`Dag::convex_partitions`] enumerates over (group sets are 64-bit masks).
pub const MAX_ENUMERATED_STATEMENTS: usize = 64;

/// Why an enumeration of partitions stopped before it had them all (as egg's runner reports
/// why it stopped saturating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It found `max_partitions` partitions and there are more.
    PartitionLimit(usize),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::PartitionLimit(n) => {
                write!(f, "stopped at max_partitions = {n}: the program has more convex partitions")
            }
        }
    }
}

/// What [`Dag::convex_partitions`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvexPartitions {
    /// Legal partitions, each as groups of statements (sorted) in execution order.
    pub partitions: Vec<Vec<Vec<usize>>>,
    /// Why the enumeration stopped early (`None`: these are all of them).
    pub stopped: Option<StopReason>,
}

pub use fuseflow_ir::group_text;

/// Groups as `--fusion` writes them: `0-2+4,3,5-13`.
pub fn groups_text(groups: &[Vec<usize>]) -> String {
    groups.iter().map(|g| group_text(g)).collect::<Vec<_>>().join(",")
}

/// `0-4`, `0` or `none` for the indices below `n`.
pub(crate) fn range_text(n: usize) -> String {
    match n {
        0 => "none".to_string(),
        1 => "0".to_string(),
        _ => format!("0-{}", n - 1),
    }
}

impl Dag {
    /// A DAG from each statement's direct predecessors. Every predecessor must come before
    /// its statement (program order is a topological order); duplicates are ignored.
    pub fn new(preds: Vec<Vec<usize>>) -> Result<Dag, String> {
        let n = preds.len();
        let mut clean = Vec::with_capacity(n);
        let mut succs = vec![Vec::new(); n];
        for (s, ps) in preds.into_iter().enumerate() {
            let set: BTreeSet<usize> = ps.into_iter().collect();
            if let Some(&bad) = set.iter().find(|&&p| p >= s) {
                return Err(format!(
                    "statement {s} cannot depend on statement {bad}: dependences must point backwards"
                ));
            }
            for &p in &set {
                succs[p].push(s);
            }
            clean.push(set.into_iter().collect());
        }
        Ok(Dag { preds: clean, succs, names: vec![String::new(); n] })
    }

    /// `n` statements, each reading the one before: only ranges are convex.
    pub fn chain(n: usize) -> Dag {
        let preds = (0..n).map(|s| if s == 0 { Vec::new() } else { vec![s - 1] }).collect();
        Dag::new(preds).expect("a chain points backwards")
    }

    /// The dependences of `p`'s user statements (a built-in line is one statement).
    pub fn of_program(p: &CheckedProgram) -> Dag {
        let users = if p.user_stmts.is_empty() { p.stmts.len() } else { p.user_stmts.len() };
        let mut writer = std::collections::BTreeMap::new();
        for (s, st) in p.stmts.iter().enumerate() {
            writer.insert(st.lhs.tensor.clone(), p.user_stmt_of(s));
        }
        let mut preds = vec![BTreeSet::new(); users];
        let mut names = vec![String::new(); users];
        for (s, st) in p.stmts.iter().enumerate() {
            let u = p.user_stmt_of(s);
            if u >= users {
                continue;
            }
            // A built-in's last step writes the tensor its line names.
            names[u] = st.lhs.tensor.clone();
            st.rhs.for_each_access(&mut |a| {
                if let Some(&w) = writer.get(&a.tensor) {
                    if w < u {
                        preds[u].insert(w);
                    }
                }
            });
        }
        let mut dag = Dag::new(preds.into_iter().map(|s| s.into_iter().collect()).collect())
            .expect("a checked program reads only tensors assigned above");
        dag.names = names;
        dag
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.preds.len()
    }

    /// Whether there are no statements.
    pub fn is_empty(&self) -> bool {
        self.preds.is_empty()
    }

    /// Direct predecessors of statement `s` (what it reads), sorted.
    pub fn preds(&self, s: usize) -> &[usize] {
        &self.preds[s]
    }

    /// `3 (Kh)`: a statement with what it writes, for messages.
    fn stmt_name(&self, s: usize) -> String {
        match self.names.get(s).filter(|n| !n.is_empty()) {
            Some(n) => format!("{s} ({n})"),
            None => s.to_string(),
        }
    }

    /// A path that leaves `group` and comes back (its interior outside the group), if any:
    /// the witness that the group is not convex.
    pub fn escape_path(&self, group: &[usize]) -> Option<Vec<usize>> {
        let n = self.len();
        let inside: Vec<bool> = (0..n).map(|s| group.contains(&s)).collect();
        // Breadth first from the group's members over outside statements, remembering where
        // each was reached from; the first outside statement that feeds the group closes it.
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut queue = std::collections::VecDeque::new();
        let mut members: Vec<usize> = group.iter().copied().filter(|&s| s < n).collect();
        members.sort_unstable();
        for &g in &members {
            for &x in &self.succs[g] {
                if !inside[x] && parent[x].is_none() {
                    parent[x] = Some(g);
                    queue.push_back(x);
                }
            }
        }
        while let Some(x) = queue.pop_front() {
            if let Some(&back) = self.succs[x].iter().find(|&&y| inside[y]) {
                let mut path = vec![back, x];
                let mut at = x;
                while let Some(p) = parent[at] {
                    path.push(p);
                    if inside[p] {
                        break;
                    }
                    at = p;
                }
                path.reverse();
                return Some(path);
            }
            for &y in &self.succs[x] {
                if !inside[y] && parent[y].is_none() {
                    parent[y] = Some(x);
                    queue.push_back(y);
                }
            }
        }
        None
    }

    /// Checks that `groups` are a legal partition of the statements (each exactly once, every
    /// group convex, the groups' quotient graph acyclic) and returns them sorted, in execution
    /// order: repeatedly the ready group with the smallest statement. Errors are one line,
    /// in user statement numbering, naming the group and the path or cycle at fault.
    pub fn schedule(&self, groups: &[Vec<usize>]) -> Result<Vec<Vec<usize>>, String> {
        let n = self.len();
        let mut owner: Vec<Option<usize>> = vec![None; n];
        let mut sorted: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            if g.is_empty() {
                return Err("empty group".to_string());
            }
            for &s in g {
                if s >= n {
                    return Err(format!("statement {s} does not exist (the program has {n}: {})", range_text(n)));
                }
                if let Some(other) = owner[s] {
                    return Err(if other == gi {
                        format!("statement {s} appears twice in group {}", group_text(g))
                    } else {
                        format!("statement {s} is in two groups ({} and {})", group_text(&groups[other]), group_text(g))
                    });
                }
                owner[s] = Some(gi);
            }
            let mut g = g.clone();
            g.sort_unstable();
            sorted.push(g);
        }
        let missing: Vec<usize> = (0..n).filter(|&s| owner[s].is_none()).collect();
        if !missing.is_empty() {
            let covered: Vec<usize> = (0..n).filter(|&s| owner[s].is_some()).collect();
            return Err(format!(
                "the groups cover statements {}, but the program has {n} ({}); every statement must be in a group (statement {} is in none)",
                if covered.is_empty() { "none".to_string() } else { group_text(&covered) },
                range_text(n),
                group_text(&missing).replace('+', ", ")
            ));
        }
        for g in &sorted {
            if let Some(path) = self.escape_path(g) {
                let steps: Vec<String> = path.iter().map(|&s| self.stmt_name(s)).collect();
                let outside = path[1];
                let via = owner[outside].map_or_else(String::new, |o| format!(", in group {}", group_text(&sorted[o])));
                return Err(format!(
                    "group {} is not convex: the path {} leaves it and comes back through statement {outside}{via}",
                    group_text(g),
                    steps.join(" → ")
                ));
            }
        }
        let owner: Vec<usize> = owner.into_iter().map(|o| o.unwrap_or(0)).collect();
        let k = sorted.len();
        // Quotient edges, each with one statement edge that witnesses it.
        let mut edges: Vec<std::collections::BTreeMap<usize, (usize, usize)>> = vec![Default::default(); k];
        let mut indegree = vec![0usize; k];
        for s in 0..n {
            for &p in &self.preds[s] {
                let (from, to) = (owner[p], owner[s]);
                if from != to && !edges[from].contains_key(&to) {
                    edges[from].insert(to, (p, s));
                    indegree[to] += 1;
                }
            }
        }
        let mut ready: BTreeSet<(usize, usize)> =
            (0..k).filter(|&g| indegree[g] == 0).map(|g| (sorted[g][0], g)).collect();
        let mut order = Vec::with_capacity(k);
        while let Some(&(first, g)) = ready.iter().next() {
            ready.remove(&(first, g));
            order.push(g);
            for &to in edges[g].keys() {
                indegree[to] -= 1;
                if indegree[to] == 0 {
                    ready.insert((sorted[to][0], to));
                }
            }
        }
        if order.len() < k {
            return Err(self.cycle_message(&sorted, &edges, &indegree));
        }
        Ok(order.into_iter().map(|g| sorted[g].clone()).collect())
    }

    /// The message for groups whose quotient graph has a cycle: one cycle among the groups
    /// Kahn's algorithm could not order (`indegree` > 0), with the statement edges closing it.
    fn cycle_message(
        &self,
        groups: &[Vec<usize>],
        edges: &[std::collections::BTreeMap<usize, (usize, usize)>],
        indegree: &[usize],
    ) -> String {
        let stuck: Vec<bool> = indegree.iter().map(|&d| d > 0).collect();
        // Every stuck group has a stuck predecessor; walking predecessors must repeat.
        let pred_of = |g: usize| (0..groups.len()).find(|&h| stuck[h] && edges[h].contains_key(&g));
        let Some(start) = (0..groups.len()).find(|&g| stuck[g]) else {
            return "the groups cannot be ordered".to_string();
        };
        let mut seen = vec![usize::MAX; groups.len()];
        let mut walk = vec![start];
        seen[start] = 0;
        let mut at = start;
        let cycle = loop {
            let Some(p) = pred_of(at) else { return "the groups cannot be ordered".to_string() };
            if seen[p] != usize::MAX {
                let mut c: Vec<usize> = walk[seen[p]..].to_vec();
                c.reverse();
                break c;
            }
            seen[p] = walk.len();
            walk.push(p);
            at = p;
        };
        let mut names: Vec<String> = cycle.iter().map(|&g| group_text(&groups[g])).collect();
        names.push(group_text(&groups[cycle[0]]));
        let reads: Vec<String> = (0..cycle.len())
            .map(|i| {
                let (a, b) = edges[cycle[i]][&cycle[(i + 1) % cycle.len()]];
                format!("{} reads {}", self.stmt_name(b), self.stmt_name(a))
            })
            .collect();
        format!("groups {} form a cycle, so no order runs them: {}", names.join(" → "), reads.join(", "))
    }

    /// Every legal partition of the statements, at most `max_partitions` of them (then
    /// [`ConvexPartitions::stopped`] says so), in a fixed order: statements are placed in
    /// program order, each first into the groups that exist (oldest first) and then alone, so
    /// the single group comes first and every statement alone last. Each partition's groups
    /// are in execution order ([`Dag::schedule`]). Partitions into ranges are among them.
    pub fn convex_partitions(&self, max_partitions: usize) -> Result<ConvexPartitions, String> {
        let n = self.len();
        if n > MAX_ENUMERATED_STATEMENTS {
            return Err(format!(
                "convex partitions of {n} statements are not enumerated (at most {MAX_ENUMERATED_STATEMENTS}): list the partitions to visit"
            ));
        }
        let mut e = Enumeration {
            dag: self,
            assign: vec![0; n],
            succ: Vec::with_capacity(n),
            out: Vec::new(),
            limit: max_partitions,
            stopped: None,
        };
        if n > 0 {
            e.place(0);
        }
        Ok(ConvexPartitions { partitions: e.out, stopped: e.stopped })
    }
}

/// The state of [`Dag::convex_partitions`]'s depth-first placement.
struct Enumeration<'a> {
    dag: &'a Dag,
    /// Group of each placed statement (groups numbered by creation, i.e. smallest statement).
    assign: Vec<usize>,
    /// Successor groups of each group in the quotient of the placed statements (bit masks).
    succ: Vec<u64>,
    out: Vec<Vec<Vec<usize>>>,
    limit: usize,
    stopped: Option<StopReason>,
}

impl Enumeration<'_> {
    /// Whether group `from` reaches a group of `targets` in the quotient graph.
    fn reaches(&self, from: usize, targets: u64) -> bool {
        let mut seen = 0u64;
        let mut frontier = self.succ[from];
        while frontier != 0 {
            if frontier & targets != 0 {
                return true;
            }
            seen |= frontier;
            frontier = bits(frontier).fold(0, |m, g| m | self.succ[g]) & !seen;
        }
        false
    }

    /// Places statement `s` (and, recursively, the rest); false once the limit stopped it.
    fn place(&mut self, s: usize) -> bool {
        let n = self.dag.len();
        if s == n {
            if self.out.len() == self.limit {
                self.stopped = Some(StopReason::PartitionLimit(self.limit));
                return false;
            }
            let mut groups = vec![Vec::new(); self.succ.len()];
            for (st, &g) in self.assign.iter().enumerate() {
                groups[g].push(st);
            }
            let ordered = self.dag.schedule(&groups).expect("placements keep the quotient acyclic");
            self.out.push(ordered);
            return true;
        }
        let from: u64 = self.dag.preds(s).iter().fold(0, |m, &p| m | 1u64 << self.assign[p]);
        for g in 0..=self.succ.len() {
            let new = g == self.succ.len();
            let sources = if new { from } else { from & !(1u64 << g) };
            // Joining group g adds edges from every source group to g: a cycle unless g
            // reaches none of them.
            if !new && self.reaches(g, sources) {
                continue;
            }
            if new {
                self.succ.push(0);
            }
            let saved: Vec<(usize, u64)> = bits(sources).map(|h| (h, self.succ[h])).collect();
            for &(h, _) in &saved {
                self.succ[h] |= 1u64 << g;
            }
            self.assign[s] = g;
            let go_on = self.place(s + 1);
            for &(h, old) in &saved {
                self.succ[h] = old;
            }
            if new {
                self.succ.pop();
            }
            if !go_on {
                return false;
            }
        }
        true
    }
}

/// The set bits of a mask, lowest first.
fn bits(mut m: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (m != 0).then(|| {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            b
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(preds: &[&[usize]]) -> Dag {
        Dag::new(preds.iter().map(|p| p.to_vec()).collect()).unwrap()
    }

    fn texts(c: &ConvexPartitions) -> Vec<String> {
        c.partitions.iter().map(|p| groups_text(p)).collect()
    }

    /// Partitions of `n` items by brute force (restricted growth strings), kept when legal
    /// by the definition: the quotient graph, closed transitively, never relates a group
    /// to itself through another.
    fn brute_force(d: &Dag) -> BTreeSet<String> {
        let n = d.len();
        let mut out = BTreeSet::new();
        let mut a = vec![0usize; n];
        loop {
            let k = a.iter().max().map_or(0, |m| m + 1);
            // reach[g][h]: a path of statement edges leads from group g to group h.
            let mut reach = vec![vec![false; k]; k];
            for s in 0..n {
                for &p in d.preds(s) {
                    if a[p] != a[s] {
                        reach[a[p]][a[s]] = true;
                    }
                }
            }
            for m in 0..k {
                for i in 0..k {
                    for j in 0..k {
                        if reach[i][m] && reach[m][j] {
                            reach[i][j] = true;
                        }
                    }
                }
            }
            if (0..k).all(|g| !reach[g][g]) {
                let mut groups = vec![Vec::new(); k];
                for (s, &g) in a.iter().enumerate() {
                    groups[g].push(s);
                }
                out.insert(groups_text(&d.schedule(&groups).unwrap()));
            }
            // Next restricted growth string.
            let mut i = n;
            loop {
                if i <= 1 {
                    return out;
                }
                i -= 1;
                let max_before = a[..i].iter().max().copied().unwrap_or(0);
                if a[i] <= max_before {
                    a[i] += 1;
                    for x in &mut a[i + 1..] {
                        *x = 0;
                    }
                    break;
                }
            }
        }
    }

    #[test]
    fn a_chain_has_only_its_ranges() {
        for n in 1..=8 {
            let c = Dag::chain(n).convex_partitions(usize::MAX).unwrap();
            assert_eq!(c.partitions.len(), 1 << (n - 1), "chain of {n}");
            assert!(c.partitions.iter().flatten().all(|g| g.windows(2).all(|w| w[1] == w[0] + 1)));
            assert_eq!(c.stopped, None);
        }
        let c = Dag::chain(3).convex_partitions(usize::MAX).unwrap();
        assert_eq!(texts(&c), ["0-2", "0-1,2", "0,1-2", "0,1,2"]);
    }

    #[test]
    fn a_diamond_cannot_group_its_ends_without_a_middle() {
        // 0 → 1, 0 → 2, 1 → 3, 2 → 3. Of the 15 partitions of four statements, the 4 with a
        // group that holds 0 and 3 without both 1 and 2 are not convex: 11 remain.
        let d = dag(&[&[], &[0], &[0], &[1, 2]]);
        let c = d.convex_partitions(usize::MAX).unwrap();
        assert_eq!(c.partitions.len(), 11, "{:?}", texts(&c));
        assert_eq!(texts(&c).first().map(String::as_str), Some("0-3"));
        assert_eq!(texts(&c).last().map(String::as_str), Some("0,1,2,3"));
        // 1 and 2 are independent: grouping them is legal though no range is {1, 2}.
        assert!(texts(&c).contains(&"0,1-2,3".to_string()));
        assert!(texts(&c).contains(&"0+2,1+3".to_string()), "{:?}", texts(&c));
        assert_eq!(texts(&c).into_iter().collect::<BTreeSet<_>>(), brute_force(&d));
    }

    #[test]
    fn two_independent_chains_mix_freely_but_never_cross() {
        // 0 → 1 and 2 → 3: groups may take one chain's tail with the other's head, but
        // {0, 3} with {1, 2} is a cycle of two convex groups.
        let d = dag(&[&[], &[0], &[], &[2]]);
        let c = d.convex_partitions(usize::MAX).unwrap();
        let all = texts(&c);
        assert_eq!(all.len(), 14, "{all:?}");
        assert!(!all.iter().any(|t| t == "0+3,1-2" || t == "1-2,0+3"));
        assert!(all.contains(&"0+2,1+3".to_string()), "{all:?}");
        assert!(all.contains(&"0,1-2,3".to_string()), "{all:?}");
        assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), brute_force(&d));
        assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "distinct");
        // Two independent statements: both partitions.
        assert_eq!(texts(&dag(&[&[], &[]]).convex_partitions(10).unwrap()), ["0-1", "0,1"]);
    }

    #[test]
    fn the_limit_stops_the_enumeration_and_says_so() {
        let d = Dag::chain(6);
        let c = d.convex_partitions(5).unwrap();
        assert_eq!(c.partitions.len(), 5);
        assert_eq!(c.stopped, Some(StopReason::PartitionLimit(5)));
        assert_eq!(
            c.stopped.unwrap().to_string(),
            "stopped at max_partitions = 5: the program has more convex partitions"
        );
        let all = d.convex_partitions(32).unwrap();
        assert_eq!((all.partitions.len(), all.stopped), (32, None), "exactly the limit is complete");
        assert_eq!(all.partitions[..5], c.partitions[..], "a prefix of the same order");
        assert!(Dag::chain(65).convex_partitions(1).unwrap_err().contains("at most 64"));
        assert_eq!(Dag::chain(0).convex_partitions(1).unwrap().partitions.len(), 0);
    }

    #[test]
    fn schedule_orders_groups_and_names_what_breaks_them() {
        let d = dag(&[&[], &[0], &[1]]);
        assert_eq!(d.schedule(&[vec![2], vec![1], vec![0]]).unwrap(), [vec![0], vec![1], vec![2]]);
        let e = d.schedule(&[vec![0, 2], vec![1]]).unwrap_err();
        assert_eq!(
            e,
            "group 0+2 is not convex: the path 0 → 1 → 2 leaves it and comes back through statement 1, in group 1"
        );
        // Two independent chains crossed: each group convex, together a cycle.
        let x = dag(&[&[], &[0], &[], &[2]]);
        let e = x.schedule(&[vec![0, 3], vec![1, 2]]).unwrap_err();
        assert!(e.starts_with("groups ") && e.contains("form a cycle"), "{e}");
        assert!(e.contains("1 reads 0") && e.contains("3 reads 2"), "{e}");
        assert_eq!(d.schedule(&[vec![0, 1]]).unwrap_err().lines().count(), 1);
        assert!(d.schedule(&[vec![0, 1]]).unwrap_err().contains("statement 2 is in none"));
        assert!(d
            .schedule(&[vec![0, 1], vec![1, 2]])
            .unwrap_err()
            .contains("statement 1 is in two groups (0-1 and 1-2)"));
        assert!(d.schedule(&[vec![0, 3], vec![1, 2]]).unwrap_err().contains("statement 3 does not exist"));
        // The ready group with the smallest statement goes first: 1 → 2, 0 alone.
        let y = dag(&[&[], &[], &[1]]);
        assert_eq!(y.schedule(&[vec![1], vec![0, 2]]).unwrap(), [vec![1], vec![0, 2]]);
        assert_eq!(y.schedule(&[vec![0], vec![2], vec![1]]).unwrap(), [vec![0], vec![1], vec![2]]);
        assert!(Dag::new(vec![vec![], vec![1]]).unwrap_err().contains("must point backwards"));
    }

    #[test]
    fn group_text_joins_runs_with_plus() {
        assert_eq!(group_text(&[0, 1, 2, 4]), "0-2+4");
        assert_eq!(group_text(&[3]), "3");
        assert_eq!(group_text(&[4, 0, 1]), "4+0-1");
        assert_eq!(groups_text(&[vec![0, 1, 3], vec![2], vec![4, 5]]), "0-1+3,2,4-5");
    }
}

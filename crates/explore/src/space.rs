//! The design space: which fusion partitions, dataflow orders, parallel lanes, block sizes and
//! machines a sweep visits, read from a TOML space file and command-line flags, and enumerated
//! as numbered points.
//!
//! Points are numbered in one fixed order (machine, then order choice, then lanes, then block
//! size, then partition), so that a point's id is the same in every process that reads the
//! same space: sharding splits by id and merging sorts by id. A space whose `par` and `block`
//! axes are left at their default (`none`) numbers its points as before those axes existed.
//!
//! Lanes and block sizes apply per point to every group they fit (partitions vary, so they
//! cannot name a group as `run --par G:...` does): a lane request to every group that
//! iterates its index, a block size to every group with a sparse operand. A group they do not
//! fit runs unchanged, and its record says what was applied.

use std::fmt;

use crate::ExploreError;

/// Axes a space file may set (`max_partitions` bounds the `partitions` axis).
pub const AXES: &[&str] = &[
    "partitions",
    "max_partitions",
    "orders",
    "order_cap",
    "par",
    "block",
    "hw",
    "fifo_depth",
    "memory",
    "channels",
    "bandwidth",
];

/// Most lanes one index may be split into (the program's `par` lines have the same limit).
pub const MAX_LANES: u32 = 1024;

/// Largest block size a space may name.
pub const MAX_BLOCK: usize = 4096;

/// Most points one space may have: a sweep beyond this is a configuration error (list the
/// partitions to visit instead of `all`).
pub const MAX_POINTS: u64 = 1 << 22;

/// How many convex partitions `partitions = "convex"` enumerates unless `max_partitions` says
/// otherwise.
pub const DEFAULT_MAX_PARTITIONS: usize = 100_000;

pub use fuseflow_compiler::convex::{Dag, StopReason};

/// Which fusion partitions of the user statements a sweep visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// Every partition into contiguous groups: 2^(n-1) of them for n statements.
    All,
    /// Every partition of the dependence DAG into convex groups that can be ordered (see
    /// [`fuseflow_compiler::convex`]), at most [`Space::max_partitions`] of them; the
    /// contiguous ones are among them.
    Convex,
    /// The listed partitions, in `--fusion` syntax (groups may join non-adjacent statements
    /// with `+` where the dependences allow).
    List(Vec<Partition>),
}

/// A partition of user statements `0..n` into groups, each sorted, the groups in execution
/// order (for a partition into ranges: program order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// Number of user statements.
    pub n: usize,
    groups: Vec<Vec<usize>>,
}

impl Partition {
    /// The partition into ranges with cut mask `cuts` of `n` statements: bit `i` set means a
    /// group ends after statement `i` (bits `0..n-1`).
    pub fn new(n: usize, cuts: u64) -> Partition {
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 0..n {
            if i + 1 == n || (i < 63 && cuts >> i & 1 == 1) {
                groups.push((start..i + 1).collect());
                start = i + 1;
            }
        }
        Partition { n, groups }
    }

    /// A partition from groups of statements, as the dependence DAG orders them (each group
    /// sorted, the groups in execution order); an error names what makes them illegal.
    pub fn from_groups(dag: &Dag, groups: &[Vec<usize>]) -> Result<Partition, String> {
        Ok(Partition { n: dag.len(), groups: dag.schedule(groups)? })
    }

    /// Every statement alone (the unfused baseline at the level of user statements).
    pub fn singletons(n: usize) -> Partition {
        Partition::new(n, u64::MAX)
    }

    /// One group of everything.
    pub fn whole(n: usize) -> Partition {
        Partition::new(n, 0)
    }

    /// The groups (each sorted), in execution order.
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Whether every group is a range of consecutive statements.
    pub fn is_contiguous(&self) -> bool {
        self.groups.iter().all(|g| g.windows(2).all(|w| w[1] == w[0] + 1))
    }

    /// Parses `--fusion` syntax: groups separated by `,`, each a range `a-b`, a statement, or
    /// such parts joined by `+` (`0-3,4-10`, `0-2+4,3,5-13`); `unfused` and `full` name the
    /// two extremes. Every statement below `n` must be in exactly one group; whether the
    /// groups are legal for the program's dependences is [`Partition::ordered`]'s business
    /// (until then the groups stay as written).
    pub fn parse(text: &str, n: usize) -> Result<Partition, String> {
        match text.trim() {
            "unfused" => return Ok(Partition::singletons(n)),
            "full" => return Ok(Partition::whole(n)),
            _ => {}
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut seen = vec![false; n];
        for item in text.split(',') {
            let item = item.trim();
            let bad =
                || format!("partition {text:?}: {item:?} is not a statement, a range a-b, or such parts joined by +");
            let mut group = Vec::new();
            for part in item.split('+') {
                let part = part.trim();
                let (a, b) = match part.split_once('-') {
                    Some((a, b)) => {
                        (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?)
                    }
                    None => {
                        let a = part.parse::<usize>().map_err(|_| bad())?;
                        (a, a)
                    }
                };
                if b < a {
                    return Err(bad());
                }
                if b >= n {
                    return Err(format!("partition {text:?}: statement {b} does not exist (the program has {n})"));
                }
                for (s, taken) in seen.iter_mut().enumerate().take(b + 1).skip(a) {
                    if *taken {
                        return Err(format!("partition {text:?}: statement {s} is in two groups"));
                    }
                    *taken = true;
                    group.push(s);
                }
            }
            group.sort_unstable();
            groups.push(group);
        }
        let missing: Vec<usize> = (0..n).filter(|&s| !seen[s]).collect();
        if !missing.is_empty() {
            let list = fuseflow_compiler::convex::group_text(&missing).replace('+', ", ");
            let which =
                if missing.len() == 1 { format!("statement {list} is") } else { format!("statements {list} are") };
            return Err(format!("partition {text:?}: {which} in no group"));
        }
        Ok(Partition { n, groups })
    }

    /// The same groups checked against the dependence DAG and put in its execution order; an
    /// error names the group and the path (or the cycle of groups) that makes them illegal.
    pub fn ordered(&self, dag: &Dag) -> Result<Partition, String> {
        if dag.len() != self.n {
            return Err(format!("partition {self} is of {} statements, the program has {}", self.n, dag.len()));
        }
        Partition::from_groups(dag, &self.groups).map_err(|e| format!("partition {self}: {e}"))
    }
}

impl fmt::Display for Partition {
    /// `--fusion` syntax: `0-3,4-10`, `5` for a group of one, `0-2+4` for a group that is not
    /// a range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fuseflow_compiler::convex::groups_text(&self.groups))
    }
}

/// How many partitions a space's `partitions` axis gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCount {
    /// Partitions enumerated (or listed).
    pub partitions: usize,
    /// Of those, partitions into ranges of consecutive statements.
    pub contiguous: usize,
    /// Why the enumeration stopped before the end (`partitions = "convex"` past
    /// `max_partitions`); `None` when every partition is there.
    pub stopped: Option<StopReason>,
}

/// Parses `max_partitions`: 1 to [`MAX_POINTS`].
pub fn parse_max_partitions(v: &str) -> Result<usize, String> {
    match v.trim().parse::<u64>() {
        Ok(x) if (1..=MAX_POINTS).contains(&x) => Ok(x as usize),
        _ => Err(format!("{:?} is impossible (expected 1 to {MAX_POINTS})", v.trim())),
    }
}

/// How each group's dataflow order is chosen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderChoice {
    /// The compiler's cost-guided default.
    Default,
    /// Each group under every legal order (at most `order_cap`), keeping the one with the
    /// fewest cycles (simulated; estimated when ranking by estimate). Groups are independent,
    /// so this is the best combination at the cost of a sum, not a product, of orders.
    Best,
    /// A named permutation, applied to every group whose index names it names exactly; other
    /// groups use their default.
    Named(Vec<String>),
}

impl fmt::Display for OrderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderChoice::Default => f.write_str("default"),
            OrderChoice::Best => f.write_str("best"),
            OrderChoice::Named(o) => f.write_str(&o.join(",")),
        }
    }
}

impl OrderChoice {
    /// `default`, `best` or index names such as `i,k,j`.
    pub fn parse(text: &str) -> Result<OrderChoice, String> {
        match text.trim() {
            "default" => Ok(OrderChoice::Default),
            "best" | "all" => Ok(OrderChoice::Best),
            t => {
                let names: Vec<String> = t.split(',').map(|s| s.trim().to_string()).collect();
                if names.iter().any(|n| n.is_empty() || !n.chars().all(|c| c.is_alphanumeric() || c == '_')) {
                    return Err(format!("order {t:?}: expected default, best, or index names such as i,k,j"));
                }
                Ok(OrderChoice::Named(names))
            }
        }
    }
}

/// Parallel lanes of a point: `(index, lanes)` pairs, sorted by index (the order in which
/// they are written does not change the graph: the compiler parallelizes innermost first).
/// Empty: no lanes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lanes(pub Vec<(String, u32)>);

impl Lanes {
    /// `none`, or `INDEX=LANES` items separated by `,` or `;` (`h=4`, `h=2,i=2`): lane counts
    /// from 1 to [`MAX_LANES`], each index once.
    pub fn parse(text: &str) -> Result<Lanes, String> {
        let t = text.trim();
        if t == "none" {
            return Ok(Lanes::default());
        }
        let mut out: Vec<(String, u32)> = Vec::new();
        for item in t.split([',', ';']) {
            let item = item.trim();
            let Some((index, lanes)) = item.split_once('=') else {
                return Err(format!("{t:?}: expected none or INDEX=LANES items such as h=4,i=2, got {item:?}"));
            };
            let index = index.trim();
            if index.is_empty() || !index.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(format!("{t:?}: {index:?} is not an index name"));
            }
            match lanes.trim().parse::<u32>() {
                Ok(l) if (1..=MAX_LANES).contains(&l) => {
                    if out.iter().any(|(i, _)| i == index) {
                        return Err(format!("{t:?}: index {index} is given twice"));
                    }
                    out.push((index.to_string(), l));
                }
                _ => {
                    return Err(format!(
                        "{t:?}: lane count {:?} of {index} is impossible (expected 1 to {MAX_LANES})",
                        lanes.trim()
                    ))
                }
            }
        }
        out.sort();
        Ok(Lanes(out))
    }

    /// No lanes.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// Every index named, for checking them against the program's.
    pub fn indices(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(i, _)| i.as_str())
    }
}

impl fmt::Display for Lanes {
    /// `none` or `h=4,i=2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let items: Vec<String> = self.0.iter().map(|(i, l)| format!("{i}={l}")).collect();
        f.write_str(&items.join(","))
    }
}

/// Parses a block size: `none` (scalar) or an integer from 2 to [`MAX_BLOCK`]. Whether it
/// divides the blocked dimensions depends on the group; a group it does not divide fails like
/// `run --block` does.
pub fn parse_block(v: &str) -> Result<Option<usize>, String> {
    match v.trim() {
        "none" => Ok(None),
        t => match t.parse::<usize>() {
            Ok(b) if (2..=MAX_BLOCK).contains(&b) => Ok(Some(b)),
            _ => Err(format!("{t:?} is impossible (expected \"none\" or a block size from 2 to {MAX_BLOCK})")),
        },
    }
}

/// How a point transforms each group's graph after lowering: parallel lanes and sparsity
/// blocking (both as requested; which groups they fit is decided per group).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    /// Lanes requested for every group that iterates their index.
    pub par: Lanes,
    /// Block size requested for every group with a sparse operand (`None`: scalar).
    pub block: Option<usize>,
}

impl Variant {
    /// Neither lanes nor blocking: what a sweep without these axes evaluates.
    pub fn is_plain(&self) -> bool {
        self.par.is_none() && self.block.is_none()
    }
}

impl fmt::Display for Variant {
    /// ` par=h=4 block=16`, each part only when set (empty when plain): what a point's key
    /// appends, so that keys of spaces without these axes are unchanged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.par.is_none() {
            write!(f, " par={}", self.par)?;
        }
        if let Some(b) = self.block {
            write!(f, " block={b}")?;
        }
        Ok(())
    }
}

/// Channel capacity of a machine point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Depth {
    /// Unbounded channels.
    Unbounded,
    /// This many tokens per channel (≥ 1).
    Tokens(usize),
}

/// Off-chip memory model of a machine point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemoryMode {
    /// Ideal memory (accesses cost nothing).
    Ideal,
    /// The hardware's memory model.
    Model,
}

/// One machine: a hardware preset or file with optional overrides (`None` keeps the
/// hardware's own value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Machine {
    /// Hardware preset (`ideal`, `comal`, `rda`) or TOML file.
    pub hw: String,
    /// Channel capacity.
    pub fifo_depth: Option<Depth>,
    /// Memory model on or off.
    pub memory: Option<MemoryMode>,
    /// Memory channels.
    pub channels: Option<u32>,
    /// Peak bytes per cycle of one memory channel.
    pub bandwidth: Option<u32>,
}

impl Machine {
    /// The `key=value` hardware overrides this machine applies after its preset, in the
    /// syntax of `fuseflow run --set`.
    pub fn overrides(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.fifo_depth {
            Some(Depth::Unbounded) => out.push("fifo_depth=unbounded".to_string()),
            Some(Depth::Tokens(d)) => out.push(format!("fifo_depth={d}")),
            None => {}
        }
        match self.memory {
            Some(MemoryMode::Ideal) => out.push("memory.enabled=false".to_string()),
            Some(MemoryMode::Model) => out.push("memory.enabled=true".to_string()),
            None => {}
        }
        if let Some(c) = self.channels {
            out.push(format!("memory.channels={c}"));
        }
        if let Some(b) = self.bandwidth {
            out.push(format!("memory.bytes_per_cycle={b}"));
        }
        out
    }
}

impl fmt::Display for Machine {
    /// `rda fifo_depth=16 memory.channels=8`: the hardware and its overrides.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hw)?;
        for o in self.overrides() {
            write!(f, " {o}")?;
        }
        Ok(())
    }
}

/// A design space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// Partitions of the user statements.
    pub partitions: Partitions,
    /// Most partitions [`Partitions::Convex`] enumerates; past it the enumeration stops and
    /// says why ([`PartitionCount::stopped`]).
    pub max_partitions: usize,
    /// Order choices (each a separate slice of points).
    pub orders: Vec<OrderChoice>,
    /// Most candidate orders per group under [`OrderChoice::Best`].
    pub order_cap: usize,
    /// Parallel lanes (each a separate slice of points; `none` first by default).
    pub par: Vec<Lanes>,
    /// Block sizes (`None`: scalar).
    pub block: Vec<Option<usize>>,
    /// Hardware presets or files.
    pub hw: Vec<String>,
    /// Channel capacities (`None`: the hardware's).
    pub fifo_depth: Vec<Option<Depth>>,
    /// Memory models (`None`: the hardware's).
    pub memory: Vec<Option<MemoryMode>>,
    /// Memory channel counts (`None`: the hardware's).
    pub channels: Vec<Option<u32>>,
    /// Bytes per cycle of one memory channel (`None`: the hardware's).
    pub bandwidth: Vec<Option<u32>>,
}

impl Default for Space {
    /// Every partition, default orders, no lanes, no blocking, the `ideal` machine.
    fn default() -> Space {
        Space {
            partitions: Partitions::All,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            orders: vec![OrderChoice::Default],
            order_cap: 8,
            par: vec![Lanes::default()],
            block: vec![None],
            hw: vec!["ideal".to_string()],
            fifo_depth: vec![None],
            memory: vec![None],
            channels: vec![None],
            bandwidth: vec![None],
        }
    }
}

/// One point of a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Position in the space's enumeration (see the module documentation).
    pub id: u64,
    /// The fusion partition.
    pub partition: Partition,
    /// How orders are chosen.
    pub order: OrderChoice,
    /// Lanes and blocking.
    pub variant: Variant,
    /// The machine.
    pub machine: Machine,
}

impl Point {
    /// The point's configuration as one stable string: what a results log is keyed by
    /// (`fusion=0-3,4-10 order=default hw=ideal`, then ` par=h=4` and ` block=16` when set).
    pub fn key(&self) -> String {
        format!("fusion={} order={} hw={}{}", self.partition, self.order, self.machine, self.variant)
    }
}

/// Where a value came from, for error messages: `FILE:LINE:COL: axis X` or `--flag`.
fn at(file: &str, text: &str, key: &str) -> String {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                let col = line.len() - t.len() + 1;
                return format!("{file}:{}:{col}: axis `{key}`", i + 1);
            }
        }
    }
    format!("{file}: axis `{key}`")
}

/// The values of an axis: one value or an array of them.
fn values(v: &toml::Value) -> Vec<toml::Value> {
    match v {
        toml::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(_) => "a date".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Parses one depth value: a positive integer or `"unbounded"` (or `"hw"`, the hardware's).
pub fn parse_depth(v: &str) -> Result<Option<Depth>, String> {
    match v.trim() {
        "unbounded" => Ok(Some(Depth::Unbounded)),
        "hw" => Ok(None),
        t => match t.parse::<u64>() {
            Ok(d) if (1..=1 << 30).contains(&d) => Ok(Some(Depth::Tokens(d as usize))),
            _ => Err(format!("{t:?} is impossible (expected a depth from 1 to 1073741824, \"unbounded\" or \"hw\")")),
        },
    }
}

/// Parses a memory mode: `ideal`, `model` or `hw` (the hardware's).
pub fn parse_memory(v: &str) -> Result<Option<MemoryMode>, String> {
    match v.trim() {
        "ideal" => Ok(Some(MemoryMode::Ideal)),
        "model" => Ok(Some(MemoryMode::Model)),
        "hw" => Ok(None),
        t => Err(format!("{t:?} is impossible (expected \"ideal\", \"model\" or \"hw\")")),
    }
}

/// Parses a memory channel count (1 to 4096) or bytes per cycle of a channel (1 to 65536),
/// or `hw`.
fn parse_count(v: &str, max: u64) -> Result<Option<u32>, String> {
    match v.trim() {
        "hw" => Ok(None),
        t => match t.parse::<u64>() {
            Ok(x) if (1..=max).contains(&x) => Ok(Some(x as u32)),
            _ => Err(format!("{t:?} is impossible (expected an integer from 1 to {max}, or \"hw\")")),
        },
    }
}

/// Parses a memory channel count (`hw` = the hardware's).
pub fn parse_channels(v: &str) -> Result<Option<u32>, String> {
    parse_count(v, 4096)
}

/// Parses the bytes per cycle of one memory channel (`hw` = the hardware's).
pub fn parse_bandwidth(v: &str) -> Result<Option<u32>, String> {
    parse_count(v, 65536)
}

/// A TOML scalar as the text the flag parsers take.
fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        other => Err(format!("{} is impossible here (expected a string or an integer)", describe(other))),
    }
}

impl Space {
    /// Reads a space file (TOML). Every key is an axis from [`AXES`]; an unknown key or an
    /// impossible value is an error naming the file, the line and the axis. `n` is the
    /// program's number of user statements. Whether `par` names indices of the program is
    /// checked against the program ([`Space::check_indices`]).
    pub fn from_toml(file: &str, text: &str, n: usize) -> Result<Space, ExploreError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let msg = e.message().to_string();
            let loc = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
            });
            ExploreError::Space(match loc {
                Some((l, c)) => format!("{file}:{l}:{c}: {msg}"),
                None => format!("{file}: {msg}"),
            })
        })?;
        let mut space = Space::default();
        for (key, v) in &table {
            let here = at(file, text, key);
            let err = |m: String| ExploreError::Space(format!("{here}: {m}"));
            match key.as_str() {
                "partitions" => space.partitions = Space::parse_partitions(&values(v), n).map_err(err)?,
                "max_partitions" => match v {
                    toml::Value::Integer(i) if (1..=MAX_POINTS as i64).contains(i) => {
                        space.max_partitions = *i as usize
                    }
                    other => {
                        return Err(err(format!("{} is impossible (expected 1 to {MAX_POINTS})", describe(other))))
                    }
                },
                "orders" => {
                    space.orders = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| OrderChoice::parse(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "order_cap" => match v {
                    toml::Value::Integer(i) if (1..=1000).contains(i) => space.order_cap = *i as usize,
                    other => return Err(err(format!("{} is impossible (expected 1 to 1000)", describe(other)))),
                },
                "par" => {
                    space.par = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| Lanes::parse(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "block" => {
                    space.block = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| parse_block(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "hw" => space.hw = values(v).iter().map(scalar).collect::<Result<_, _>>().map_err(err)?,
                "fifo_depth" => {
                    space.fifo_depth = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| parse_depth(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "memory" => {
                    space.memory = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| parse_memory(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "channels" => {
                    space.channels = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| parse_channels(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                "bandwidth" => {
                    space.bandwidth = values(v)
                        .iter()
                        .map(|x| scalar(x).and_then(|s| parse_bandwidth(&s)))
                        .collect::<Result<_, _>>()
                        .map_err(err)?
                }
                other => {
                    let loc = here.strip_suffix(&format!(": axis `{other}`")).unwrap_or(&here);
                    return Err(ExploreError::Space(format!(
                        "{loc}: unknown axis `{other}` (axes: {})",
                        AXES.join(", ")
                    )));
                }
            }
        }
        space.check().map_err(|m| ExploreError::Space(format!("{file}: {m}")))?;
        Ok(space)
    }

    /// Sets axis `name` (a key of [`AXES`]) from values as text, as the flags and the Python
    /// package give them: `partitions` takes `all` or partitions in `--fusion` syntax (one per
    /// value), `order_cap` exactly one value, every other axis one value per entry. An empty
    /// list leaves the axis as it is. Errors say which value is impossible (without naming
    /// the axis: the caller knows where it came from).
    pub fn set_axis(&mut self, name: &str, vals: &[String], n: usize) -> Result<(), String> {
        fn each<T>(vals: &[String], f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
            vals.iter().map(|v| f(v)).collect()
        }
        if vals.is_empty() {
            return Ok(());
        }
        match name {
            "partitions" => {
                self.partitions = match vals {
                    [v] if v.trim() == "all" => Partitions::All,
                    [v] if v.trim() == "convex" => Partitions::Convex,
                    _ => Partitions::List(each(vals, |v| Partition::parse(v, n))?),
                }
            }
            "max_partitions" => match vals {
                [v] => self.max_partitions = parse_max_partitions(v)?,
                _ => return Err("takes one value".into()),
            },
            "orders" => self.orders = each(vals, OrderChoice::parse)?,
            "order_cap" => match vals {
                [v] => match v.trim().parse::<usize>() {
                    Ok(c) if (1..=1000).contains(&c) => self.order_cap = c,
                    _ => return Err(format!("{:?} is impossible (expected 1 to 1000)", v.trim())),
                },
                _ => return Err("takes one value".into()),
            },
            "par" => self.par = each(vals, Lanes::parse)?,
            "block" => self.block = each(vals, parse_block)?,
            "hw" => self.hw = vals.iter().map(|h| h.trim().to_string()).collect(),
            "fifo_depth" => self.fifo_depth = each(vals, parse_depth)?,
            "memory" => self.memory = each(vals, parse_memory)?,
            "channels" => self.channels = each(vals, parse_channels)?,
            "bandwidth" => self.bandwidth = each(vals, parse_bandwidth)?,
            other => return Err(format!("unknown axis `{other}` (axes: {})", AXES.join(", "))),
        }
        Ok(())
    }

    /// `"all"`, `"convex"`, or a list of partitions in `--fusion` syntax.
    fn parse_partitions(vals: &[toml::Value], n: usize) -> Result<Partitions, String> {
        if let [toml::Value::String(s)] = vals {
            match s.trim() {
                "all" => return Ok(Partitions::All),
                "convex" => return Ok(Partitions::Convex),
                _ => {}
            }
        }
        let list: Vec<Partition> =
            vals.iter().map(|v| scalar(v).and_then(|s| Partition::parse(&s, n))).collect::<Result<_, _>>()?;
        Ok(Partitions::List(list))
    }

    /// Parses the `--partitions` flag: `all`, `convex` or partitions separated by `;`.
    pub fn partitions_flag(text: &str, n: usize) -> Result<Partitions, String> {
        match text.trim() {
            "all" => return Ok(Partitions::All),
            "convex" => return Ok(Partitions::Convex),
            _ => {}
        }
        Ok(Partitions::List(text.split(';').map(|t| Partition::parse(t, n)).collect::<Result<_, _>>()?))
    }

    /// Every axis has at least one value, and the space is not absurdly large.
    pub fn check(&self) -> Result<(), String> {
        let empty = [
            ("partitions", matches!(&self.partitions, Partitions::List(l) if l.is_empty())),
            ("orders", self.orders.is_empty()),
            ("par", self.par.is_empty()),
            ("block", self.block.is_empty()),
            ("hw", self.hw.is_empty()),
            ("fifo_depth", self.fifo_depth.is_empty()),
            ("memory", self.memory.is_empty()),
            ("channels", self.channels.is_empty()),
            ("bandwidth", self.bandwidth.is_empty()),
        ];
        if let Some((axis, _)) = empty.iter().find(|(_, e)| *e) {
            return Err(format!("axis `{axis}` has no values"));
        }
        Ok(())
    }

    /// The machines, in enumeration order (hw, fifo depth, memory, channels, bandwidth).
    pub fn machines(&self) -> Vec<Machine> {
        let mut out = Vec::new();
        for hw in &self.hw {
            for &fifo_depth in &self.fifo_depth {
                for &memory in &self.memory {
                    for &channels in &self.channels {
                        for &bandwidth in &self.bandwidth {
                            out.push(Machine { hw: hw.clone(), fifo_depth, memory, channels, bandwidth });
                        }
                    }
                }
            }
        }
        out
    }

    /// The partitions of the statements of `dag`, in enumeration order (`All`: by cut mask,
    /// so the single group comes first and every statement alone last; `Convex`: as
    /// [`Dag::convex_partitions`] places statements, the same two at the ends; a list: as
    /// written, each checked against the dependences and its groups put in execution order),
    /// with their count.
    pub fn partition_list(&self, dag: &Dag) -> Result<(Vec<Partition>, PartitionCount), ExploreError> {
        let n = dag.len();
        let (list, stopped) = match &self.partitions {
            Partitions::All => {
                if n > 23 {
                    return Err(ExploreError::Space(format!(
                        "partitions = \"all\" of {n} statements is 2^{} points: list the partitions to visit",
                        n - 1
                    )));
                }
                let list =
                    if n == 0 { Vec::new() } else { (0..1u64 << (n - 1)).map(|c| Partition::new(n, c)).collect() };
                (list, None)
            }
            Partitions::Convex => {
                let c = dag.convex_partitions(self.max_partitions).map_err(ExploreError::Space)?;
                let list = c.partitions.into_iter().map(|groups| Partition { n, groups }).collect();
                (list, c.stopped)
            }
            Partitions::List(l) => {
                let list =
                    l.iter().map(|p| p.ordered(dag)).collect::<Result<Vec<_>, _>>().map_err(ExploreError::Space)?;
                (list, None)
            }
        };
        let count = PartitionCount {
            partitions: list.len(),
            contiguous: list.iter().filter(|p| p.is_contiguous()).count(),
            stopped,
        };
        Ok((list, count))
    }

    /// Every point, numbered (machine, then order, then lanes, then block size, then
    /// partition), for a program whose statements depend on each other as `dag` says.
    pub fn points(&self, dag: &Dag) -> Result<Vec<Point>, ExploreError> {
        Ok(self.enumerate(dag)?.0)
    }

    /// [`Space::points`] with the count of partitions behind them.
    pub fn enumerate(&self, dag: &Dag) -> Result<(Vec<Point>, PartitionCount), ExploreError> {
        let (partitions, count) = self.partition_list(dag)?;
        let machines = self.machines();
        let total = [machines.len(), self.orders.len(), self.par.len(), self.block.len()]
            .iter()
            .fold(partitions.len() as u64, |acc, &k| acc.saturating_mul(k as u64));
        if total > MAX_POINTS {
            return Err(ExploreError::Space(format!(
                "the space has {total} points, over the limit of {MAX_POINTS}: narrow an axis"
            )));
        }
        let mut out = Vec::with_capacity(total as usize);
        for m in &machines {
            for o in &self.orders {
                for par in &self.par {
                    for &block in &self.block {
                        let variant = Variant { par: par.clone(), block };
                        for p in &partitions {
                            out.push(Point {
                                id: out.len() as u64,
                                partition: p.clone(),
                                order: o.clone(),
                                variant: variant.clone(),
                                machine: m.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok((out, count))
    }

    /// Checks that every index the `par` axis names is one the program iterates (`indices`,
    /// sorted); the error names the value and the index, and lists the program's indices.
    pub fn check_indices(&self, indices: &[String]) -> Result<(), String> {
        for lanes in &self.par {
            if let Some(bad) = lanes.indices().find(|i| !indices.iter().any(|k| k == i)) {
                return Err(format!(
                    "value \"{lanes}\": no statement iterates index {bad} (the program's indices: {})",
                    indices.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Where axis `key` is set in a space file's text: `FILE:LINE:COL: axis `KEY`` (for
    /// errors found after reading the file, such as an index the program does not have).
    pub fn locate(file: &str, text: &str, key: &str) -> String {
        at(file, text, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn all_partitions_of_four_statements() {
        let s = Space::default();
        let list: Vec<String> = s.partition_list(&Dag::chain(4)).unwrap().0.iter().map(|p| p.to_string()).collect();
        assert_eq!(list.len(), 8);
        assert_eq!(list[0], "0-3");
        assert_eq!(list[7], "0,1,2,3");
        assert!(list.contains(&"0-1,2-3".to_string()));
        let mut dedup = list.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 8, "partitions are distinct");
    }

    proptest! {
        #[test]
        fn partitions_cover_statements_once_and_round_trip(n in 1usize..20, cuts in any::<u64>()) {
            let p = Partition::new(n, cuts);
            let groups = p.groups();
            let flat: Vec<usize> = groups.iter().flatten().copied().collect();
            prop_assert_eq!(flat, (0..n).collect::<Vec<_>>());
            let mask = if n <= 1 { 0 } else { (1u64 << (n - 1)) - 1 };
            prop_assert_eq!(groups.len() as u32, (cuts & mask).count_ones() + 1);
            prop_assert!(p.is_contiguous());
            prop_assert_eq!(Partition::parse(&p.to_string(), n).unwrap(), p.clone());
            prop_assert_eq!(p.ordered(&Dag::chain(n)).unwrap(), p);
        }
    }

    proptest! {
        #[test]
        fn lanes_print_and_parse_back_whatever_the_order_written(
            items in proptest::collection::btree_map("[a-z][a-z0-9_]{0,3}", 1u32..=MAX_LANES, 0..4),
            reverse in any::<bool>(),
        ) {
            let mut written: Vec<String> = items.iter().map(|(i, l)| format!("{i}={l}")).collect();
            if reverse {
                written.reverse();
            }
            let text = if written.is_empty() { "none".to_string() } else { written.join(", ") };
            let lanes = Lanes::parse(&text).unwrap();
            prop_assert_eq!(lanes.0.len(), items.len());
            prop_assert_eq!(Lanes::parse(&lanes.to_string()).unwrap(), lanes.clone());
            let v = Variant { par: lanes, block: None };
            prop_assert_eq!(v.is_plain(), items.is_empty());
        }
    }

    #[test]
    fn parse_rejects_gaps_overlaps_and_out_of_range() {
        assert!(Partition::parse("0-2,4-5", 6).unwrap_err().contains("statement 3 is in no group"));
        assert!(Partition::parse("0-2,2-5", 6).unwrap_err().contains("statement 2 is in two groups"));
        assert!(Partition::parse("0-2,3-x", 6).unwrap_err().contains("joined by +"));
        // Groups of statements that are not adjacent: legal only where the dependences allow.
        let p = Partition::parse("0+2, 1", 3).unwrap();
        assert_eq!(p.to_string(), "0+2,1", "as written until ordered");
        assert!(!p.is_contiguous());
        let e = p.ordered(&Dag::chain(3)).unwrap_err();
        assert!(e.starts_with("partition 0+2,1: group 0+2 is not convex: the path 0 → 1 → 2"), "{e}");
        let independent = Dag::new(vec![vec![], vec![], vec![1]]).unwrap();
        assert_eq!(p.ordered(&independent).unwrap().to_string(), "1,0+2", "run in the DAG's order");
        assert_eq!(Partition::parse("2,0-1", 3).unwrap().ordered(&Dag::chain(3)).unwrap().to_string(), "0-1,2");
        assert!(Partition::parse("0-7", 6).unwrap_err().contains("does not exist"));
        assert!(Partition::parse("0-3", 6).unwrap_err().contains("in no group"));
        assert_eq!(Partition::parse("unfused", 3).unwrap().to_string(), "0,1,2");
        assert_eq!(Partition::parse("full", 3).unwrap().to_string(), "0-2");
    }

    #[test]
    fn space_file_axes_and_errors() {
        let s = Space::from_toml(
            "s.toml",
            "partitions = [\"0-1,2\", \"full\"]\norders = [\"default\", \"best\"]\nhw = [\"ideal\", \"rda\"]\nfifo_depth = [\"unbounded\", 4]\n",
            3,
        )
        .unwrap();
        let pts = s.points(&Dag::chain(3)).unwrap();
        assert_eq!(pts.len(), 2 * 2 * 2 * 2);
        assert_eq!(pts[0].key(), "fusion=0-1,2 order=default hw=ideal fifo_depth=unbounded");
        assert_eq!(pts.last().map(|p| p.id), Some(15));
        let e = Space::from_toml("s.toml", "hw = \"ideal\"\nbogus = 3\n", 3).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:2:1: unknown axis `bogus`"), "{e}");
        let e = Space::from_toml("s.toml", "fifo_depth = [0]\n", 3).unwrap_err().to_string();
        assert!(e.contains("axis `fifo_depth`") && e.contains("\"0\" is impossible"), "{e}");
        let e = Space::from_toml("s.toml", "channels = 5000\n", 3).unwrap_err().to_string();
        assert!(e.contains("impossible"), "{e}");
        let e = Space::from_toml("s.toml", "hw = []\n", 3).unwrap_err().to_string();
        assert!(e.contains("no values"), "{e}");
        let e = Space::from_toml("s.toml", "hw = [\n", 3).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:"), "{e}");
    }

    #[test]
    fn par_and_block_axes_number_after_order_and_before_partitions() {
        let s = Space::from_toml(
            "s.toml",
            "partitions = [\"0-1,2\", \"full\"]\npar = [\"none\", \"i=4\", \"j=2; h=2\"]\nblock = [\"none\", 16]\n",
            3,
        )
        .unwrap();
        assert_eq!(s.par[2], Lanes(vec![("h".into(), 2), ("j".into(), 2)]), "sorted by index");
        let pts = s.points(&Dag::chain(3)).unwrap();
        assert_eq!(pts.len(), 2 * 3 * 2);
        let keys: Vec<String> = pts.iter().map(Point::key).collect();
        assert_eq!(keys[0], "fusion=0-1,2 order=default hw=ideal");
        assert_eq!(keys[1], "fusion=0-2 order=default hw=ideal");
        assert_eq!(keys[2], "fusion=0-1,2 order=default hw=ideal block=16");
        assert_eq!(keys[4], "fusion=0-1,2 order=default hw=ideal par=i=4");
        assert_eq!(keys[11], "fusion=0-2 order=default hw=ideal par=h=2,j=2 block=16");
        assert!(pts.iter().enumerate().all(|(i, p)| p.id == i as u64));
        // Without the new axes, ids and keys are those of a space that never had them.
        let plain = Space { partitions: s.partitions.clone(), ..Space::default() };
        let old: Vec<String> = plain.points(&Dag::chain(3)).unwrap().iter().map(Point::key).collect();
        assert_eq!(old, vec![keys[0].clone(), keys[1].clone()]);
        assert_eq!(Lanes::parse("i=4,h=2").unwrap().to_string(), "h=2,i=4");
        assert_eq!(Lanes::parse(" none ").unwrap().to_string(), "none");
    }

    #[test]
    fn impossible_par_and_block_values_are_refused_in_one_line() {
        let cases = [
            (
                "par = \"i=0\"\n",
                "s.toml:1:1: axis `par`: \"i=0\": lane count \"0\" of i is impossible (expected 1 to 1024)",
            ),
            ("par = [\"none\", \"i=2000\"]\n", "lane count \"2000\" of i is impossible"),
            ("par = \"i\"\n", "expected none or INDEX=LANES"),
            ("par = \"i=2,i=4\"\n", "index i is given twice"),
            ("par = \"i-j=2\"\n", "\"i-j\" is not an index name"),
            ("par = 4\n", "\"4\": expected none or INDEX=LANES"),
            (
                "hw = \"ideal\"\nblock = [16, 1]\n",
                "s.toml:2:1: axis `block`: \"1\" is impossible (expected \"none\" or a block size from 2 to 4096)",
            ),
            ("block = 0\n", "\"0\" is impossible"),
            ("block = \"big\"\n", "\"big\" is impossible"),
            ("block = []\n", "axis `block` has no values"),
            ("par = []\n", "axis `par` has no values"),
        ];
        for (text, want) in cases {
            let e = Space::from_toml("s.toml", text, 3).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let s = Space::from_toml("s.toml", "par = [\"none\", \"i=2\", \"q=4\"]\n", 3).unwrap();
        let idx = vec!["i".to_string(), "j".to_string(), "k".to_string()];
        let e = s.check_indices(&idx).unwrap_err();
        assert_eq!(e, "value \"q=4\": no statement iterates index q (the program's indices: i, j, k)");
        assert_eq!(Space::locate("s.toml", "\n  par = []", "par"), "s.toml:2:3: axis `par`");
        assert!(Space { par: vec![Lanes::parse("j=2").unwrap()], ..Space::default() }.check_indices(&idx).is_ok());
    }

    #[test]
    fn axes_set_from_text_as_flags_give_them() {
        let mut s = Space::default();
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        s.set_axis("partitions", &v(&["full", "0,1-2"]), 3).unwrap();
        s.set_axis("par", &v(&["none", "i=2"]), 3).unwrap();
        s.set_axis("block", &v(&["none", "4"]), 3).unwrap();
        s.set_axis("hw", &[], 3).unwrap();
        s.set_axis("order_cap", &v(&["3"]), 3).unwrap();
        assert_eq!(s.points(&Dag::chain(3)).unwrap().len(), 2 * 2 * 2);
        assert_eq!((s.order_cap, s.hw.clone()), (3, vec!["ideal".to_string()]));
        assert!(s.set_axis("block", &v(&["1"]), 3).unwrap_err().contains("\"1\" is impossible"));
        assert!(s.set_axis("order_cap", &v(&["0"]), 3).unwrap_err().contains("impossible"));
        assert!(s.set_axis("lanes", &v(&["1"]), 3).unwrap_err().starts_with("unknown axis `lanes`"));
        s.set_axis("partitions", &v(&["all"]), 3).unwrap();
        assert_eq!(s.partitions, Partitions::All);
    }

    #[test]
    fn convex_partitions_from_the_file_and_flags_with_their_limit() {
        // A diamond: 0 → 1, 0 → 2, {1, 2} → 3; 11 legal partitions, 8 of them ranges.
        let diamond = Dag::new(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        let s = Space::from_toml("s.toml", "partitions = \"convex\"\n", 4).unwrap();
        assert_eq!((&s.partitions, s.max_partitions), (&Partitions::Convex, DEFAULT_MAX_PARTITIONS));
        let (pts, count) = s.enumerate(&diamond).unwrap();
        assert_eq!((pts.len(), count.partitions, count.contiguous, count.stopped), (11, 11, 8, None));
        assert_eq!(pts[0].key(), "fusion=0-3 order=default hw=ideal");
        assert_eq!(pts[10].key(), "fusion=0,1,2,3 order=default hw=ideal");
        assert!(pts.iter().any(|p| p.key() == "fusion=0,1-2,3 order=default hw=ideal"));
        let few = Space::from_toml("s.toml", "partitions = \"convex\"\nmax_partitions = 4\n", 4).unwrap();
        let (pts, count) = few.enumerate(&diamond).unwrap();
        assert_eq!((pts.len(), count.stopped), (4, Some(StopReason::PartitionLimit(4))));
        let e = Space::from_toml("s.toml", "max_partitions = 0\n", 4).unwrap_err().to_string();
        assert!(e.starts_with("s.toml:1:1: axis `max_partitions`: 0 is impossible"), "{e}");
        let mut f = Space::default();
        f.set_axis("partitions", &["convex".to_string()], 4).unwrap();
        f.set_axis("max_partitions", &["7".to_string()], 4).unwrap();
        assert_eq!((f.partitions.clone(), f.max_partitions), (Partitions::Convex, 7));
        assert!(f.set_axis("max_partitions", &["x".to_string()], 4).unwrap_err().contains("\"x\" is impossible"));
        assert_eq!(Space::partitions_flag(" convex ", 4).unwrap(), Partitions::Convex);
        // A listed partition that is illegal for the dependences is refused naming the group.
        let listed = Space { partitions: Space::partitions_flag("0+3,1-2", 4).unwrap(), ..Space::default() };
        let e = listed.points(&diamond).unwrap_err().to_string();
        assert!(e.contains("partition 0+3,1-2: group 0+3 is not convex"), "{e}");
        let fine = Space { partitions: Space::partitions_flag("1-2,0,3", 4).unwrap(), ..Space::default() };
        assert_eq!(fine.points(&diamond).unwrap()[0].key(), "fusion=0,1-2,3 order=default hw=ideal");
    }

    #[test]
    fn machine_overrides_in_set_syntax() {
        let m = Machine {
            hw: "rda".into(),
            fifo_depth: Some(Depth::Tokens(8)),
            memory: Some(MemoryMode::Model),
            channels: Some(4),
            bandwidth: None,
        };
        assert_eq!(m.to_string(), "rda fifo_depth=8 memory.enabled=true memory.channels=4");
    }
}

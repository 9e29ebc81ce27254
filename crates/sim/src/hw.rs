//! Hardware configurations: per-primitive timing, channel capacities, clock and off-chip
//! memory, as presets (`ideal`, `comal`, `rda`), TOML files and `key=value` overrides.
//!
//! Every key is documented in `docs/hardware.md`. A configuration file is a TOML document
//! whose keys are the dotted keys below; keys it leaves out keep the value of its `base`
//! preset (default `ideal`):
//!
//! ```toml
//! base = "rda"          # optional: start from a preset
//! name = "my-rda"
//! clock_mhz = 1000.0
//! fifo_depth = 16       # or "unbounded"
//!
//! [input_fifo_depth]    # capacity of the input channels of every node of a kind
//! spacc = 64
//!
//! [timing]              # defaults for every primitive kind
//! ii = 1
//! latency = 1
//!
//! [timing.scan_compressed]
//! latency = 2
//!
//! [memory]
//! enabled = true
//! channels = 16
//! ```
//!
//! Errors are one line and name the key (or the line and column of a syntax error).

use std::collections::BTreeMap;
use std::path::Path;

use toml::Value;

use crate::memory::{MemoryConfig, Sharing};
use crate::tile::{Cost, TileCosts, TILE_UNITS};
use crate::{Quirks, SimConfig, Timing, DEFAULT_CLOCK_MHZ};

/// Primitive kinds (the values of `Op::kind_name`), the keys of per-kind settings.
pub const KINDS: [&str; 18] = [
    "root",
    "scan_compressed",
    "scan_dense",
    "range",
    "repsig",
    "repeat",
    "intersect",
    "union",
    "locate",
    "array",
    "alu",
    "reduce",
    "spacc",
    "crddrop",
    "level_write",
    "val_write",
    "fork",
    "gather",
];

/// Names accepted by [`HwConfig::preset`].
pub const PRESETS: [&str; 3] = ["ideal", "comal", "rda"];

const QUIRK_KEYS: &str = "spacc_burst, crddrop_free_inner, reduce_stop_with_value";
const MEMORY_KEYS: &str = "enabled, channels, bytes_per_cycle, latency, startup, queue_depth, granularity, sharing";
const TOP_KEYS: &str = "base, name, clock_mhz, fifo_depth, fifo_sizing, input_fifo_depth.<kind>, timing.ii, \
                        timing.latency, timing.<kind>.ii, timing.<kind>.latency, timing.quirks.<name>, memory.<key>, \
                        tile.<unit>.ii, tile.<unit>.latency";

/// A bad configuration: one line, naming the key (or the syntax error's position).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct HwError {
    /// The dotted key at fault, when there is one.
    pub key: Option<String>,
    /// The whole message.
    pub message: String,
}

impl HwError {
    fn key(key: &str, message: impl std::fmt::Display) -> HwError {
        HwError { key: Some(key.to_string()), message: format!("key `{key}`: {message}") }
    }
    fn prefixed(self, prefix: &str) -> HwError {
        HwError { message: format!("{prefix}: {}", self.message), ..self }
    }
}

/// Timing of one primitive kind; `None` fields take the defaults of [`TimingConfig`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct KindTiming {
    /// Initiation interval in cycles: a node fires at most once every `ii` cycles.
    pub ii: Option<u64>,
    /// Output latency in cycles: a token sent by a fire at cycle `t` is visible at `t + latency`.
    pub latency: Option<u64>,
}

/// Primitive timing: defaults and per-kind overrides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimingConfig {
    /// Default initiation interval (cycles, ≥ 1).
    pub ii: u64,
    /// Default output latency (cycles, ≥ 1).
    pub latency: u64,
    /// Overrides by primitive kind (keys from [`KINDS`]).
    pub kinds: BTreeMap<String, KindTiming>,
    /// Comal's timing quirks (`timing.quirks.<name>`; on only in the `comal` preset).
    pub quirks: Quirks,
}

/// The `[memory]` section: the off-chip memory model and whether it is used.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemorySection {
    /// Whether the memory model is on; off = ideal memory (accesses cost nothing).
    pub enabled: bool,
    /// The model's parameters (kept when it is off, so that it can be switched on).
    #[serde(flatten)]
    pub params: MemoryConfig,
}

/// A hardware description. Convert it with [`HwConfig::to_sim_config`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HwConfig {
    /// Name, for reports.
    pub name: String,
    /// Clock frequency in MHz; used only to report simulated time.
    pub clock_mhz: f64,
    /// Capacity of every channel in tokens; `None` = unbounded.
    pub fifo_depth: Option<usize>,
    /// Capacity of the input channels of every node of a kind, overriding `fifo_depth`.
    pub input_fifo_depth: BTreeMap<String, Option<usize>>,
    /// Raise bounded channels to the depth the graph needs (see [`SimConfig::fifo_sizing`]).
    pub fifo_sizing: bool,
    /// Primitive timing.
    pub timing: TimingConfig,
    /// Off-chip memory.
    pub memory: MemorySection,
    /// Timing of the tile units of blocked runs (`[tile]`).
    pub tile: TileCosts,
}

impl Default for HwConfig {
    /// The `ideal` preset: today's [`SimConfig::default`] (II 1, latency 1, unbounded
    /// channels, ideal memory). Its memory parameters are `rda`'s, switched off.
    fn default() -> Self {
        HwConfig {
            name: "ideal".into(),
            clock_mhz: DEFAULT_CLOCK_MHZ,
            fifo_depth: None,
            input_fifo_depth: BTreeMap::new(),
            fifo_sizing: true,
            timing: TimingConfig { ii: 1, latency: 1, kinds: BTreeMap::new(), quirks: Quirks::default() },
            memory: MemorySection { enabled: false, params: rda_memory() },
            tile: TileCosts::default(),
        }
    }
}

fn rda_memory() -> MemoryConfig {
    MemoryConfig {
        channels: 16,
        bytes_per_cycle: 32,
        latency: 100,
        startup: 0,
        queue_depth: 16,
        granularity: 64,
        sharing: Sharing::Partition,
    }
}

fn every_kind(ii: u64, latency: u64) -> BTreeMap<String, KindTiming> {
    KINDS.iter().map(|k| (k.to_string(), KindTiming { ii: Some(ii), latency: Some(latency) })).collect()
}

/// A short description of a TOML value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(_) => "a date".into(),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

fn uint(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    match v {
        Value::Integer(i) if *i >= 0 && (*i as u64) >= min && (*i as u64) <= max => Ok(*i as u64),
        _ => Err(format!("expected an integer from {min} to {max}, got {}", describe(v))),
    }
}

fn depth(v: &Value) -> Result<Option<usize>, String> {
    match v {
        Value::String(s) if s == "unbounded" => Ok(None),
        Value::Integer(i) if (1..=1 << 30).contains(i) => Ok(Some(*i as usize)),
        _ => Err(format!("expected a depth from 1 to 1073741824 or \"unbounded\", got {}", describe(v))),
    }
}

fn kind(key: &str, k: &str) -> Result<String, HwError> {
    if KINDS.contains(&k) {
        Ok(k.to_string())
    } else {
        Err(HwError::key(key, format!("unknown primitive kind `{k}` (kinds: {})", KINDS.join(", "))))
    }
}

/// Line and column (1-based) of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Collects the leaves of a TOML table as `(dotted key, value)`; an empty table is a leaf.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(t) if !t.is_empty() => flatten(&key, t, out),
            _ => out.push((key, v.clone())),
        }
    }
}

impl HwConfig {
    /// A preset by name: `ideal`, `comal` or `rda` (see `docs/hardware.md`).
    pub fn preset(name: &str) -> Result<HwConfig, HwError> {
        match name {
            "ideal" => Ok(HwConfig::default()),
            "comal" => Ok(HwConfig::comal()),
            "rda" => Ok(HwConfig::rda()),
            _ => Err(HwError {
                key: None,
                message: format!("unknown hardware preset `{name}` (presets: {})", PRESETS.join(", ")),
            }),
        }
    }

    /// Comal's timing model (comal-interop.md §4) without its bugs: II 1 and latency 1 for
    /// every primitive with Comal's timing quirks ([`Quirks::comal`]), unbounded channels, and
    /// its HBM model with the start-up charged once per channel instead of on every request.
    pub fn comal() -> HwConfig {
        HwConfig {
            name: "comal".into(),
            clock_mhz: DEFAULT_CLOCK_MHZ,
            fifo_depth: None,
            input_fifo_depth: BTreeMap::new(),
            fifo_sizing: true,
            timing: TimingConfig { ii: 1, latency: 1, kinds: every_kind(1, 1), quirks: Quirks::comal() },
            memory: MemorySection {
                enabled: true,
                params: MemoryConfig {
                    channels: 8,
                    bytes_per_cycle: 2,
                    latency: 3,
                    startup: 14,
                    queue_depth: 8,
                    granularity: 4,
                    sharing: Sharing::Partition,
                },
            },
            tile: TileCosts::default(),
        }
    }

    /// A reconfigurable dataflow accelerator with HBM: II 1 and latency 1 for every
    /// primitive, 16-deep FIFOs, and 16 HBM channels of 32 bytes per cycle (512 GB/s at
    /// 1 GHz) with 100 cycles of latency, 64-byte requests and 16 queue slots per channel.
    pub fn rda() -> HwConfig {
        HwConfig {
            name: "rda".into(),
            clock_mhz: DEFAULT_CLOCK_MHZ,
            fifo_depth: Some(16),
            input_fifo_depth: BTreeMap::new(),
            fifo_sizing: true,
            timing: TimingConfig { ii: 1, latency: 1, kinds: every_kind(1, 1), quirks: Quirks::default() },
            memory: MemorySection { enabled: true, params: rda_memory() },
            tile: TileCosts::default(),
        }
    }

    /// A preset name or the path of a TOML file (what a `--hw` flag takes). A bare word that
    /// is neither a preset nor an existing file is reported as an unknown preset.
    pub fn from_spec(spec: &str) -> Result<HwConfig, HwError> {
        let bare = !spec.contains(['/', '\\', '.']);
        if PRESETS.contains(&spec) {
            HwConfig::preset(spec)
        } else if bare && !Path::new(spec).exists() {
            Err(HwError {
                key: None,
                message: format!(
                    "unknown hardware preset `{spec}` (presets: {}; or the path of a TOML file)",
                    PRESETS.join(", ")
                ),
            })
        } else {
            HwConfig::load(spec)
        }
    }

    /// Reads a TOML file; errors are prefixed with the path. A file without `name` is named
    /// after its stem.
    pub fn load(path: impl AsRef<Path>) -> Result<HwConfig, HwError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| HwError { key: None, message: format!("{shown}: cannot read: {e}") })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        HwConfig::parse(&text, stem).map_err(|e| e.prefixed(&shown))
    }

    /// Parses a TOML document (see the module documentation for its keys).
    pub fn from_toml_str(text: &str) -> Result<HwConfig, HwError> {
        HwConfig::parse(text, None).map_err(|e| e.prefixed("hardware config"))
    }

    fn parse(text: &str, default_name: Option<String>) -> Result<HwConfig, HwError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, col) = line_col(text, e.span().map_or(0, |s| s.start));
            let msg = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
            HwError { key: None, message: format!("line {line}, column {col}: {msg}") }
        })?;
        let mut cfg = match table.get("base") {
            None => HwConfig::default(),
            Some(Value::String(b)) => HwConfig::preset(b).map_err(|e| HwError::key("base", e.message))?,
            Some(v) => return Err(HwError::key("base", format!("expected a preset name, got {}", describe(v)))),
        };
        if let (Some(n), false) = (default_name, table.contains_key("name")) {
            cfg.name = n;
        }
        let mut leaves = Vec::new();
        flatten("", &table, &mut leaves);
        for (key, value) in leaves {
            if key != "base" {
                cfg.set(&key, &value)?;
            }
        }
        Ok(cfg)
    }

    /// Applies one `key=value` override (e.g. `fifo_depth=4`,
    /// `timing.scan_compressed.latency=2`, `memory.channels=16`, `memory.enabled=false`).
    /// The value is a TOML value; a bare word is taken as a string (`fifo_depth=unbounded`).
    pub fn apply_override(&mut self, assignment: &str) -> Result<(), HwError> {
        let err = |e: HwError| e.prefixed("hardware override");
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(err(HwError { key: None, message: format!("`{assignment}` is not key=value") }));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(err(HwError::key(key, "missing value")));
        }
        if key == "base" {
            return Err(err(HwError::key(key, "can only be set in a file")));
        }
        let value = match format!("v = {value}").parse::<toml::Table>() {
            Ok(mut t) => t.remove("v").unwrap_or(Value::String(value.into())),
            Err(_) => Value::String(value.into()),
        };
        self.set(key, &value).map_err(err)
    }

    /// Sets one dotted key.
    fn set(&mut self, key: &str, v: &Value) -> Result<(), HwError> {
        let bad = |msg: String| HwError::key(key, msg);
        let parts: Vec<&str> = key.split('.').collect();
        // An empty table is fine wherever a table is expected.
        if let Value::Table(t) = v {
            if t.is_empty() {
                return match parts.as_slice() {
                    ["timing" | "memory" | "input_fifo_depth" | "tile"] | ["timing", "quirks"] => Ok(()),
                    ["timing", k] => kind(key, k).map(|_| ()),
                    _ => Err(bad("expected a value, got an empty table".into())),
                };
            }
        }
        match parts.as_slice() {
            ["name"] => match v {
                Value::String(s) => self.name = s.clone(),
                _ => return Err(bad(format!("expected a string, got {}", describe(v)))),
            },
            ["clock_mhz"] => {
                let f = match v {
                    Value::Float(f) => *f,
                    Value::Integer(i) => *i as f64,
                    _ => f64::NAN,
                };
                if !(f.is_finite() && f > 0.0) {
                    return Err(bad(format!("expected a positive number of MHz, got {}", describe(v))));
                }
                self.clock_mhz = f;
            }
            ["fifo_depth"] => self.fifo_depth = depth(v).map_err(bad)?,
            ["fifo_sizing"] => match v {
                Value::Boolean(b) => self.fifo_sizing = *b,
                _ => return Err(bad(format!("expected true or false, got {}", describe(v)))),
            },
            ["input_fifo_depth", k] => {
                let k = kind(key, k)?;
                let d = depth(v).map_err(bad)?;
                self.input_fifo_depth.insert(k, d);
            }
            ["timing", "ii"] => self.timing.ii = uint(v, 1, 1 << 20).map_err(bad)?,
            ["timing", "latency"] => self.timing.latency = uint(v, 1, 1 << 20).map_err(bad)?,
            ["timing", k, field @ ("ii" | "latency")] => {
                let k = kind(key, k)?;
                let x = uint(v, 1, 1 << 20).map_err(bad)?;
                let entry = self.timing.kinds.entry(k).or_default();
                if *field == "ii" {
                    entry.ii = Some(x);
                } else {
                    entry.latency = Some(x);
                }
            }
            ["timing", "quirks", q] => {
                let on = match v {
                    Value::Boolean(b) => *b,
                    _ => return Err(bad(format!("expected true or false, got {}", describe(v)))),
                };
                match *q {
                    "spacc_burst" => self.timing.quirks.spacc_burst = on,
                    "crddrop_free_inner" => self.timing.quirks.crddrop_free_inner = on,
                    "reduce_stop_with_value" => self.timing.quirks.reduce_stop_with_value = on,
                    _ => return Err(bad(format!("unknown quirk (quirks: {QUIRK_KEYS})"))),
                }
            }
            ["timing", k, _] if !KINDS.contains(k) => return kind(key, k).map(|_| ()),
            ["timing", _, _] => return Err(bad("unknown key (per-kind timing keys: ii, latency)".into())),
            ["timing", k] => {
                kind(key, k)?;
                return Err(bad("expected a table with ii and/or latency".into()));
            }
            ["memory", "enabled"] => match v {
                Value::Boolean(b) => self.memory.enabled = *b,
                _ => return Err(bad(format!("expected true or false, got {}", describe(v)))),
            },
            ["memory", "sharing"] => {
                self.memory.params.sharing = match v {
                    Value::String(s) if s == "partition" => Sharing::Partition,
                    Value::String(s) if s == "private" => Sharing::Private,
                    Value::String(s) if s == "demand" => Sharing::Demand,
                    _ => {
                        return Err(bad(format!(
                            "expected \"partition\", \"private\" or \"demand\", got {}",
                            describe(v)
                        )))
                    }
                }
            }
            ["memory", field] => {
                let p = &mut self.memory.params;
                let (min, max) = match *field {
                    "channels" => (1, 4096),
                    "bytes_per_cycle" | "queue_depth" => (1, 65536),
                    "granularity" => (4, 1 << 20),
                    "latency" | "startup" => (0, 1 << 32),
                    _ => return Err(bad(format!("unknown key (memory keys: {MEMORY_KEYS})"))),
                };
                let x = uint(v, min, max).map_err(bad)?;
                match *field {
                    "channels" => p.channels = x as u32,
                    "bytes_per_cycle" => p.bytes_per_cycle = x as u32,
                    "queue_depth" => p.queue_depth = x as u32,
                    "granularity" if !x.is_multiple_of(4) => {
                        return Err(bad(format!("must be a multiple of 4 bytes, got {x}")))
                    }
                    "granularity" => p.granularity = x as u32,
                    "latency" => p.latency = x,
                    _ => p.startup = x,
                }
            }
            ["tile", unit, field @ ("ii" | "latency")] => {
                let cost = match v {
                    Value::Integer(i) if *i >= 1 && *i <= 1 << 20 => Cost::constant(*i),
                    Value::String(text) => Cost::parse(text).map_err(bad)?,
                    _ => return Err(bad(format!("expected a cycle count in B such as \"2B-1\", got {}", describe(v)))),
                };
                let u = self
                    .tile
                    .unit_mut(unit)
                    .ok_or_else(|| bad(format!("unknown tile unit (units: {})", TILE_UNITS.join(", "))))?;
                if *field == "ii" {
                    u.ii = cost;
                } else {
                    u.latency = cost;
                }
            }
            ["tile", ..] => {
                return Err(bad(format!(
                    "unknown key (tile keys: tile.<unit>.ii, tile.<unit>.latency; units: {})",
                    TILE_UNITS.join(", ")
                )))
            }
            ["timing" | "memory" | "input_fifo_depth"] => {
                return Err(bad(format!("expected a table, got {}", describe(v))))
            }
            _ => return Err(bad(format!("unknown key (keys: {TOP_KEYS})"))),
        }
        Ok(())
    }

    /// Timing `(ii, latency)` of a primitive kind.
    pub fn timing_of(&self, kind: &str) -> (u64, u64) {
        let k = self.timing.kinds.get(kind);
        (k.and_then(|k| k.ii).unwrap_or(self.timing.ii), k.and_then(|k| k.latency).unwrap_or(self.timing.latency))
    }

    /// The simulator configuration (with the default cycle limit and soft cap).
    pub fn to_sim_config(&self) -> SimConfig {
        let per_kind = self.timing.kinds.keys().map(|k| (k.clone(), self.timing_of(k))).collect();
        SimConfig {
            timing: Timing { ii: self.timing.ii, latency: self.timing.latency, per_kind, quirks: self.timing.quirks },
            channel_capacity: self.fifo_depth,
            input_capacity: self.input_fifo_depth.clone(),
            fifo_sizing: self.fifo_sizing,
            memory: self.memory.enabled.then(|| self.memory.params.clone()),
            clock_mhz: self.clock_mhz,
            tile: self.tile,
            ..SimConfig::default()
        }
    }
}

impl From<&HwConfig> for SimConfig {
    fn from(hw: &HwConfig) -> SimConfig {
        hw.to_sim_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> HwError {
        HwConfig::from_toml_str(text).unwrap_err()
    }

    #[test]
    fn default_is_todays_sim_config() {
        assert_eq!(HwConfig::default().to_sim_config(), SimConfig::default());
        assert_eq!(HwConfig::from_toml_str("").unwrap(), HwConfig::default());
    }

    #[test]
    fn tile_units_take_costs_in_b() {
        let c = HwConfig::from_toml_str("[tile.matmul]\nii = 2\nlatency = \"3B+1\"").unwrap();
        assert_eq!(c.to_sim_config().tile.at(16).matmul, (2, 49));
        assert_eq!(c.tile.elementwise, TileCosts::default().elementwise);
        let mut o = HwConfig::default();
        o.apply_override("tile.unary.latency=\"B^2\"").unwrap();
        assert_eq!(o.tile.at(8).unary, (1, 64));
        for (text, key) in [
            ("[tile.conv]\nii = 1", "tile.conv.ii"),
            ("[tile.matmul]\nii = \"2C\"", "tile.matmul.ii"),
            ("[tile.matmul]\nwidth = 1", "tile.matmul.width"),
            ("[tile.matmul]\nii = 0", "tile.matmul.ii"),
        ] {
            assert_eq!(err(text).key.as_deref(), Some(key), "{text}");
        }
    }

    #[test]
    fn presets_convert() {
        let c = HwConfig::preset("comal").unwrap().to_sim_config();
        assert_eq!(c.channel_capacity, None);
        assert_eq!(c.timing.of("intersect"), (1, 1));
        assert_eq!(c.memory.as_ref().unwrap().startup, 14);
        let r = HwConfig::preset("rda").unwrap().to_sim_config();
        assert_eq!(r.channel_capacity, Some(16));
        assert_eq!(r.memory.as_ref().unwrap().granularity, 64);
        assert!(HwConfig::preset("tpu").unwrap_err().to_string().contains("unknown hardware preset `tpu`"));
        let e = HwConfig::from_spec("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown hardware preset `tpu`") && e.contains("TOML file"), "{e}");
        let e = HwConfig::from_spec("no/such.toml").unwrap_err().to_string();
        assert!(e.starts_with("no/such.toml: cannot read"), "{e}");
    }

    #[test]
    fn files_set_every_kind_of_key() {
        let c = HwConfig::from_toml_str(
            "base = \"rda\"\nname = \"x\"\nclock_mhz = 1500\nfifo_depth = \"unbounded\"\n\
             [input_fifo_depth]\nspacc = 64\nalu = \"unbounded\"\n\
             [timing]\nii = 2\n[timing.scan_compressed]\nlatency = 3\n\
             [memory]\nenabled = false\nchannels = 4\nsharing = \"private\"\n",
        )
        .unwrap();
        assert_eq!(c.name, "x");
        assert_eq!(c.clock_mhz, 1500.0);
        assert_eq!(c.fifo_depth, None);
        assert_eq!(c.input_fifo_depth.get("spacc"), Some(&Some(64)));
        assert_eq!(c.input_fifo_depth.get("alu"), Some(&None));
        assert_eq!(c.timing_of("scan_compressed"), (1, 3), "rda lists every kind explicitly");
        let s = c.to_sim_config();
        assert_eq!(s.memory, None);
        assert_eq!(s.timing.of("scan_compressed"), (1, 3));
        // A kind without an override takes the defaults.
        let d = HwConfig::from_toml_str("[timing]\nii = 2\nlatency = 5\n[timing.alu]\nii = 3\n").unwrap();
        assert_eq!(d.timing_of("alu"), (3, 5));
        assert_eq!(d.to_sim_config().timing.of("reduce"), (2, 5));
    }

    #[test]
    fn overrides() {
        let mut c = HwConfig::rda();
        for o in [
            "fifo_depth=4",
            "timing.scan_compressed.latency=2",
            "memory.channels=16",
            "memory.enabled=false",
            "memory.sharing=demand",
            "memory.sharing=private",
            "input_fifo_depth.spacc = unbounded",
            "clock_mhz=700.5",
            "name=\"quoted\"",
        ] {
            c.apply_override(o).unwrap_or_else(|e| panic!("{o}: {e}"));
        }
        assert_eq!(c.fifo_depth, Some(4));
        assert_eq!(c.timing_of("scan_compressed"), (1, 2));
        assert_eq!(c.memory.params.channels, 16);
        assert!(!c.memory.enabled);
        assert_eq!(c.memory.params.sharing, Sharing::Private);
        assert_eq!(c.input_fifo_depth.get("spacc"), Some(&None));
        assert_eq!(c.clock_mhz, 700.5);
        assert_eq!(c.name, "quoted");
        c.apply_override("fifo_depth=unbounded").unwrap();
        assert_eq!(c.fifo_depth, None);
    }

    #[test]
    fn errors_are_one_line_and_name_the_key() {
        let cases: Vec<(HwError, &str)> = vec![
            (err("fifo_depth = 0"), "fifo_depth"),
            (err("fifo_depth = \"deep\""), "fifo_depth"),
            (err("[memory]\nchanels = 8"), "memory.chanels"),
            (err("[memory]\nchannels = -1"), "memory.channels"),
            (err("[memory]\ngranularity = 6"), "memory.granularity"),
            (err("[memory]\nenabled = \"yes\""), "memory.enabled"),
            (err("[memory]\nsharing = \"fair\""), "memory.sharing"),
            (err("[timing.scan]\nii = 1"), "timing.scan.ii"),
            (err("[timing.alu]\niii = 1"), "timing.alu.iii"),
            (err("[timing]\nlatency = 0"), "timing.latency"),
            (err("[input_fifo_depth]\nfoo = 3"), "input_fifo_depth.foo"),
            (err("clock = 3"), "clock"),
            (err("clock_mhz = -1.0"), "clock_mhz"),
            (err("base = \"tpu\""), "base"),
            (err("timing = 3"), "timing"),
        ];
        for (e, key) in cases {
            let m = e.to_string();
            assert!(!m.contains('\n'), "{m}");
            assert_eq!(e.key.as_deref(), Some(key), "{m}");
            assert!(m.contains(&format!("key `{key}`")), "{m}");
        }
        let mut c = HwConfig::default();
        for (o, key) in [("memory.channels=0", "memory.channels"), ("nope=1", "nope"), ("timing.x.ii=1", "timing.x.ii")]
        {
            let e = c.apply_override(o).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.to_string().starts_with("hardware override: key"), "{e}");
        }
        assert!(c.apply_override("fifo_depth").unwrap_err().to_string().contains("not key=value"));
        assert_eq!(c, HwConfig::default(), "failed overrides change nothing");
    }

    #[test]
    fn configs_serialize_like_their_files() {
        let j = serde_json::to_value(HwConfig::comal()).unwrap();
        assert_eq!(j["memory"]["enabled"], true);
        assert_eq!(j["memory"]["startup"], 14);
        assert_eq!(j["memory"]["sharing"], "partition");
        assert_eq!(j["timing"]["kinds"]["spacc"]["ii"], 1);
        assert_eq!(j["fifo_depth"], serde_json::Value::Null);
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = err("name = \"a\"\nfifo_depth = = 3\n");
        let m = e.to_string();
        assert!(m.starts_with("hardware config: line 2, column"), "{m}");
        assert!(!m.contains('\n'), "{m}");
    }
}

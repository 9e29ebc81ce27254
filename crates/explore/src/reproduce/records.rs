//! Result records: one JSON line per simulated configuration, appended as each finishes, so
//! an interrupted reproduction keeps what it finished and a rerun skips it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Experiment, ReproduceError, Scale, RECORDS_FILE, RECORD_TOOL};
use crate::Shard;

/// One fusion group of a simulated configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupFigures {
    /// User statements of the group (numbered as written).
    pub statements: Vec<usize>,
    /// The group in `--fusion` syntax (`0-3`, `5`, `2.1`).
    pub label: String,
    /// Simulated cycles.
    pub cycles: u64,
    /// Arithmetic operations.
    pub flops: u64,
    /// Off-chip bytes read and written.
    pub bytes: u64,
}

/// One simulated configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// [`RECORD_TOOL`] of the tool that wrote it.
    pub tool: String,
    /// Experiment name (`fig12`).
    pub experiment: String,
    /// Scale name (`small`, `paper`).
    pub scale: String,
    /// The configuration's id ([`super::Config::id`]).
    pub id: String,
    /// Model.
    pub model: String,
    /// Data set or shape label.
    pub dataset: String,
    /// What the experiment varies (granularity, lanes, scalar/blocked, order).
    pub variant: String,
    /// Program file.
    pub program: String,
    /// `--fusion`.
    pub fusion: String,
    /// Hardware preset.
    pub hw: String,
    /// Lanes, as `--par` writes them (`h=4`).
    pub par: Vec<String>,
    /// `--block`.
    pub block: Option<usize>,
    /// `--order` (comma-separated).
    pub order: Option<String>,
    /// Every parameter's value in the run.
    pub params: BTreeMap<String, i64>,
    /// Total cycles (`None` when the run failed).
    pub cycles: Option<u64>,
    /// Total arithmetic operations.
    pub flops: Option<u64>,
    /// Total off-chip bytes.
    pub bytes: Option<u64>,
    /// Per-group figures (what whole-model composition needs).
    pub groups: Vec<GroupFigures>,
    /// Whether every output matched the reference evaluator.
    pub verified: bool,
    /// Why the run failed or is not verified.
    pub error: Option<String>,
    /// Wall-clock seconds of the run (reported, never used by tables or plots).
    pub wall_seconds: f64,
}

impl Record {
    /// Usable in tables: simulated and verified.
    pub fn ok(&self) -> bool {
        self.verified && self.cycles.is_some()
    }
}

/// The verified records of experiment `exp` at `scale`, each with the configuration it ran
/// (the plan is built once here, not once a lookup).
pub fn recorded_runs(exp: Experiment, scale: Scale, records: Vec<Record>) -> Vec<(super::Config, Record)> {
    let plan = super::configs(exp, scale);
    records
        .into_iter()
        .filter(Record::ok)
        .filter_map(|r| plan.iter().find(|c| c.id == r.id).map(|c| (c.clone(), r)))
        .collect()
}

/// The record another experiment holds of the same run as `c` ([`super::Config::same_run`]),
/// named for `exp`: runs are pure functions of their configuration, so it is the record `c`
/// would get. `recorded` holds each experiment's [`recorded_runs`].
pub fn same_run_record(
    exp: Experiment,
    c: &super::Config,
    recorded: &[(Experiment, Vec<(super::Config, Record)>)],
) -> Option<Record> {
    let (_, found) = recorded
        .iter()
        .filter(|(other, _)| *other != exp)
        .find_map(|(_, runs)| runs.iter().find(|(o, _)| o.same_run(c)))?;
    Some(Record {
        experiment: exp.name().into(),
        id: c.id.clone(),
        model: c.model.clone(),
        dataset: c.dataset.clone(),
        variant: c.variant.clone(),
        ..found.clone()
    })
}

/// The records file of `exp` under `out`.
pub fn records_path(out: &Path, exp: Experiment) -> PathBuf {
    out.join(exp.name()).join(RECORDS_FILE)
}

/// The records file that shard `shard` of `exp` appends to under `out`
/// (`records.shard-I-of-N.jsonl`; [`records_path`] without a shard).
pub fn shard_records_path(out: &Path, exp: Experiment, shard: Option<Shard>) -> PathBuf {
    out.join(exp.name()).join(crate::shard::log_file(shard, RECORDS_STEM))
}

/// Every records file of `exp` under `out`: `records.jsonl`, then the shards' files in name
/// order (processes of one sharded reproduction each append to their own).
fn record_files(out: &Path, exp: Experiment) -> Result<Vec<PathBuf>, ReproduceError> {
    let dir = out.join(exp.name());
    let mut files = vec![records_path(out, exp)];
    if dir.is_dir() {
        files.extend(crate::store::logs(&dir, &format!("{RECORDS_STEM}.shard-")).map_err(from_explore)?);
    }
    Ok(files)
}

/// [`RECORDS_FILE`] without its extension: the stem of the shards' files.
const RECORDS_STEM: &str = "records";

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReproduceError + '_ {
    move |error| ReproduceError::Io { path: path.display().to_string(), error }
}

/// Reads the records of `exp` under `out`, from `records.jsonl` and every shard's file (the
/// last record of an id wins, files in [`record_files`] order: a failed configuration rerun
/// later). A line that does not parse is skipped and reported in the returned warnings;
/// records of another tool version or of another scale than `scale` (when given) are refused.
/// Missing files give no records.
pub fn read_records(
    out: &Path,
    exp: Experiment,
    scale: Option<Scale>,
) -> Result<(Vec<Record>, Vec<String>), ReproduceError> {
    let mut by_id: BTreeMap<String, (usize, Record)> = BTreeMap::new();
    let mut warnings = Vec::new();
    for path in record_files(out, exp)? {
        read_file(&path, exp, scale, &mut by_id, &mut warnings)?;
    }
    let mut v: Vec<(usize, Record)> = by_id.into_values().collect();
    v.sort_by_key(|x| x.0);
    Ok((v.into_iter().map(|x| x.1).collect(), warnings))
}

/// [`read_records`] of one file into `by_id` (record by id, with the position of its id's
/// first record).
fn read_file(
    path: &Path,
    exp: Experiment,
    scale: Option<Scale>,
    by_id: &mut BTreeMap<String, (usize, Record)>,
    warnings: &mut Vec<String>,
) -> Result<(), ReproduceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!("{}:{}: skipped a corrupt record ({e})", path.display(), n + 1));
                continue;
            }
        };
        if r.tool != RECORD_TOOL {
            return Err(ReproduceError::Records(format!(
                "{}:{}: records of {} (this is {RECORD_TOOL}): rerun into a new directory",
                path.display(),
                n + 1,
                r.tool
            )));
        }
        if r.experiment != exp.name() {
            return Err(ReproduceError::Records(format!(
                "{}:{}: a record of experiment {} in {}'s records",
                path.display(),
                n + 1,
                r.experiment,
                exp.name()
            )));
        }
        if let Some(s) = scale.filter(|s| s.name() != r.scale) {
            return Err(ReproduceError::Records(format!(
                "{}:{}: records of scale {} (asked for {}): use another --out",
                path.display(),
                n + 1,
                r.scale,
                s.name()
            )));
        }
        let order = by_id.get(&r.id).map_or(by_id.len(), |x| x.0);
        by_id.insert(r.id.clone(), (order, r));
    }
    Ok(())
}

/// The scale of stored records (they all share one, [`read_records`] checks it).
pub fn stored_scale(records: &[Record]) -> Option<Scale> {
    records.first().and_then(|r| Scale::parse(&r.scale).ok())
}

/// An open records file that finished configurations are appended to.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    file: std::fs::File,
}

impl RecordLog {
    /// Opens (creating it and its directory) the records file of `exp` under `out`.
    pub fn open(out: &Path, exp: Experiment) -> Result<RecordLog, ReproduceError> {
        RecordLog::open_shard(out, exp, None)
    }

    /// Opens the records file of shard `shard` (see [`shard_records_path`]).
    pub fn open_shard(out: &Path, exp: Experiment, shard: Option<Shard>) -> Result<RecordLog, ReproduceError> {
        let path = shard_records_path(out, exp, shard);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // A torn last line (a killed process) is closed so the next record starts a line.
        let torn = std::fs::read(&path).map(|b| b.last().is_some_and(|&c| c != b'\n')).unwrap_or(false);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        if torn {
            file.write_all(b"\n").map_err(io(&path))?;
        }
        Ok(RecordLog { path, file })
    }

    /// Appends one record as one line, in one write.
    pub fn append(&mut self, r: &Record) -> Result<(), ReproduceError> {
        let mut line = serde_json::to_string(r).map_err(|e| ReproduceError::Records(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io(&self.path))
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed into place).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReproduceError> {
    crate::store::write_atomic(path, bytes).map_err(from_explore)
}

/// An error of the sweeps' store ([`crate::store`]) met by a reproduction.
fn from_explore(e: crate::ExploreError) -> ReproduceError {
    match e {
        crate::ExploreError::Io { path, error } => ReproduceError::Io { path, error },
        other => ReproduceError::Records(other.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A verified record of fig12 at small scale.
    pub fn rec(id: &str, variant: &str, cycles: u64) -> Record {
        Record {
            tool: RECORD_TOOL.into(),
            experiment: "fig12".into(),
            scale: "small".into(),
            id: id.into(),
            model: "gcn".into(),
            dataset: "default".into(),
            variant: variant.into(),
            program: "examples/gcn.ff".into(),
            fusion: variant.into(),
            hw: "ideal".into(),
            par: Vec::new(),
            block: None,
            order: None,
            params: BTreeMap::new(),
            cycles: Some(cycles),
            flops: Some(cycles * 2),
            bytes: Some(cycles * 3),
            groups: Vec::new(),
            verified: true,
            error: None,
            wall_seconds: 0.5,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fuseflow-reproduce-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn append_read_last_wins_and_corrupt_lines_are_skipped() {
        let d = scratch("log");
        let mut log = RecordLog::open(&d, Experiment::Fig12).unwrap();
        log.append(&rec("a", "unfused", 10)).unwrap();
        log.append(&rec("b", "partial", 5)).unwrap();
        drop(log);
        // A torn line, as a killed process leaves it.
        let p = records_path(&d, Experiment::Fig12);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"tool\":").unwrap();
        drop(f);
        let mut log = RecordLog::open(&d, Experiment::Fig12).unwrap();
        log.append(&rec("a", "unfused", 12)).unwrap();
        let (v, warnings) = read_records(&d, Experiment::Fig12, Some(Scale::Small)).unwrap();
        assert_eq!(v.iter().map(|r| (r.id.as_str(), r.cycles)).collect::<Vec<_>>(), [("a", Some(12)), ("b", Some(5))]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let e = read_records(&d, Experiment::Fig12, Some(Scale::Paper)).unwrap_err().to_string();
        assert!(e.contains("records of scale small (asked for paper)"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn shards_files_are_read_with_the_main_one() {
        let d = scratch("shards");
        let mut main = RecordLog::open(&d, Experiment::Fig12).unwrap();
        main.append(&rec("a", "unfused", 10)).unwrap();
        main.append(&rec("b", "partial", 0)).unwrap();
        let s1 = Shard::new(1, 2).unwrap();
        let mut one = RecordLog::open_shard(&d, Experiment::Fig12, Some(s1)).unwrap();
        one.append(&rec("b", "partial", 5)).unwrap();
        let mut zero = RecordLog::open_shard(&d, Experiment::Fig12, Some(Shard::new(0, 2).unwrap())).unwrap();
        zero.append(&rec("c", "full", 7)).unwrap();
        assert!(shard_records_path(&d, Experiment::Fig12, Some(s1)).ends_with("fig12/records.shard-1-of-2.jsonl"));
        let (v, warnings) = read_records(&d, Experiment::Fig12, Some(Scale::Small)).unwrap();
        // The shards' files follow the main one (in name order), so shard 1's rerun of `b` wins.
        let got: Vec<_> = v.iter().map(|r| (r.id.as_str(), r.cycles)).collect();
        assert_eq!(got, [("a", Some(10)), ("b", Some(5)), ("c", Some(7))]);
        assert!(warnings.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_tool_version_is_refused() {
        let d = scratch("version");
        let mut log = RecordLog::open(&d, Experiment::Fig12).unwrap();
        log.append(&Record { tool: "fuseflow-reproduce 0.0.0".into(), ..rec("a", "unfused", 1) }).unwrap();
        let e = read_records(&d, Experiment::Fig12, None).unwrap_err().to_string();
        assert!(e.contains("records of fuseflow-reproduce 0.0.0"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
    #[test]
    fn a_run_recorded_by_another_experiment_is_renamed_not_rerun() {
        let fig14 = super::super::configs(Experiment::Fig14, Scale::Small);
        let full = fig14.iter().find(|c| c.variant == "full").expect("fig14 has a full variant");
        let both = fig14.iter().find(|c| c.variant == "both").expect("fig14 has both layers fused");
        let mut failed = rec("gcn/default/full/ideal", "full", 7);
        failed.verified = false;
        let fig12 =
            vec![failed, rec("gcn/default/full/ideal", "full", 42), rec("gcn/default/partial/ideal", "partial", 9)];
        let recorded = vec![(Experiment::Fig12, recorded_runs(Experiment::Fig12, Scale::Small, fig12))];
        let r = same_run_record(Experiment::Fig14, full, &recorded).expect("fig12 ran it");
        assert_eq!((r.experiment.as_str(), r.id.as_str(), r.cycles), ("fig14", full.id.as_str(), Some(42)));
        // fig14's "both" names its groups (0-3,4-10), fig12's partial the `fuse` lines: the
        // same groups, so the same run.
        let r = same_run_record(Experiment::Fig14, both, &recorded).expect("fig12's partial plans the same groups");
        assert_eq!((r.id.as_str(), r.variant.as_str(), r.cycles), (both.id.as_str(), "both", Some(9)));
        // Layer 1 alone (0-3 and the rest unfused) is no other experiment's run.
        let layer1 = fig14.iter().find(|c| c.variant == "layer1").expect("fig14 has layer 1 fused");
        assert!(same_run_record(Experiment::Fig14, layer1, &recorded).is_none());
        // An experiment never reuses its own records this way.
        assert!(same_run_record(Experiment::Fig12, full, &recorded).is_none());
    }
}

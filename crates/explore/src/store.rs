//! The results directory: its identity (`explore.json`), the append-only JSON Lines logs of
//! finished points, and the content-addressed cache of group results (`cache/`).
//!
//! Crash safety: a point's line is appended with one `write` call after the point finished,
//! so `kill -9` loses at most the points in flight; a torn last line is closed with a newline
//! when the log is next opened and then skipped (with a warning) as corrupt, and its point is
//! run again. Cache entries are written to a temporary file and renamed into place, so
//! concurrent processes (shards sharing a directory) never read a half-written entry; two
//! processes computing the same entry write the same bytes.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::estimate::Estimate;
use crate::{ExploreError, Failure, GroupResult};

/// Format version of the directory layout and records (2: program fingerprints leave out
/// where inputs come from).
pub const FORMAT: u32 = 2;

/// Name of the identity file.
pub const META_FILE: &str = "explore.json";

/// Outcome of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every group simulated and every output matched the reference.
    Verified,
    /// Every group simulated; outputs were not checked (`--no-verify`).
    Unchecked,
    /// A group failed: compilation, deadlock, cycle limit, memory, or an output that differs
    /// from the reference (the record's `error` says which).
    Failed,
}

/// One group of a finished point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    /// User statements, in `--fusion` syntax (`0-3`).
    pub statements: String,
    /// Dataflow order of each output expression.
    pub orders: Vec<Vec<String>>,
    /// Simulated cycles.
    pub cycles: u64,
    /// Arithmetic operations.
    pub flops: u64,
    /// Off-chip bytes read and written.
    pub offchip_bytes: u64,
    /// Whether the outputs matched the reference (`None`: not checked).
    pub verified: Option<bool>,
    /// The estimate for this group, when it could be made.
    pub estimate: Option<Estimate>,
    /// The lanes this group ran in (`h=4,i=2`): the point's requests whose index it iterates;
    /// absent when none fit (or none were asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub par: Option<String>,
    /// The block size this group ran with; absent when it ran scalar (no block size asked
    /// for, or no sparse operand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
}

/// One finished point: a line of a results log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointRecord {
    /// Position in the space's enumeration.
    pub id: u64,
    /// The configuration as one string (what resuming matches on).
    pub key: String,
    /// The fusion partition in `--fusion` syntax.
    pub fusion: String,
    /// The order choice (`default`, `best` or index names).
    pub order: String,
    /// The machine: hardware and overrides in `--set` syntax.
    pub machine: String,
    /// The lanes asked for (`h=4,i=2`); absent when none. Each group says what it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub par: Option<String>,
    /// The block size asked for; absent when scalar. Each group says what it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// Outcome.
    pub status: Status,
    /// Why the point failed (`None` unless failed).
    pub error: Option<String>,
    /// Whether the failure may go away on a rerun (a memory limit): such points are run again
    /// when a sweep resumes.
    pub retryable: bool,
    /// Total simulated cycles (groups run one after another); `None` when failed.
    pub cycles: Option<u64>,
    /// Total arithmetic operations; `None` when failed.
    pub flops: Option<u64>,
    /// Total off-chip bytes; `None` when failed.
    pub offchip_bytes: Option<u64>,
    /// The estimate of the whole point, when every group could be estimated.
    pub estimate: Option<Estimate>,
    /// Per-group figures (up to the failing group).
    pub groups: Vec<GroupRecord>,
    /// Wall-clock seconds this process spent on the point (0 for groups found in the cache).
    pub wall_seconds: f64,
    /// How many of its groups were found in the cache.
    pub cached_groups: usize,
}

/// The identity of a results directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// [`FORMAT`].
    pub format: u32,
    /// [`crate::TOOL_VERSION`].
    pub tool: String,
    /// The program.
    pub program: String,
    /// Hash of [`crate::GroupEvaluator::fingerprint`].
    pub fingerprint: String,
}

/// A cached group outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheEntry {
    /// The group simulated.
    Ok(GroupResult),
    /// The group failed for a reason that does not depend on the environment.
    Failed(Failure),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExploreError + '_ {
    move |error| ExploreError::Io { path: path.display().to_string(), error }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExploreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// An open results directory.
#[derive(Debug)]
pub struct ResultsDir {
    /// The directory.
    pub path: PathBuf,
    /// The log this process appends to.
    pub log: PathBuf,
    /// Its identity.
    pub meta: Meta,
}

impl ResultsDir {
    /// Opens (creating it if needed) the results directory at `path` for results described by
    /// `meta`, appending to the log `log_name`. A directory holding results of another
    /// program, data or tool version is refused.
    pub fn open(path: &Path, meta: &Meta, log_name: &str) -> Result<ResultsDir, ExploreError> {
        std::fs::create_dir_all(path.join("cache")).map_err(io(path))?;
        let meta_path = path.join(META_FILE);
        match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                let found: Meta = serde_json::from_str(&text).map_err(|e| {
                    ExploreError::Foreign(format!(
                        "{}: not a results directory of fuseflow explore ({e})",
                        meta_path.display()
                    ))
                })?;
                check_same(path, &found, meta)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = serde_json::to_string_pretty(meta).map_err(|e| ExploreError::Io {
                    path: meta_path.display().to_string(),
                    error: std::io::Error::other(e),
                })?;
                write_atomic(&meta_path, format!("{text}\n").as_bytes())?;
            }
            Err(e) => return Err(io(&meta_path)(e)),
        }
        let log = path.join(log_name);
        close_torn_line(&log)?;
        Ok(ResultsDir { path: path.to_path_buf(), log, meta: meta.clone() })
    }

    /// Appends one record as one line, in one write.
    pub fn append(&self, rec: &PointRecord) -> Result<(), ExploreError> {
        let mut line = serde_json::to_string(rec)
            .map_err(|e| ExploreError::Io { path: self.log.display().to_string(), error: std::io::Error::other(e) })?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(io(&self.log))?;
        f.write_all(line.as_bytes()).map_err(io(&self.log))
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.path.join("cache").join(format!("{key}.json"))
    }

    /// The cached outcome of a group, if any (an unreadable entry counts as absent and is
    /// computed again).
    pub fn cache_get(&self, key: &str) -> Option<CacheEntry> {
        let text = std::fs::read_to_string(self.cache_path(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Stores a group outcome.
    pub fn cache_put(&self, key: &str, entry: &CacheEntry) -> Result<(), ExploreError> {
        let path = self.cache_path(key);
        let text = serde_json::to_string(entry)
            .map_err(|e| ExploreError::Io { path: path.display().to_string(), error: std::io::Error::other(e) })?;
        write_atomic(&path, text.as_bytes())
    }
}

/// Refuses to mix results: `found` (on disk) must equal `want`.
fn check_same(path: &Path, found: &Meta, want: &Meta) -> Result<(), ExploreError> {
    let why = if found.format != want.format || found.tool != want.tool {
        Some(format!(
            "was written by {} (format {}), this is {} (format {})",
            found.tool, found.format, want.tool, want.format
        ))
    } else if found.fingerprint != want.fingerprint {
        Some(format!(
            "holds results of another program or data ({}, fingerprint {}; this run: {}, fingerprint {})",
            found.program, found.fingerprint, want.program, want.fingerprint
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(ExploreError::Foreign(format!("{} {why}: use another --out directory", path.display()))),
        None => Ok(()),
    }
}

/// Ends a log whose last line was torn by a crash with a newline, so that the next record
/// starts a line of its own (the torn line is then skipped as corrupt).
fn close_torn_line(log: &Path) -> Result<(), ExploreError> {
    let mut f = match std::fs::OpenOptions::new().read(true).append(true).open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(log)(e)),
    };
    let len = f.metadata().map_err(io(log))?.len();
    if len == 0 {
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - 1)).map_err(io(log))?;
    let mut last = [0u8];
    f.read_exact(&mut last).map_err(io(log))?;
    if last[0] != b'\n' {
        f.write_all(b"\n").map_err(io(log))?;
    }
    Ok(())
}

/// The logs of a directory: `PREFIX*.jsonl` (`points` for a sweep's), sorted by name.
pub fn logs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, ExploreError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(prefix) && name.ends_with(".jsonl") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every record of every log of `dir`, one per point key (the first found), sorted by id;
/// corrupt lines are skipped, each with a warning naming the file and line.
pub fn read_records(dir: &Path) -> Result<(Vec<PointRecord>, Vec<String>), ExploreError> {
    let mut by_key: BTreeMap<String, PointRecord> = BTreeMap::new();
    let mut warnings = Vec::new();
    for log in logs(dir, "points")? {
        let text = std::fs::read(&log).map_err(io(&log))?;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<PointRecord>(line) {
                Ok(r) => {
                    by_key.entry(r.key.clone()).or_insert(r);
                }
                Err(e) => warnings.push(format!(
                    "{}:{}: corrupt line skipped, its point will be run again ({e})",
                    log.display(),
                    i + 1
                )),
            }
        }
    }
    let mut records: Vec<PointRecord> = by_key.into_values().collect();
    records.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.key.cmp(&b.key)));
    Ok((records, warnings))
}

/// The identity of a directory, if it has one.
pub fn read_meta(dir: &Path) -> Result<Meta, ExploreError> {
    let path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ExploreError::Foreign(format!(
                "{}: not a results directory of fuseflow explore (no {META_FILE})",
                dir.display()
            ))
        } else {
            io(&path)(e)
        }
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ExploreError::Foreign(format!("{}: not a results directory of fuseflow explore ({e})", path.display()))
    })
}

/// Merges the results of `dirs` (shards of one sweep) into `out`: every directory must hold
/// results of the same program, data and tool version; the merged log `points.jsonl` holds
/// each point once, sorted by id, and the group caches are copied. Returns the records and
/// the warnings (corrupt lines skipped).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<(Vec<PointRecord>, Vec<String>), ExploreError> {
    let Some(first) = dirs.first() else {
        return Err(ExploreError::Space("merge: name at least one results directory".into()));
    };
    let meta = read_meta(first)?;
    let mut by_key: BTreeMap<String, PointRecord> = BTreeMap::new();
    let mut warnings = Vec::new();
    for d in dirs {
        check_same(d, &read_meta(d)?, &meta)?;
        let (records, w) = read_records(d)?;
        warnings.extend(w);
        for r in records {
            by_key.entry(r.key.clone()).or_insert(r);
        }
    }
    let dir = ResultsDir::open(out, &meta, "points.jsonl")?;
    for d in dirs {
        if d.canonicalize().ok() == out.canonicalize().ok() {
            continue;
        }
        let cache = d.join("cache");
        let Ok(entries) = std::fs::read_dir(&cache) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let target = out.join("cache").join(&name);
            if !target.exists() && !name.to_string_lossy().starts_with('.') {
                let bytes = std::fs::read(e.path()).map_err(io(&e.path()))?;
                write_atomic(&target, &bytes)?;
            }
        }
    }
    let mut records: Vec<PointRecord> = by_key.into_values().collect();
    records.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.key.cmp(&b.key)));
    let mut text = String::new();
    for r in &records {
        let line = serde_json::to_string(r)
            .map_err(|e| ExploreError::Io { path: dir.log.display().to_string(), error: std::io::Error::other(e) })?;
        text.push_str(&line);
        text.push('\n');
    }
    // Other logs in `out` (when it is also one of the inputs) were merged above: replace them
    // all by the one merged log.
    for log in logs(out, "points")? {
        if log != dir.log {
            std::fs::remove_file(&log).map_err(io(&log))?;
        }
    }
    write_atomic(&dir.log, text.as_bytes())?;
    Ok((records, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fp: &str) -> Meta {
        Meta { format: FORMAT, tool: crate::TOOL_VERSION.into(), program: "p.ff".into(), fingerprint: fp.into() }
    }

    fn rec(id: u64) -> PointRecord {
        PointRecord {
            id,
            key: format!("fusion={id}"),
            fusion: id.to_string(),
            order: "default".into(),
            machine: "ideal".into(),
            par: None,
            block: None,
            status: Status::Verified,
            error: None,
            retryable: false,
            cycles: Some(100 + id),
            flops: Some(1),
            offchip_bytes: Some(2),
            estimate: None,
            groups: Vec::new(),
            wall_seconds: 0.5,
            cached_groups: 0,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fuseflow-explore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn foreign_directory_is_refused() {
        let d = tmp("foreign");
        ResultsDir::open(&d, &meta("a"), "points.jsonl").unwrap();
        let e = ResultsDir::open(&d, &meta("b"), "points.jsonl").unwrap_err();
        assert!(matches!(e, ExploreError::Foreign(_)) && e.to_string().contains("another program"), "{e}");
        let mut other = meta("a");
        other.tool = "fuseflow-explore 9.9.9".into();
        let e = ResultsDir::open(&d, &other, "points.jsonl").unwrap_err();
        assert!(e.to_string().contains("was written by"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_line_is_closed_and_skipped() {
        let d = tmp("torn");
        let dir = ResultsDir::open(&d, &meta("a"), "points.jsonl").unwrap();
        dir.append(&rec(0)).unwrap();
        // A crash in the middle of the second line.
        let mut f = std::fs::OpenOptions::new().append(true).open(&dir.log).unwrap();
        f.write_all(b"{\"id\":1,\"key\":\"fus").unwrap();
        drop(f);
        let dir = ResultsDir::open(&d, &meta("a"), "points.jsonl").unwrap();
        dir.append(&rec(2)).unwrap();
        let (records, warnings) = read_records(&d).unwrap();
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("points.jsonl:2: corrupt line skipped"), "{}", warnings[0]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cache_round_trip_and_merge_dedups() {
        let a = tmp("merge-a");
        let b = tmp("merge-b");
        let out = tmp("merge-out");
        let da = ResultsDir::open(&a, &meta("a"), "points.shard-0-of-2.jsonl").unwrap();
        let db = ResultsDir::open(&b, &meta("a"), "points.shard-1-of-2.jsonl").unwrap();
        for id in [3, 0] {
            da.append(&rec(id)).unwrap();
        }
        for id in [1, 0, 2] {
            db.append(&rec(id)).unwrap();
        }
        let entry = CacheEntry::Failed(Failure { message: "deadlock".into(), retryable: false });
        da.cache_put("k", &entry).unwrap();
        assert_eq!(da.cache_get("k"), Some(entry.clone()));
        assert_eq!(da.cache_get("missing"), None);
        let (records, _) = merge(&[a.clone(), b.clone()], &out).unwrap();
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        let (again, _) = read_records(&out).unwrap();
        assert_eq!(again, records);
        assert!(out.join("cache/k.json").exists());
        let bad = tmp("merge-bad");
        ResultsDir::open(&bad, &meta("other"), "points.jsonl").unwrap();
        assert!(matches!(merge(&[a.clone(), bad.clone()], &out), Err(ExploreError::Foreign(_))));
        for d in [a, b, out, bad] {
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
}

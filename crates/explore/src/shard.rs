//! Splitting a sweep over processes: shard `I/N` takes the points whose id is `I` modulo `N`
//! (ids come from the space's fixed enumeration, so every process agrees without talking to
//! the others, and round-robin spreads expensive partitions evenly). The shard comes from
//! `--shard I/N` or from a scheduler's environment: Slurm job arrays
//! (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, offset by `SLURM_ARRAY_TASK_MIN` and
//! divided by `SLURM_ARRAY_TASK_STEP`) and
//! Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`, with the count in
//! `FUSEFLOW_SHARD_COUNT`, which the manifest sets to the job's `completions`).

use crate::ExploreError;

/// Environment variable holding the shard count of a Kubernetes Indexed Job.
pub const COUNT_ENV: &str = "FUSEFLOW_SHARD_COUNT";

/// One shard of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// Shards in all (≥ 1).
    pub count: u64,
}

impl Shard {
    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(text: &str) -> Result<Shard, ExploreError> {
        let bad = |why: &str| ExploreError::Shard(format!("--shard {text}: {why}"));
        let (i, n) = text.split_once('/').ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let index: u64 = i.trim().parse().map_err(|_| bad("the index is not a number"))?;
        let count: u64 = n.trim().parse().map_err(|_| bad("the count is not a number"))?;
        Shard::new(index, count).map_err(|e| bad(&e))
    }

    /// Checks `index < count`.
    pub fn new(index: u64, count: u64) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!("shard index {index} is out of range (shards 0 to {})", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// The shard a scheduler assigned, read through `var` (e.g. `std::env::var`): Slurm job
    /// arrays, then Kubernetes Indexed Jobs; `None` when neither is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ExploreError> {
        let num = |name: &str| -> Result<Option<u64>, ExploreError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ExploreError::Shard(format!("{name}={v}: not a non-negative integer"))),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                ExploreError::Shard("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            // `--array=0-6:2` runs tasks 0, 2, 4, 6: shards 0 to 3.
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let offset = id.checked_sub(min).ok_or_else(|| {
                ExploreError::Shard(format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))
            })?;
            if offset % step != 0 {
                return Err(ExploreError::Shard(format!(
                    "SLURM_ARRAY_TASK_ID={id} is not SLURM_ARRAY_TASK_MIN={min} plus a multiple of \
                     SLURM_ARRAY_TASK_STEP={step}: submit the array as a range (--array=0-N or 0-N:S)"
                )));
            }
            let index = offset / step;
            return Shard::new(index, count)
                .map(Some)
                .map_err(|e| ExploreError::Shard(format!("Slurm array task: {e}")));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num(COUNT_ENV)?.ok_or_else(|| {
                ExploreError::Shard(format!(
                    "JOB_COMPLETION_INDEX is set but {COUNT_ENV} is not (set it to the job's completions)"
                ))
            })?;
            return Shard::new(index, count).map(Some).map_err(|e| ExploreError::Shard(format!("Indexed Job: {e}")));
        }
        Ok(None)
    }

    /// Whether point `id` belongs to this shard.
    pub fn contains(&self, id: u64) -> bool {
        id % self.count == self.index
    }

    /// The log file this shard appends to, for logs named `STEM.jsonl` unsharded
    /// (`points` for sweeps, `records` for reproductions): `STEM.shard-I-of-N.jsonl`.
    pub fn log_name(&self, stem: &str) -> String {
        format!("{stem}.shard-{}-of-{}.jsonl", self.index, self.count)
    }
}

/// The log a process appends to: `STEM.jsonl`, or its shard's ([`Shard::log_name`]).
pub fn log_file(shard: Option<Shard>, stem: &str) -> String {
    shard.map_or_else(|| format!("{stem}.jsonl"), |s| s.log_name(stem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_range() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert!(Shard::parse("4/4").unwrap_err().to_string().contains("out of range"));
        assert!(Shard::parse("0/0").unwrap_err().to_string().contains("at least 1"));
        assert!(Shard::parse("x").unwrap_err().to_string().contains("expected I/N"));
    }

    #[test]
    fn scheduler_environments() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(Shard::from_env(slurm).unwrap(), Some(Shard { index: 2, count: 4 }));
        // `--array=1-7:2`: tasks 1, 3, 5, 7 are shards 0 to 3.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(Shard::from_env(stepped).unwrap(), Some(Shard { index: 3, count: 4 }));
        let off_step = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert!(Shard::from_env(off_step).unwrap_err().to_string().contains("as a range"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), (COUNT_ENV, "2")]);
        assert_eq!(Shard::from_env(k8s).unwrap(), Some(Shard { index: 0, count: 2 }));
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "5"), (COUNT_ENV, "2")])).is_err());
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
    }

    proptest! {
        #[test]
        fn shards_split_every_id_exactly_once(count in 1u64..16, ids in proptest::collection::vec(any::<u64>(), 0..64)) {
            for id in ids {
                let owners = (0..count).filter(|&i| Shard { index: i, count }.contains(id)).count();
                prop_assert_eq!(owners, 1);
            }
        }
    }
}

//! The sweep: enumerate a space, optionally prune it by estimate, skip points a results
//! directory already holds, evaluate the others group by group through the cache, and append
//! each finished point to the log.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::estimate::{estimate_compiled, Estimate};
use crate::hash::hash_fields;
use crate::shard::Shard;
use crate::space::{Machine, OrderChoice, PartitionCount, Point, Space, Variant};
use crate::store::{read_records, CacheEntry, GroupRecord, Meta, PointRecord, ResultsDir, Status, FORMAT};
use fuseflow_compiler::convex::group_text;

use crate::{Compiled, ExploreError, Failure, GroupEvaluator, GroupResult, TOOL_VERSION};

/// `--prune`: how many points to simulate, best by estimate first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prune {
    /// This many points.
    Count(usize),
    /// This fraction of the points (0 < f ≤ 1), at least one.
    Fraction(f64),
}

impl Prune {
    /// `K` (a count ≥ 1) or a fraction such as `0.1` or `10%`.
    pub fn parse(text: &str) -> Result<Prune, String> {
        let t = text.trim();
        let bad = || format!("--prune {t}: expected a number of points (e.g. 50) or a fraction (0.1 or 10%)");
        let fraction = |f: f64| if f > 0.0 && f <= 1.0 { Ok(Prune::Fraction(f)) } else { Err(bad()) };
        if let Some(p) = t.strip_suffix('%') {
            return fraction(p.trim().parse::<f64>().map_err(|_| bad())? / 100.0);
        }
        if let Ok(k) = t.parse::<usize>() {
            return if k >= 1 { Ok(Prune::Count(k)) } else { Err(bad()) };
        }
        fraction(t.parse::<f64>().map_err(|_| bad())?)
    }

    /// Points kept out of `n`.
    pub fn keep(&self, n: usize) -> usize {
        match *self {
            Prune::Count(k) => k.min(n),
            Prune::Fraction(f) => ((n as f64 * f).ceil() as usize).clamp(1.min(n), n),
        }
    }
}

/// Options of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Only this shard's points.
    pub shard: Option<Shard>,
    /// Simulate only the best points by estimate.
    pub prune: Option<Prune>,
    /// Set to stop after the point in flight.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Group simulations run side by side on this many threads (0 and 1: one at a time).
    /// Results do not depend on it: every group is a pure function of its inputs, and points
    /// are logged in the same order either way.
    pub jobs: usize,
}

/// What a sweep tells its caller as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// Something the user should know that does not stop the sweep (a corrupt log line).
    Warning(String),
    /// The plan: points selected (after pruning and sharding), how many the directory held.
    Started {
        /// Points this run is responsible for.
        selected: usize,
        /// Of those, points found finished in the directory.
        resumed: usize,
        /// Points in the whole space.
        space: usize,
    },
    /// A point finished and was appended to the log.
    Point {
        /// Points finished in this run.
        done: usize,
        /// Points this run has to do.
        todo: usize,
        /// The record.
        record: &'a PointRecord,
    },
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepSummary {
    /// Points in the whole space.
    pub space: usize,
    /// Points this run was responsible for (after pruning and sharding).
    pub selected: usize,
    /// Of those, found finished in the directory.
    pub resumed: usize,
    /// Points evaluated by this run.
    pub ran: usize,
    /// Of those, points that failed.
    pub failed: usize,
    /// Of those, failures that may go away on a rerun (memory limits).
    pub retryable: usize,
    /// Group simulations this run performed (cache misses).
    pub simulations: usize,
    /// Groups found in the cache.
    pub cache_hits: usize,
    /// Every record in the directory after the run, sorted by id.
    pub records: Vec<PointRecord>,
    /// The partitions of the space: how many, how many contiguous, and whether the
    /// enumeration stopped at `max_partitions`.
    pub partitions: PartitionCount,
}

/// The order key of a compile request: `default` or the order's index names.
fn order_key(o: &Option<Vec<String>>) -> String {
    o.as_ref().map_or_else(|| "default".to_string(), |o| o.join(","))
}

type CompileKey = (Vec<usize>, String, Variant);

/// Candidate orders of a group (`None`: the compiler's default), or why there are none.
type Candidates = Result<Vec<Option<Vec<String>>>, Failure>;

/// A sweep's memory of compiled groups, orders, estimates and group results, on top of a
/// [`GroupEvaluator`].
pub struct Explorer<'a, E: GroupEvaluator + ?Sized> {
    eval: &'a E,
    space: Space,
    fingerprint: String,
    machines: HashMap<Machine, (String, Option<crate::MemoryModel>)>,
    compiled: RefCell<HashMap<CompileKey, Result<Rc<Compiled>, Failure>>>,
    orders: RefCell<HashMap<Vec<usize>, Candidates>>,
    estimates: RefCell<HashMap<(CompileKey, Machine), Option<Estimate>>>,
    results: RefCell<HashMap<String, CacheEntry>>,
    /// Results simulated ahead by worker threads and not yet taken by a point: the first
    /// point to take one counts it as a simulation, as if it had run it itself.
    fresh: RefCell<HashSet<String>>,
    /// Retryable failures of simulations run ahead (never cached): handed to every point of
    /// this run that needs the group instead of simulating it again.
    transient: RefCell<HashMap<String, Failure>>,
    /// Wall time of the fresh results the point being evaluated took.
    fresh_wall: std::cell::Cell<f64>,
    /// Group simulations performed.
    pub simulations: std::cell::Cell<usize>,
    /// Groups found in a cache.
    pub cache_hits: std::cell::Cell<usize>,
}

impl<'a, E: GroupEvaluator + ?Sized> Explorer<'a, E> {
    /// An explorer of `space`; every machine of the space is checked first (an unknown
    /// preset or an impossible override is an error before anything runs).
    pub fn new(eval: &'a E, space: &Space) -> Result<Explorer<'a, E>, ExploreError> {
        space.check().map_err(ExploreError::Space)?;
        if let Some(indices) = eval.indices() {
            space.check_indices(&indices).map_err(|e| ExploreError::Space(format!("axis `par`: {e}")))?;
        }
        let mut machines = HashMap::new();
        for m in space.machines() {
            let fp = eval.machine_fingerprint(&m).map_err(|e| ExploreError::Space(format!("machine {m}: {e}")))?;
            let peak = eval.memory_model(&m);
            machines.insert(m, (fp, peak));
        }
        Ok(Explorer {
            eval,
            space: space.clone(),
            fingerprint: hash_fields(&[TOOL_VERSION, &eval.fingerprint()]),
            machines,
            compiled: RefCell::default(),
            orders: RefCell::default(),
            estimates: RefCell::default(),
            results: RefCell::default(),
            fresh: RefCell::default(),
            transient: RefCell::default(),
            fresh_wall: std::cell::Cell::new(0.0),
            simulations: std::cell::Cell::new(0),
            cache_hits: std::cell::Cell::new(0),
        })
    }

    /// The identity of results directories of this program and data.
    pub fn meta(&self) -> Meta {
        Meta {
            format: FORMAT,
            tool: TOOL_VERSION.to_string(),
            program: self.eval.program(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    fn machine(&self, m: &Machine) -> Result<&(String, Option<crate::MemoryModel>), Failure> {
        self.machines
            .get(m)
            .ok_or_else(|| Failure { message: format!("machine {m} is not in the space"), retryable: false })
    }

    /// The orders a choice tries for a group (`None`: the compiler's default).
    pub fn candidates(&self, group: &[usize], choice: &OrderChoice) -> Candidates {
        match choice {
            OrderChoice::Default => Ok(vec![None]),
            OrderChoice::Named(o) => Ok(vec![Some(o.clone())]),
            OrderChoice::Best => {
                if let Some(r) = self.orders.borrow().get(group) {
                    return r.clone();
                }
                let r = self.eval.orders(group, self.space.order_cap).map(|per_output| {
                    let mut seen = HashSet::new();
                    let mut out: Vec<Option<Vec<String>>> = Vec::new();
                    for o in per_output {
                        if seen.insert(o.clone()) {
                            out.push(Some(o));
                        }
                    }
                    if out.is_empty() {
                        out.push(None);
                    }
                    out.truncate(self.space.order_cap);
                    out
                });
                self.orders.borrow_mut().insert(group.to_vec(), r.clone());
                r
            }
        }
    }

    /// The group compiled under `order` with `v`'s lanes and blocking (memoised).
    pub fn compile(&self, group: &[usize], order: &Option<Vec<String>>, v: &Variant) -> Result<Rc<Compiled>, Failure> {
        let key = (group.to_vec(), order_key(order), v.clone());
        if let Some(c) = self.compiled.borrow().get(&key) {
            return c.clone();
        }
        let c = self.eval.compile_variant(group, order.as_deref(), v).map(Rc::new);
        self.compiled.borrow_mut().insert(key, c.clone());
        c
    }

    /// The estimate of one group under one order on one machine (memoised when `memo`).
    fn estimate_order(
        &self,
        group: &[usize],
        order: &Option<Vec<String>>,
        v: &Variant,
        m: &Machine,
        memo: bool,
    ) -> Option<Estimate> {
        let key = ((group.to_vec(), order_key(order), v.clone()), m.clone());
        if memo {
            if let Some(e) = self.estimates.borrow().get(&key) {
                return *e;
            }
        }
        let peak = self.machine(m).ok()?.1;
        let e = self
            .compile(group, order, v)
            .ok()
            .map(|c| estimate_compiled(&c, self.eval.stats(), peak.as_ref(), |b| self.eval.tile_timing(m, b)));
        if memo {
            self.estimates.borrow_mut().insert(key, e);
        }
        e
    }

    /// The estimate of a group under an order choice: for `best`, the candidate with the
    /// fewest estimated cycles. Returns the estimate and the order it assumed.
    pub fn estimate_group(
        &self,
        group: &[usize],
        choice: &OrderChoice,
        v: &Variant,
        m: &Machine,
    ) -> Option<(Estimate, Option<Vec<String>>)> {
        self.estimate_group_with(group, choice, v, m, true)
    }

    fn estimate_group_with(
        &self,
        group: &[usize],
        choice: &OrderChoice,
        v: &Variant,
        m: &Machine,
        memo: bool,
    ) -> Option<(Estimate, Option<Vec<String>>)> {
        let mut best: Option<(Estimate, Option<Vec<String>>)> = None;
        for o in self.candidates(group, choice).ok()? {
            if let Some(e) = self.estimate_order(group, &o, v, m, memo) {
                if best.as_ref().is_none_or(|(b, _)| e.cycles < b.cycles) {
                    best = Some((e, o));
                }
            }
        }
        best
    }

    /// The estimate of a whole point (the sum over its groups), `None` when a group cannot be
    /// compiled.
    pub fn estimate_point(&self, p: &Point) -> Option<Estimate> {
        p.partition.groups().iter().try_fold(Estimate::default(), |acc, g| {
            Some(acc + self.estimate_group_with(g, &p.order, &p.variant, &p.machine, true)?.0)
        })
    }

    /// [`Explorer::estimate_point`] without the memory of group estimates (graphs are still
    /// compiled once): what estimating costs per point, as `fuseflow estimate --bench` measures.
    pub fn estimate_point_afresh(&self, p: &Point) -> Option<Estimate> {
        p.partition.groups().iter().try_fold(Estimate::default(), |acc, g| {
            Some(acc + self.estimate_group_with(g, &p.order, &p.variant, &p.machine, false)?.0)
        })
    }

    /// The cache key of one group under one order and variant on one machine.
    fn result_key(
        &self,
        group: &[usize],
        order: &Option<Vec<String>>,
        v: &Variant,
        m: &Machine,
    ) -> Result<String, Failure> {
        let (machine_fp, _) = self.machine(m)?;
        let (text, order_text, variant) = (self.eval.group_text(group), order_key(order), v.to_string());
        let mut fields: Vec<&str> = vec![&self.fingerprint, &text, &order_text, machine_fp];
        // Plain groups keep the keys they had before lanes and blocking were axes.
        if !v.is_plain() {
            fields.push(&variant);
        }
        // A group of statements that are not adjacent also names them: its text already
        // differs from every other group's (each statement writes its own tensor), but the key
        // must not depend on how an evaluator writes a group. Ranges keep their old keys.
        let members = group_text(group);
        if group.windows(2).any(|w| w[1] != w[0] + 1) {
            fields.push(&members);
        }
        Ok(hash_fields(&fields))
    }

    /// A cached result (in memory, else on disk, then remembered in memory).
    fn cached(&self, dir: Option<&ResultsDir>, key: &str) -> Option<CacheEntry> {
        let hit = self.results.borrow().get(key).cloned().or_else(|| dir.and_then(|d| d.cache_get(key)))?;
        self.results.borrow_mut().insert(key.to_string(), hit.clone());
        Some(hit)
    }

    /// Remembers a simulation's result, in memory and on disk; retryable failures are not
    /// remembered (they depend on the environment).
    fn store(&self, dir: Option<&ResultsDir>, key: &str, r: &Result<GroupResult, Failure>) {
        let entry = match r {
            Ok(res) => CacheEntry::Ok(res.clone()),
            Err(f) if !f.retryable => CacheEntry::Failed(f.clone()),
            Err(_) => return,
        };
        if let Some(d) = dir {
            // A cache that cannot be written costs time, not results.
            let _ = d.cache_put(key, &entry);
        }
        self.results.borrow_mut().insert(key.to_string(), entry);
    }

    /// Simulates one group under one order, through the in-memory and on-disk caches.
    fn simulate_order(
        &self,
        dir: Option<&ResultsDir>,
        group: &[usize],
        order: &Option<Vec<String>>,
        v: &Variant,
        m: &Machine,
    ) -> Result<GroupResult, Failure> {
        let key = self.result_key(group, order, v, m)?;
        if let Some(f) = self.transient.borrow().get(&key) {
            return Err(f.clone());
        }
        if let Some(entry) = self.cached(dir, &key) {
            let fresh = self.fresh.borrow_mut().remove(&key);
            if fresh {
                self.simulations.set(self.simulations.get() + 1);
            } else {
                self.cache_hits.set(self.cache_hits.get() + 1);
            }
            return match entry {
                CacheEntry::Ok(r) if fresh => {
                    self.fresh_wall.set(self.fresh_wall.get() + r.wall_seconds);
                    Ok(r)
                }
                CacheEntry::Ok(r) => Ok(GroupResult { wall_seconds: 0.0, ..r }),
                CacheEntry::Failed(f) => Err(f),
            };
        }
        let t0 = Instant::now();
        let r = self.compile(group, order, v).and_then(|c| self.eval.simulate(group, &c, m));
        self.simulations.set(self.simulations.get() + 1);
        let r = r.map(|r| GroupResult { wall_seconds: t0.elapsed().as_secs_f64(), ..r });
        self.store(dir, &key, &r);
        r
    }

    /// Simulates a group under an order choice: for `best`, every candidate, keeping the
    /// fastest that simulated without failure (or the first failure when none did).
    pub fn simulate_group(
        &self,
        dir: Option<&ResultsDir>,
        group: &[usize],
        choice: &OrderChoice,
        v: &Variant,
        m: &Machine,
    ) -> Result<(GroupResult, Option<Vec<String>>), Failure> {
        let mut best: Option<(GroupResult, Option<Vec<String>>)> = None;
        let mut first_err = None;
        for o in self.candidates(group, choice)? {
            match self.simulate_order(dir, group, &o, v, m) {
                Ok(r) if r.verified != Some(false) => {
                    if best.as_ref().is_none_or(|(b, _)| r.cycles < b.cycles) {
                        best = Some((r, o));
                    }
                }
                Ok(r) => {
                    first_err.get_or_insert(Failure {
                        message: format!(
                            "not verified: {}",
                            r.mismatch.clone().unwrap_or_else(|| "an output differs from the reference".into())
                        ),
                        retryable: false,
                    });
                }
                Err(f) => {
                    first_err.get_or_insert(f);
                }
            }
        }
        best.ok_or_else(|| first_err.unwrap_or(Failure { message: "no order to try".into(), retryable: false }))
    }

    /// Evaluates one point: every group through the caches, with estimates.
    pub fn evaluate(&self, dir: Option<&ResultsDir>, p: &Point) -> PointRecord {
        let t0 = Instant::now();
        let hits_before = self.cache_hits.get();
        self.fresh_wall.set(0.0);
        let mut rec = PointRecord {
            id: p.id,
            key: p.key(),
            fusion: p.partition.to_string(),
            order: p.order.to_string(),
            machine: p.machine.to_string(),
            par: (!p.variant.par.is_none()).then(|| p.variant.par.to_string()),
            block: p.variant.block,
            status: Status::Verified,
            error: None,
            retryable: false,
            cycles: None,
            flops: None,
            offchip_bytes: None,
            estimate: self.estimate_point(p),
            groups: Vec::new(),
            wall_seconds: 0.0,
            cached_groups: 0,
        };
        let (mut cycles, mut flops, mut bytes) = (0u64, 0u64, 0u64);
        for g in p.partition.groups() {
            let label = group_text(g);
            match self.simulate_group(dir, g, &p.order, &p.variant, &p.machine) {
                Ok((r, order)) => {
                    let est = self.estimate_order(g, &order, &p.variant, &p.machine, true);
                    // What the point's lanes and block size did to this group.
                    let applied = self.compile(g, &order, &p.variant).ok();
                    cycles += r.cycles;
                    flops += r.flops;
                    bytes += r.bytes_read + r.bytes_written;
                    if r.verified.is_none() {
                        rec.status = Status::Unchecked;
                    }
                    rec.groups.push(GroupRecord {
                        statements: label,
                        orders: r.orders,
                        cycles: r.cycles,
                        flops: r.flops,
                        offchip_bytes: r.bytes_read + r.bytes_written,
                        verified: r.verified,
                        estimate: est,
                        par: applied.as_ref().filter(|c| !c.par.is_none()).map(|c| c.par.to_string()),
                        block: applied.as_ref().and_then(|c| c.block.as_ref().map(|b| b.block)),
                    });
                }
                Err(f) => {
                    rec.status = Status::Failed;
                    rec.error = Some(format!("group [{label}]: {}", f.message));
                    rec.retryable = f.retryable;
                    break;
                }
            }
        }
        if rec.status != Status::Failed {
            rec.cycles = Some(cycles);
            rec.flops = Some(flops);
            rec.offchip_bytes = Some(bytes);
        }
        rec.cached_groups = self.cache_hits.get() - hits_before;
        rec.wall_seconds = t0.elapsed().as_secs_f64() + self.fresh_wall.get();
        rec
    }

    /// The simulations `points` need that no cache holds, in the order the points first need
    /// them, de-duplicated, each compiled (a group that does not compile needs no simulation:
    /// its failure is memoised). Also returns, per point, the indices of the tasks it waits for.
    fn plan(&self, dir: &ResultsDir, points: &[&Point]) -> (Vec<SimTask>, Vec<Vec<usize>>) {
        let mut tasks: Vec<SimTask> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut needs = Vec::with_capacity(points.len());
        for p in points {
            let mut need = Vec::new();
            for g in p.partition.groups() {
                let Ok(candidates) = self.candidates(g, &p.order) else { continue };
                for o in candidates {
                    let Ok(key) = self.result_key(g, &o, &p.variant, &p.machine) else { continue };
                    if let Some(&t) = index.get(&key) {
                        need.push(t);
                        continue;
                    }
                    if self.cached(Some(dir), &key).is_some() {
                        continue;
                    }
                    let Ok(compiled) = self.compile(g, &o, &p.variant) else { continue };
                    index.insert(key.clone(), tasks.len());
                    need.push(tasks.len());
                    tasks.push(SimTask { key, group: g.clone(), machine: p.machine.clone(), compiled });
                }
            }
            needs.push(need);
        }
        (tasks, needs)
    }
}

/// One group simulation a parallel sweep hands to a worker thread.
struct SimTask {
    key: String,
    group: Vec<usize>,
    machine: Machine,
    compiled: Rc<Compiled>,
}

/// Evaluates `todo` with group simulations on `jobs` worker threads: the main thread plans
/// the distinct simulations, workers take them in order, and as results come back the main
/// thread stores them (memory and disk cache) and logs every point, in `todo` order, whose
/// simulations are all done. A point's record is then built from the caches exactly as the
/// sequential path builds it. Returns `(failed, retryable)`.
fn evaluate_parallel<E: GroupEvaluator + Sync + ?Sized>(
    ex: &Explorer<'_, E>,
    dir: &ResultsDir,
    todo: &[&Point],
    opts: &SweepOptions,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(usize, usize), ExploreError> {
    let (tasks, needs) = ex.plan(dir, todo);
    let work: Vec<(&[usize], &Compiled, &Machine)> =
        tasks.iter().map(|t| (t.group.as_slice(), &*t.compiled, &t.machine)).collect();
    let eval = ex.eval;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut finished = vec![false; tasks.len()];
    let (mut tally, mut logged) = ((0, 0), 0);
    std::thread::scope(|scope| -> Result<(), ExploreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..opts.jobs.min(work.len()) {
            let tx = tx.clone();
            let (work, next, stop) = (&work, &next, &stop);
            let cancel = opts.cancel.clone();
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let halt = stop.load(Ordering::Relaxed) || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
                if i >= work.len() || halt {
                    break;
                }
                let (group, compiled, machine) = work[i];
                let t0 = Instant::now();
                let r = eval.simulate(group, compiled, machine);
                let r = r.map(|r| GroupResult { wall_seconds: t0.elapsed().as_secs_f64(), ..r });
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut received = rx.iter();
        // Log points as soon as every simulation they need is back, in order; the first
        // points need no simulation at all when the caches held their groups.
        loop {
            while logged < todo.len() && needs[logged].iter().all(|&t| finished[t]) {
                if let Err(e) = log_point(ex, dir, todo, logged, opts, &mut tally, on) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                logged += 1;
            }
            if logged == todo.len() {
                return Ok(());
            }
            let Some((i, r)) = received.next() else {
                // Workers stopped early: only cancellation does that.
                return Err(ExploreError::Cancelled { done: logged, total: todo.len() });
            };
            ex.store(Some(dir), &tasks[i].key, &r);
            match r {
                Err(f) if f.retryable => {
                    ex.transient.borrow_mut().insert(tasks[i].key.clone(), f);
                }
                _ => {
                    ex.fresh.borrow_mut().insert(tasks[i].key.clone());
                }
            }
            finished[i] = true;
        }
    })?;
    Ok(tally)
}

/// Evaluates `todo[i]` (its groups from the caches, or simulated now), appends its record to
/// the log and reports it, counting failures into `tally` (failed, retryable); stops first if
/// the sweep was cancelled.
fn log_point<E: GroupEvaluator + ?Sized>(
    ex: &Explorer<'_, E>,
    dir: &ResultsDir,
    todo: &[&Point],
    i: usize,
    opts: &SweepOptions,
    tally: &mut (usize, usize),
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), ExploreError> {
    if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
        return Err(ExploreError::Cancelled { done: i, total: todo.len() });
    }
    let rec = ex.evaluate(Some(dir), todo[i]);
    dir.append(&rec)?;
    if rec.status == Status::Failed {
        tally.0 += 1;
        tally.1 += rec.retryable as usize;
    }
    on(Event::Point { done: i + 1, todo: todo.len(), record: &rec });
    Ok(())
}

/// Runs a sweep of `space` into the results directory `out` (see the module documentation).
/// Stops early only for invalid configurations, I/O errors on the results directory and
/// cancellation; failing points are recorded.
pub fn sweep<E: GroupEvaluator + Sync + ?Sized>(
    eval: &E,
    space: &Space,
    out: &Path,
    opts: &SweepOptions,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<SweepSummary, ExploreError> {
    let ex = Explorer::new(eval, space)?;
    let (points, partitions) = space.enumerate(&eval.dependences())?;
    let log = crate::shard::log_file(opts.shard, "points");
    let dir = ResultsDir::open(out, &ex.meta(), &log)?;
    let (existing, warnings) = read_records(out)?;
    for w in warnings {
        on(Event::Warning(w));
    }
    let finished: HashSet<&str> =
        existing.iter().filter(|r| !(r.status == Status::Failed && r.retryable)).map(|r| r.key.as_str()).collect();
    // Pruning ranks the whole space, so that every shard agrees on the points kept.
    let kept: Option<HashSet<u64>> = opts.prune.map(|prune| {
        let mut ranked: Vec<(f64, u64)> =
            points.iter().map(|p| (ex.estimate_point(p).map_or(f64::INFINITY, |e| e.cycles), p.id)).collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ranked.iter().take(prune.keep(points.len())).map(|r| r.1).collect()
    });
    let selected: Vec<&Point> = points
        .iter()
        .filter(|p| kept.as_ref().is_none_or(|k| k.contains(&p.id)))
        .filter(|p| opts.shard.is_none_or(|s| s.contains(p.id)))
        .collect();
    let todo: Vec<&Point> = selected.iter().copied().filter(|p| !finished.contains(p.key().as_str())).collect();
    on(Event::Started { selected: selected.len(), resumed: selected.len() - todo.len(), space: points.len() });
    let (failed, retryable) = if opts.jobs > 1 {
        evaluate_parallel(&ex, &dir, &todo, opts, on)?
    } else {
        let mut tally = (0, 0);
        for i in 0..todo.len() {
            log_point(&ex, &dir, &todo, i, opts, &mut tally, on)?;
        }
        tally
    };
    let (records, _) = read_records(out)?;
    Ok(SweepSummary {
        space: points.len(),
        selected: selected.len(),
        resumed: selected.len() - todo.len(),
        ran: todo.len(),
        failed,
        retryable,
        simulations: ex.simulations.get(),
        cache_hits: ex.cache_hits.get(),
        records,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::DataStats;

    /// A toy evaluator: a group of statements `a..b` takes `(b - a)² + 3` cycles when it has
    /// more than two statements, `10` per group otherwise; group `[2]` fails to verify.
    struct Toy {
        n: usize,
        /// Dependences (`None`: a chain).
        dag: Option<crate::Dag>,
        stats: DataStats,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl GroupEvaluator for Toy {
        fn fingerprint(&self) -> String {
            format!("toy {}", self.n)
        }
        fn program(&self) -> String {
            "toy.ff".into()
        }
        fn statements(&self) -> usize {
            self.n
        }
        fn dependences(&self) -> crate::Dag {
            self.dag.clone().unwrap_or_else(|| crate::Dag::chain(self.n))
        }
        fn group_text(&self, g: &[usize]) -> String {
            format!("{g:?}")
        }
        fn orders(&self, _: &[usize], _: usize) -> Result<Vec<Vec<String>>, Failure> {
            Ok(vec![vec!["i".into(), "j".into()], vec!["j".into(), "i".into()]])
        }
        fn compile(&self, _: &[usize], _: Option<&[String]>) -> Result<Compiled, Failure> {
            Ok(Compiled::scalar(fuseflow_graph::Graph::new("toy"), Vec::new(), Vec::new()))
        }
        fn machine_fingerprint(&self, m: &Machine) -> Result<String, String> {
            if m.hw == "nope" {
                Err("unknown hardware preset".into())
            } else {
                Ok(m.to_string())
            }
        }
        fn memory_model(&self, _: &Machine) -> Option<crate::MemoryModel> {
            None
        }
        fn simulate(&self, g: &[usize], _: &Compiled, _: &Machine) -> Result<GroupResult, Failure> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let len = g.len() as u64;
            Ok(GroupResult {
                cycles: if len > 2 { len * len + 3 } else { 10 },
                tokens: 0,
                flops: len,
                bytes_read: 4,
                bytes_written: 4,
                orders: Vec::new(),
                verified: Some(g != [2]),
                max_abs_error: Some(0.0),
                mismatch: (g == [2]).then(|| "Y(0) = 1, expected 2".to_string()),
                wall_seconds: 0.0,
            })
        }
        fn stats(&self) -> &DataStats {
            &self.stats
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fuseflow-sweep-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn each_distinct_group_is_simulated_once_and_resume_skips_finished_points() {
        let toy = Toy { n: 5, dag: None, stats: DataStats::default(), calls: Default::default() };
        let d = tmp("once");
        let s = sweep(&toy, &Space::default(), &d, &SweepOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(s.space, 16);
        assert_eq!(s.ran, 16);
        assert_eq!(toy.calls.load(Ordering::Relaxed), 5 * 6 / 2, "n(n+1)/2 contiguous groups, each simulated once");
        // Partitions with group [2] alone fail verification and say so.
        let bad = s.records.iter().find(|r| r.fusion == "0-1,2,3-4").unwrap();
        assert_eq!(bad.status, Status::Failed);
        assert!(bad.error.as_deref().unwrap().contains("group [2]: not verified: Y(0) = 1"), "{:?}", bad.error);
        let again = sweep(&toy, &Space::default(), &d, &SweepOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((again.ran, again.resumed), (0, 16));
        assert_eq!(again.records, s.records);
        // A fresh process (empty memory) finds every group on disk.
        let toy2 = Toy { n: 5, dag: None, stats: DataStats::default(), calls: Default::default() };
        std::fs::remove_file(d.join("points.jsonl")).unwrap();
        let third = sweep(&toy2, &Space::default(), &d, &SweepOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(toy2.calls.load(Ordering::Relaxed), 0);
        assert_eq!(third.ran, 16);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn convex_partitions_simulate_each_convex_group_once_and_key_it_apart() {
        // Two independent chains 0 → 1 and 2 → 3: 14 legal partitions (of 15), 3 of them into
        // ranges, and every group that a point evaluates is simulated exactly once.
        let dag = crate::Dag::new(vec![vec![], vec![0], vec![], vec![2]]).unwrap();
        let toy = Toy { n: 4, dag: Some(dag.clone()), stats: DataStats::default(), calls: Default::default() };
        let space = Space { partitions: crate::space::Partitions::Convex, ..Space::default() };
        let d = tmp("convex");
        let s = sweep(&toy, &space, &d, &SweepOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((s.space, s.partitions.partitions, s.partitions.stopped), (14, 14, None));
        assert_eq!(s.partitions.contiguous, 8, "every partition into ranges is legal here");
        let groups: HashSet<Vec<usize>> =
            s.records.iter().flat_map(|r| crate::Partition::parse(&r.fusion, 4).unwrap().groups().to_vec()).collect();
        // A point stops at its first failing group (group [2] fails verification), so count
        // the groups points evaluated: those they recorded and those they failed on.
        let mut evaluated: HashSet<String> =
            s.records.iter().flat_map(|r| r.groups.iter().map(|g| g.statements.clone())).collect();
        for r in &s.records {
            if let Some(e) = r.error.as_deref().and_then(|e| e.strip_prefix("group [")) {
                evaluated.insert(e.split(']').next().unwrap_or_default().to_string());
            }
        }
        assert_eq!(toy.calls.load(Ordering::Relaxed), evaluated.len(), "each distinct group once");
        assert_eq!(groups.len(), 15, "every nonempty subset is a group of some legal partition");
        let keys: HashSet<String> = groups
            .iter()
            .map(|g| {
                Explorer::new(&toy, &space).unwrap().result_key(
                    g,
                    &None,
                    &Variant::default(),
                    &Machine { hw: "ideal".into(), fifo_depth: None, memory: None, channels: None, bandwidth: None },
                )
            })
            .map(Result::unwrap)
            .collect();
        assert_eq!(keys.len(), groups.len(), "distinct groups, distinct cache keys");
        assert!(s.records.iter().any(|r| r.fusion == "0+2,1+3" && r.groups.len() == 2));
        // With a limit, the enumeration stops and the count says why.
        let small = Space { max_partitions: 5, ..space.clone() };
        let d2 = tmp("convex-limit");
        let s = sweep(&toy, &small, &d2, &SweepOptions::default(), &mut |_| {}).unwrap();
        assert_eq!((s.space, s.partitions.stopped), (5, Some(crate::StopReason::PartitionLimit(5))));
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&d2).unwrap();
    }

    #[test]
    fn shards_merge_to_the_single_process_result() {
        let toy = Toy { n: 4, dag: None, stats: DataStats::default(), calls: Default::default() };
        let space = Space { orders: vec![OrderChoice::Default, OrderChoice::Best], ..Space::default() };
        let single = tmp("single");
        let whole = sweep(&toy, &space, &single, &SweepOptions::default(), &mut |_| {}).unwrap();
        let mut dirs = Vec::new();
        for i in 0..3 {
            let d = tmp(&format!("shard{i}"));
            let opts = SweepOptions { shard: Some(Shard::new(i, 3).unwrap()), ..SweepOptions::default() };
            let s = sweep(&toy, &space, &d, &opts, &mut |_| {}).unwrap();
            assert!(s.records.iter().all(|r| r.id % 3 == i));
            dirs.push(d);
        }
        let merged = tmp("merged");
        let (records, _) = crate::store::merge(&dirs, &merged).unwrap();
        let strip = |rs: &[PointRecord]| -> Vec<PointRecord> {
            rs.iter().map(|r| PointRecord { wall_seconds: 0.0, cached_groups: 0, ..r.clone() }).collect()
        };
        assert_eq!(strip(&records), strip(&whole.records));
        for d in dirs.into_iter().chain([single, merged]) {
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn parallel_group_simulations_give_the_sequential_records() {
        let space = Space { orders: vec![OrderChoice::Default, OrderChoice::Best], ..Space::default() };
        let strip = |rs: &[PointRecord]| -> Vec<PointRecord> {
            rs.iter().map(|r| PointRecord { wall_seconds: 0.0, ..r.clone() }).collect()
        };
        let seq_toy = Toy { n: 5, dag: None, stats: DataStats::default(), calls: Default::default() };
        let seq_dir = tmp("seq");
        let seq = sweep(&seq_toy, &space, &seq_dir, &SweepOptions::default(), &mut |_| {}).unwrap();
        for jobs in [2, 3, 8] {
            let toy = Toy { n: 5, dag: None, stats: DataStats::default(), calls: Default::default() };
            let d = tmp(&format!("par{jobs}"));
            let mut logged = Vec::new();
            let opts = SweepOptions { jobs, ..SweepOptions::default() };
            let par = sweep(&toy, &space, &d, &opts, &mut |ev| {
                if let Event::Point { record, .. } = ev {
                    logged.push(record.id);
                }
            })
            .unwrap();
            assert_eq!(strip(&par.records), strip(&seq.records), "jobs {jobs}");
            assert_eq!(toy.calls.load(Ordering::Relaxed), seq_toy.calls.load(Ordering::Relaxed), "each group once");
            assert_eq!((par.simulations, par.cache_hits), (seq.simulations, seq.cache_hits));
            let mut sorted = logged.clone();
            sorted.sort();
            assert_eq!(logged, sorted, "points are logged in order");
            // The log itself has the sequential run's lines, in its order.
            let lines = |d: &Path| -> Vec<PointRecord> {
                std::fs::read_to_string(d.join("points.jsonl"))
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            };
            assert_eq!(strip(&lines(&d)), strip(&lines(&seq_dir)));
            std::fs::remove_dir_all(&d).unwrap();
        }
        std::fs::remove_dir_all(&seq_dir).unwrap();
    }

    #[test]
    fn invalid_machine_and_prune_values() {
        let toy = Toy { n: 3, dag: None, stats: DataStats::default(), calls: Default::default() };
        let space = Space { hw: vec!["nope".into()], ..Space::default() };
        let d = tmp("badhw");
        let e = sweep(&toy, &space, &d, &SweepOptions::default(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, ExploreError::Space(_)) && e.to_string().contains("machine nope"), "{e}");
        assert_eq!(Prune::parse("10%").unwrap(), Prune::Fraction(0.1));
        assert_eq!(Prune::parse("5").unwrap(), Prune::Count(5));
        assert!(Prune::parse("0").is_err() && Prune::parse("1.5").is_err() && Prune::parse("x").is_err());
        assert_eq!(Prune::Fraction(0.01).keep(50), 1);
        assert_eq!(Prune::Count(100).keep(8), 8);
        let _ = std::fs::remove_dir_all(&d);
    }
}

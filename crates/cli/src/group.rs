//! One fusion group on its own: what `fuseflow explore` and `fuseflow estimate` evaluate
//! ([`GroupRunner`] implements [`fuseflow_explore::GroupEvaluator`]).
//!
//! A group of a run reads the intermediates earlier groups computed. Here every group reads
//! them from the reference evaluator instead, stored in their declared formats, so that a
//! group's result does not depend on the partition around it and can be cached and reused by
//! every partition that contains the group. A group's outputs are verified against the same
//! reference as in [`crate::run`]; its cycles equal a run's wherever the simulated
//! intermediates are stored like the reference's (always for dense intermediates; a sparse
//! intermediate could differ by explicit zeros the simulation wrote), which the CLI tests
//! check on the example models.
//!
//! A point's lanes and block size ([`fuseflow_explore::Variant`]) are applied as `run --par
//! INDEX=LANES --block B` applies them: the block size to a group with a sparse operand (or
//! one declared `block(B)`), then lanes for every requested index the group iterates. The
//! program's own `par` lines are not applied (they may name groups of one fusion plan; the
//! `par` axis replaces them).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fuseflow_explore::{
    Blocking, Compiled, DataStats, Failure, GroupEvaluator, GroupResult, Lanes, Machine, MemoryModel, TensorStats,
    TileModel, TileRole, TileTiming, Variant,
};
use fuseflow_ir::CheckedProgram;
use fuseflow_sim::{HwConfig, SimConfig, SimError};
use fuseflow_tensor::{Budget, Tensor};

use crate::{DriverError, RunConfig};

/// Statistics of block structures, by tensor, block size and blocked dimensions.
type BlockedStats = Mutex<BTreeMap<(String, usize, Vec<bool>), TensorStats>>;

/// Evaluates groups of user statements of one program on one data set.
pub struct GroupRunner {
    p: CheckedProgram,
    cfg: RunConfig,
    /// Inputs and every statement's reference result, in declared formats.
    tensors: BTreeMap<String, Tensor>,
    /// Reference results not in `tensors` (a statement's result is read from there).
    expected: BTreeMap<String, Tensor>,
    stats: DataStats,
    fingerprint: String,
    cancel: Option<Arc<AtomicBool>>,
    /// Memory budget of one group's simulation: the run's limit, shared out when groups
    /// simulate side by side ([`GroupRunner::share_memory`]).
    sim_mem_limit: Option<u64>,
    /// Statistics of block structures, by tensor, block size and blocked dimensions.
    blocked_stats: BlockedStats,
}

/// A hash of a tensor's stored data (levels and value bits).
fn tensor_digest(h: &mut fuseflow_explore::hash::Hasher, name: &str, t: &Tensor) {
    h.text(name);
    h.text(&format!("{:?} {:?}", t.shape, t.format));
    for l in &t.levels {
        match l {
            fuseflow_tensor::LevelData::Dense { size } => {
                h.field(&(*size as u64).to_le_bytes());
            }
            fuseflow_tensor::LevelData::Compressed { seg, crd } => {
                let bytes: Vec<u8> = seg.iter().chain(crd).flat_map(|x| x.to_le_bytes()).collect();
                h.field(&bytes);
            }
        }
    }
    let vals: Vec<u8> = t.vals.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    h.field(&vals);
}

impl GroupRunner {
    /// Loads the inputs (generated with `cfg.seed`, with `cfg.bind` bound), evaluates the
    /// reference once, and stores every statement's result in its declared format.
    pub fn new(
        p: CheckedProgram,
        base_dir: &Path,
        cfg: RunConfig,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<GroupRunner, DriverError> {
        let mut budget = cfg.mem_limit.map_or(Budget::UNLIMITED, Budget::new);
        let skip: Vec<String> = cfg.bind.iter().map(|(name, _)| name.clone()).collect();
        let loaded = crate::load_inputs(&p, base_dir, cfg.seed, &fuseflow_ir::LoadOptions { skip, budget })?;
        budget.hold(loaded.bytes);
        let mut tensors = loaded.tensors;
        for (name, coo) in &cfg.bind {
            let decl = p.decl(name).filter(|d| d.role == fuseflow_ir::Role::Input).ok_or_else(|| {
                DriverError::Tensor { tensor: name.clone(), message: "is not an input of the program".into() }
            })?;
            if decl.shape != coo.shape {
                return Err(DriverError::Tensor {
                    tensor: name.clone(),
                    message: format!("declared {:?} but the bound data is {:?}", decl.shape, coo.shape),
                });
            }
            let t = Tensor::from_coo(coo, &decl.format)
                .map_err(|e| DriverError::Tensor { tensor: name.clone(), message: e.to_string() })?;
            tensors.insert(name.clone(), t);
        }
        let mut h = fuseflow_explore::hash::Hasher::default();
        // Where the inputs come from is left out (their data is hashed below): a program whose
        // inputs Python binds in memory and the same program reading them from the files
        // `Program.save` writes share one results directory.
        let mut shape = p.clone();
        for d in &mut shape.decls {
            d.source = None;
        }
        h.text(&fuseflow_ir::pretty(&shape));
        h.text(&format!("{:?}", p.params));
        h.text(&format!(
            "verify={} rel_tol={} abs_tol={} max_cycles={} lower={:?}",
            cfg.verify, cfg.rel_tol, cfg.abs_tol, cfg.sim.max_cycles, cfg.lower
        ));
        for (name, t) in &tensors {
            tensor_digest(&mut h, name, t);
        }
        let ctl = fuseflow_reference::EvalControl {
            budget,
            max_work: cfg.max_work,
            cancel: cancel.clone(),
            on_statement: None,
        };
        let reference = fuseflow_reference::evaluate_with(&p, &tensors, &ctl).map_err(|e| match e {
            fuseflow_reference::EvalError::Memory(m) => DriverError::Memory(m),
            e @ fuseflow_reference::EvalError::Work { .. } => DriverError::WorkLimit(e),
            e => DriverError::Reference(e.to_string()),
        })?;
        // The reference's results (in their declared formats) are what groups read of the
        // intermediates, and what they are checked against.
        let mut expected = BTreeMap::new();
        for (name, t) in reference {
            match tensors.entry(name) {
                Entry::Vacant(e) => {
                    e.insert(t);
                }
                Entry::Occupied(e) if cfg.verify => {
                    expected.insert(e.key().clone(), t);
                }
                Entry::Occupied(_) => {}
            }
        }
        let stats = DataStats::measure(&tensors);
        let sim_mem_limit = cfg.mem_limit;
        Ok(GroupRunner {
            p,
            cfg,
            tensors,
            expected,
            stats,
            fingerprint: h.hex(),
            cancel,
            sim_mem_limit,
            blocked_stats: Mutex::default(),
        })
    }

    /// Splits the memory budget between `ways` simulations running at once (a sweep's
    /// `jobs`), so that together they stay within it.
    pub fn share_memory(&mut self, ways: usize) {
        self.sim_mem_limit = self.cfg.mem_limit.map(|l| l / ways.max(1) as u64);
    }

    /// The program.
    pub fn program_ref(&self) -> &CheckedProgram {
        &self.p
    }

    /// The expanded statements of a group of user statements (sorted, so in program order).
    pub fn expanded(&self, group: &[usize]) -> Vec<usize> {
        self.p.expand_user_stmts(group)
    }

    /// What the estimate needs of a blocked graph: each node's tile role (the simulator's tile
    /// plan) and the statistics of the block structure of every tensor it reads.
    fn tile_model(
        &self,
        graph: &fuseflow_graph::Graph,
        b: &fuseflow_compiler::GroupBlock,
    ) -> Result<TileModel, String> {
        use fuseflow_sim::tile::{NodeTile, TilePlan, TileSpec};
        let spec = TileSpec::from_graph(graph, b.block, &b.dims);
        let plan = TilePlan::new(graph, &spec).map_err(|e| e.to_string())?;
        let mask = |axes: &[u8]| axes.iter().fold(0u8, |m, &a| m | (1 << a));
        let roles = graph
            .nodes
            .iter()
            .zip(&plan.nodes)
            .map(|(n, role)| match role {
                NodeTile::Other => TileRole::Other,
                NodeTile::Array { axes } => TileRole::Array { axes: mask(axes) },
                NodeTile::Alu { contract } => TileRole::Alu {
                    contract: *contract,
                    binary: matches!(&n.op, fuseflow_graph::Op::Alu { op } if op.arity() == 2),
                },
                NodeTile::Reduce { axis } => {
                    TileRole::Reduce { axis: *axis, spacc: matches!(n.op, fuseflow_graph::Op::Spacc { .. }) }
                }
                NodeTile::Write { axes } => TileRole::Write { axes: mask(axes) },
            })
            .collect();
        let mut stats = DataStats::default();
        let mut memo = self.blocked_stats.lock().map_err(|_| "a statistics lock was poisoned".to_string())?;
        for input in &graph.inputs {
            let Some(t) = self.tensors.get(&input.tensor) else { continue };
            let dims = b.dims.get(&input.tensor).cloned().unwrap_or_else(|| vec![false; t.rank()]);
            let key = (input.tensor.clone(), b.block, dims);
            if !memo.contains_key(&key) {
                let bt = fuseflow_tensor::Blocked::from_tensor(t, b.block, &key.2)
                    .map_err(|e| format!("tensor {}: {e}", input.tensor))?;
                memo.insert(key.clone(), TensorStats::measure(&bt.blocks));
            }
            stats.tensors.insert(input.tensor.clone(), memo[&key].clone());
        }
        Ok(TileModel { roles, stats })
    }

    /// The hardware of a machine point: its preset or file, then its overrides.
    pub fn hw(&self, m: &Machine) -> Result<HwConfig, String> {
        let mut hw = HwConfig::from_spec(&m.hw).map_err(|e| e.to_string())?;
        for o in m.overrides() {
            hw.apply_override(&o).map_err(|e| e.to_string())?;
        }
        Ok(hw)
    }
}

/// A driver error as a point's failure: memory limits and cancellation are retryable.
fn failure(e: DriverError) -> Failure {
    let retryable = matches!(e, DriverError::Memory(_) | DriverError::Cancelled { .. });
    Failure { message: e.to_string().replace(['\n', '\r'], " "), retryable }
}

impl GroupEvaluator for GroupRunner {
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn program(&self) -> String {
        self.p.file.clone()
    }

    fn statements(&self) -> usize {
        if self.p.user_stmts.is_empty() {
            self.p.stmts.len()
        } else {
            self.p.user_stmts.len()
        }
    }

    fn dependences(&self) -> fuseflow_explore::Dag {
        fuseflow_explore::Dag::of_program(&self.p)
    }

    fn group_text(&self, group: &[usize]) -> String {
        let stmts: Vec<String> =
            self.expanded(group).iter().map(|&s| fuseflow_ir::pretty_stmt(&self.p.stmts[s])).collect();
        stmts.join("\n")
    }

    fn orders(&self, group: &[usize], cap: usize) -> Result<Vec<Vec<String>>, Failure> {
        let stmts = self.expanded(group);
        let per_output = fuseflow_compiler::group_orders(&self.p, &stmts, cap, &self.cfg.lower)
            .map_err(|e| failure(DriverError::Compile(e)))?;
        Ok(per_output.into_iter().flatten().collect())
    }

    fn compile(&self, group: &[usize], order: Option<&[String]>) -> Result<Compiled, Failure> {
        self.compile_variant(group, order, &Variant::default())
    }

    fn compile_variant(&self, group: &[usize], order: Option<&[String]>, v: &Variant) -> Result<Compiled, Failure> {
        let stmts = self.expanded(group);
        if stmts.len() > 1 {
            let size = fuseflow_compiler::group_size(&self.p, &stmts);
            let what = || {
                format!(
                    "fused group {} would inline {} expression nodes and build up to {} streams before pruning",
                    self.p.group_label(&stmts),
                    size.expr_nodes,
                    size.payload_streams
                )
            };
            if !size.within_limits() {
                return Err(failure(DriverError::GroupTooLarge {
                    what: what(),
                    nodes: fuseflow_compiler::size::MAX_EXPR_NODES,
                    streams: fuseflow_compiler::size::MAX_PAYLOAD_STREAMS,
                }));
            }
            if let Some(limit) = self.cfg.mem_limit {
                Budget::new(limit)
                    .check(size.bytes(), || format!("compiling {}", what()))
                    .map_err(|e| failure(DriverError::Memory(e)))?;
            }
        }
        // As `run --block B` lowers a group (a declared `block(B)` operand blocks it too).
        let cfg = crate::RunConfig { block: v.block, lower: self.cfg.lower.clone(), ..crate::RunConfig::default() };
        let first = group.first().copied().unwrap_or(0);
        let k = crate::lower_configured(&self.p, &stmts, first, order, &cfg).map_err(failure)?;
        // As `run --par INDEX=LANES` applies lanes: to a group that iterates the index.
        let applied =
            Lanes(v.par.0.iter().filter(|(i, _)| fuseflow_compiler::par::iterates(&k.graph, i)).cloned().collect());
        let reqs: Vec<crate::ParRequest> = v
            .par
            .0
            .iter()
            .map(|(index, lanes)| crate::ParRequest {
                group: None,
                index: index.clone(),
                lanes: *lanes,
                origin: format!("par {}", v.par),
            })
            .collect();
        let graph = crate::apply_par(&self.p, first, &stmts, k.graph, &reqs).map_err(failure)?;
        let block = match &k.block {
            Some(b) => Some(Blocking {
                block: b.block,
                dims: b.dims.clone(),
                tiles: self.tile_model(&graph, b).map_err(|message| Failure { message, retryable: false })?,
            }),
            None => None,
        };
        Ok(Compiled { graph, outputs: k.outputs, orders: k.orders, par: applied, block })
    }

    fn indices(&self) -> Option<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for st in &self.p.stmts {
            out.extend(st.lhs.indices.iter().cloned());
            st.rhs.for_each_access(&mut |a| out.extend(a.indices.iter().cloned()));
        }
        Some(out.into_iter().collect())
    }

    fn tile_timing(&self, m: &Machine, block: usize) -> TileTiming {
        let Ok(hw) = self.hw(m) else { return TileTiming::comal(block) };
        let t = hw.tile.at(block);
        let f = |(ii, lat): (u64, u64)| (ii as f64, lat as f64);
        TileTiming {
            block: block as f64,
            matmul: f(t.matmul),
            elementwise: f(t.elementwise),
            unary: f(t.unary),
            array: f(t.array),
            reduce: f(t.reduce),
            spacc: f(t.spacc),
        }
    }

    fn machine_fingerprint(&self, m: &Machine) -> Result<String, String> {
        let hw = self.hw(m)?;
        serde_json::to_string(&hw).map_err(|e| e.to_string())
    }

    fn memory_model(&self, m: &Machine) -> Option<MemoryModel> {
        let hw = self.hw(m).ok()?;
        let p = &hw.memory.params;
        hw.memory.enabled.then(|| MemoryModel {
            peak_bytes_per_cycle: p.peak_bytes_per_cycle() as f64,
            slots: p.channels as f64 * p.queue_depth as f64,
            line_bytes: p.granularity as f64,
            latency: p.latency as f64,
            partitioned: p.sharing != fuseflow_sim::Sharing::Private,
        })
    }

    fn simulate(&self, group: &[usize], c: &Compiled, m: &Machine) -> Result<GroupResult, Failure> {
        let t0 = Instant::now();
        let hw = self.hw(m).map_err(|message| Failure { message, retryable: false })?;
        let sim_cfg = SimConfig { max_cycles: self.cfg.sim.max_cycles, ..hw.to_sim_config() };
        let ctl =
            fuseflow_sim::SimControl { cancel: self.cancel.clone(), observer: None, mem_limit: self.sim_mem_limit };
        let label = self.p.group_label(&self.expanded(group));
        let block = c.block.as_ref().map(|b| fuseflow_compiler::GroupBlock { block: b.block, dims: b.dims.clone() });
        let sim = crate::simulate_graph(&c.graph, block.as_ref(), &self.tensors, &sim_cfg, &ctl).map_err(|error| {
            let retryable = matches!(error, SimError::Memory { .. } | SimError::Cancelled { .. });
            let e = DriverError::Sim { stmt: label.clone(), tensor: c.outputs.join(","), error };
            Failure { retryable, ..failure(e) }
        })?;
        let mut r = GroupResult {
            cycles: sim.cycles,
            tokens: sim.tokens,
            flops: sim.ops,
            bytes_read: sim.bytes_read,
            bytes_written: sim.bytes_written,
            orders: c.orders.clone(),
            verified: self.cfg.verify.then_some(true),
            max_abs_error: self.cfg.verify.then_some(0.0),
            mismatch: None,
            wall_seconds: 0.0,
        };
        for tensor in &c.outputs {
            let written = sim.outputs.get(tensor).ok_or_else(|| Failure {
                message: format!("tensor {tensor}: the graph wrote no output"),
                retryable: false,
            })?;
            if !self.cfg.verify {
                continue;
            }
            let expected = self.expected.get(tensor).or_else(|| self.tensors.get(tensor)).ok_or_else(|| Failure {
                message: format!("reference evaluator: no result for {tensor}"),
                retryable: false,
            })?;
            let cmp =
                fuseflow_reference::compare_tensors(tensor, expected, written, self.cfg.rel_tol, self.cfg.abs_tol);
            if !cmp.ok {
                r.verified = Some(false);
                r.mismatch = r.mismatch.or(cmp.first_mismatch.clone());
            }
            if let Some(bad) = crate::first_non_finite(tensor, written) {
                r.verified = Some(false);
                r.mismatch = r.mismatch.or(Some(bad));
            }
            r.max_abs_error = r.max_abs_error.map(|m| m.max(cmp.max_abs_error));
        }
        r.wall_seconds = t0.elapsed().as_secs_f64();
        Ok(r)
    }

    fn stats(&self) -> &DataStats {
        &self.stats
    }
}

//! The off-chip memory model at the primitive level: exact request timing for scanners,
//! arrays and writers, and unchanged outputs.

mod common;

use std::sync::Arc;

use common::{run_full, toks};
use fuseflow_sim::prims::{scan::LevelSource, Array, LevelWrite, Scan, ValWrite};
use fuseflow_sim::{MemoryConfig, Primitive, Sharing, Token, Written};

/// One channel of 16 bytes per cycle, 16-byte lines (4 words), 10 cycles of latency: a lone
/// request takes 1 cycle of transfer and 10 of latency.
fn mem() -> MemoryConfig {
    MemoryConfig {
        channels: 1,
        bytes_per_cycle: 16,
        latency: 10,
        startup: 0,
        queue_depth: 4,
        granularity: 16,
        sharing: Sharing::Private,
    }
}

fn scan(with_memory: bool) -> Box<dyn Primitive> {
    let s = Scan::new(LevelSource::Compressed { seg: Arc::new(vec![0, 3, 5]), crd: Arc::new(vec![1, 4, 7, 2, 3]) });
    Box::new(if with_memory { s.with_memory(mem().port(1), mem().port(1)) } else { s })
}

#[test]
fn a_scanner_waits_for_its_segment_then_its_coordinates() {
    let ideal = run_full(scan(false), vec![toks("0, D")], 2, None).unwrap();
    let real = run_full(scan(true), vec![toks("0, D")], 2, None).unwrap();
    assert_eq!(ideal.outputs, real.outputs);
    // The reference is there at cycle 1: seg[0..2] is back at 1 + 1 + 10 = 12, the fiber's
    // coordinate line at 12 + 1 + 10 = 23, where the ideal scanner emitted at 1: 22 cycles.
    assert_eq!(real.cycles, ideal.cycles + 22);
}

#[test]
fn a_scanner_prefetches_segments_of_waiting_references() {
    // Two fibers: the second's segment entries share the first's line (no new request) and
    // its coordinates (positions 3, 4) straddle lines 0 and 1: one more request, issued once
    // the segment entries are known, overlapping the first fiber's emission.
    let ideal = run_full(scan(false), vec![toks("0, 1, D")], 2, None).unwrap();
    let real = run_full(scan(true), vec![toks("0, 1, D")], 2, None).unwrap();
    assert_eq!(ideal.outputs, real.outputs);
    assert_eq!(real.cycles, ideal.cycles + 22);
}

#[test]
fn array_reads_share_lines() {
    let vals = Arc::new((0..12).map(f64::from).collect::<Vec<_>>());
    let input = toks("0, 1, 2, 3, S0, 8, N, 9, S1, D");
    let ideal = run_full(Box::new(Array::new(vals.clone())), vec![input.clone()], 1, None).unwrap();
    let real = run_full(Box::new(Array::new(vals).with_memory(mem().port(1))), vec![input], 1, None).unwrap();
    assert_eq!(ideal.outputs, real.outputs);
    // Line 0 is back at 1 + 11 = 12; line 2 (value 8) is requested when reference 8 is there
    // (cycle 6), behind line 0 in the pipe: back at 7 + 11 = 18, before the array reaches it.
    assert_eq!(real.cycles, ideal.cycles + 11);
}

#[test]
fn writers_finish_when_their_writes_are_acknowledged() {
    let input = toks("1, 2, S0, 3, S1, D");
    let ideal = run_full(Box::<LevelWrite>::default(), vec![input.clone()], 0, None).unwrap();
    let real =
        run_full(Box::new(LevelWrite::default().with_memory(mem().port(2), mem().port(2))), vec![input], 0, None)
            .unwrap();
    assert_eq!(ideal.written, real.written);
    // Both partial lines go out at D's fire, and are acknowledged 1 + 10 cycles later, where
    // the ideal writer ended 1 cycle after that fire.
    assert_eq!(real.cycles, ideal.cycles + 10);
    let Some(Written::Level { seg, crd }) = real.written else { panic!() };
    assert_eq!((seg, crd), (vec![0, 2, 3], vec![1, 2, 3]));

    let vals: Vec<Token> = (0..9).map(|v| Token::Val(v as f64)).chain([Token::Done]).collect();
    let ideal = run_full(Box::<ValWrite>::default(), vec![vals.clone()], 0, None).unwrap();
    let real = run_full(Box::new(ValWrite::default().with_memory(mem().port(1))), vec![vals], 0, None).unwrap();
    assert_eq!(ideal.written, real.written);
    // Lines of 4 values go out as they fill, the last, partial one at D; the writer ends when
    // that one is acknowledged.
    assert_eq!(real.cycles, ideal.cycles + 10);
    // D arrives at cycle 10: the last line's transfer takes 1 cycle, its latency 10.
    assert_eq!(real.cycles, 10 + 1 + 10);
}

#[test]
fn memory_does_not_change_outputs_under_any_capacity() {
    for cap in common::CAPACITIES {
        let ideal = run_full(scan(false), vec![toks("0, S0, 1, 0, S1, D")], 2, cap).unwrap();
        let real = run_full(scan(true), vec![toks("0, S0, 1, 0, S1, D")], 2, cap).unwrap();
        assert_eq!(ideal.outputs, real.outputs, "capacity {cap:?}");
        assert!(real.cycles > ideal.cycles);
    }
}

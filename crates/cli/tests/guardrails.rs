//! Size guardrails, cancellation and progress: every size that user input decides is estimated
//! and refused with one line (exit code 2) before it is allocated, also under a 4 GB
//! address-space cap (`ulimit -v`), where an allocation failure would abort the process;
//! Ctrl-C stops a run with a summary and leaves no file behind; the control hooks never change
//! results. `scripts/fuzz.py` runs many more mutated inputs the same way.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::{cli, example_path, examples_dir, parse, tmpdir, write};
use fuseflow::{run, run_with, DriverError, Phase, RunConfig, RunControl};

/// Address-space cap of the capped runs, in KiB (`ulimit -v` units): 4 GiB.
const CAP_KIB: u64 = 4 << 20;

/// Runs `fuseflow args...` with its address space capped at 4 GiB: (exit code, stderr).
fn capped(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_fuseflow"))
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

/// Asserts a refusal under the cap: exit code 2, one line, every needle in it.
fn refused(args: &[&str], needles: &[&str]) {
    let (code, err) = capped(args);
    assert_eq!(code, 2, "{args:?}: exit code {code}: {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn huge_declared_shapes_are_refused_before_allocating() {
    let d = tmpdir("guard-shapes");
    let huge = write(
        &d,
        "huge.ff",
        "input A[4000000000, 4000000000] dcsr = random(density=0.1)\noutput X[4000000000] dense\nX(i) = sum(j, A(i,j))\n",
    );
    refused(&["run", &huge], &["input A more than 16 EiB", "needs more than 16 EiB", "memory limit"]);
    let dims = vec!["4"; 30].join(",");
    let idx: Vec<String> = (0..30).map(|k| format!("i{k}")).collect();
    let deep = write(
        &d,
        "deep.ff",
        &format!("input A[{dims}] dense = random(density=0.5)\noutput X[4] dense\nX(i0) = A({})\n", idx.join(",")),
    );
    refused(&["run", &deep], &["input A", "--mem-limit"]);
    let param = write(
        &d,
        "param.ff",
        "param N = 10000008\ninput A[N, N] dcsr = random(density=0.1)\ninput b[N] dense = random(density=1)\n\
         output x[N] dense\nx(i) = A(i,j) * b(j)\n",
    );
    refused(&["run", &param], &["input A", "TiB", "memory limit"]);
    let matmul = write(
        &d,
        "matmul.ff",
        "input A[20000, 20000] dense = random(density=1)\ninput B[20000, 20000] dense = random(density=1)\n\
         output X[20000, 20000] dense\nX(i,j) = A(i,k) * B(k,j)\n",
    );
    refused(&["run", &matmul], &["input A 3.0 GiB", "memory limit"]);
    // Each input is estimated again, generation included, when it is built.
    refused(&["run", &param, "--mem-limit", "200T"], &["input A[10000008, 10000008] dcsr = random(density=0.1", "TiB"]);
    // The whole run is estimated too: outputs stored dense whatever the inputs.
    let out = write(
        &d,
        "out.ff",
        "input a[100000] dense = random(density=1)\ninput b[100000] dense = random(density=1)\n\
         output X[100000, 100000] dense\nX(i,j) = a(i) * b(j)\n",
    );
    refused(&["run", &out, "--mem-limit", "1G"], &["X stored dense 74.5 GiB", "memory limit is 1.0 GiB"]);
}

#[test]
fn data_files_are_checked_before_conversion() {
    let d = tmpdir("guard-files");
    write(&d, "big.mtx", "%%MatrixMarket matrix coordinate real general\n4000000000 4000000000 1\n1 1 2.5\n");
    write(&d, "wide.mtx", "%%MatrixMarket matrix coordinate real general\n100000 100000 1\n1 1 2.5\n");
    let big = write(&d, "big.ff", "input A[4000000000, 4000000000] dense = file(\"big.mtx\")\noutput X[4000000000] dense\nX(i) = sum(j, A(i,j))\n");
    refused(&["run", &big], &["input A", "memory limit"]);
    // A sparse file converted to a dense format: the padding is what is refused.
    let wide = write(
        &d,
        "wide.ff",
        "input A[100000, 100000] dense = file(\"wide.mtx\")\noutput X[100000] dense\nX(i) = sum(j, A(i,j))\n",
    );
    refused(&["run", &wide, "--mem-limit", "512M"], &["input A", "74.5 GiB"]);
}

#[test]
fn reference_work_is_bounded() {
    let d = tmpdir("guard-work");
    let p = write(
        &d,
        "mm.ff",
        "input A[300, 300] dense = random(density=1)\ninput B[300, 300] dense = random(density=1)\n\
         output X[300, 300] dense\nX(i,j) = A(i,k) * B(k,j)\n",
    );
    refused(&["run", &p, "--max-work", "1000000"], &["27000000 products", "work limit of 1000000", "--max-work"]);
}

#[test]
fn long_fused_chains_are_refused_before_lowering() {
    let d = tmpdir("guard-chains");
    // 2000 fused statements: quadratic streams before pruning.
    let mut chain = String::from("input A[4, 4] dense = random(density=1)\ninput s[4] dense = random(density=1)\n");
    for k in 0..2000 {
        chain.push_str(&format!("{} T{k}[4, 4] dense\n", if k == 1999 { "output" } else { "temp" }));
    }
    for k in 0..2000 {
        let prev = if k == 0 { "A".to_string() } else { format!("T{}", k - 1) };
        chain.push_str(&format!("T{k}(i,j) = {prev}(i,j) * s(i)\n"));
    }
    let chain = write(&d, "chain.ff", &chain);
    refused(&["graph", &chain, "--fusion", "full"], &["fused group 0 (statements 0-1999)", "split it"]);
    refused(&["run", &chain, "--fusion", "full"], &["fused group 0", "split it"]);
    // Each statement reads the previous one twice: the inlined expression doubles each time.
    let mut square = String::from("input A[4, 4] dense = random(density=1)\n");
    for k in 0..24 {
        square.push_str(&format!("{} T{k}[4, 4] dense\n", if k == 23 { "output" } else { "temp" }));
    }
    for k in 0..24 {
        let prev = if k == 0 { "A".to_string() } else { format!("T{}", k - 1) };
        square.push_str(&format!("T{k}(i,j) = {prev}(i,j) * {prev}(i,j)\n"));
    }
    let square = write(&d, "square.ff", &square);
    refused(&["orders", &square, "--fusion", "full"], &["33554431 expression nodes"]);
    // Unfused, each statement compiles alone.
    let (code, err) = capped(&["graph", &square, "--stmt", "23"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn huge_fifo_depths_run_in_small_memory() {
    let spmm = example_path("spmm_gustavson.ff");
    for args in [vec!["--fifo-depth", "1073741824"], vec!["--set", "fifo_depth=1073741824"], vec!["--fifo-depth", "16"]]
    {
        let mut all = vec!["run", spmm.as_str()];
        all.extend(args.iter().copied());
        let (code, err) = capped(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}

#[test]
fn cycle_limit_names_the_limit_and_the_flag() {
    refused(
        &["run", &example_path("spmm_gustavson.ff"), "--max-cycles", "100"],
        &["cycle limit of 100 cycles", "--max-cycles"],
    );
}

#[test]
fn bad_memory_limits_are_errors() {
    let (code, _, err) = cli(&["run", &example_path("add.ff"), "--mem-limit", "8X"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown unit"), "{err}");
}

#[test]
fn negative_or_non_finite_tolerances_are_errors() {
    for (flag, v) in [("--abs-tol", "-1"), ("--rel-tol", "nan"), ("--abs-tol", "inf")] {
        let (code, _, err) = cli(&["run", &example_path("add.ff"), &format!("{flag}={v}")]);
        assert_eq!(code, 2, "{flag} {v}: {err}");
        assert!(err.contains("is not a tolerance") && err.contains(flag), "{err}");
    }
}

/// An `.npz` input whose member inflates to more than the memory limit is refused before it
/// is read, by the members' declared sizes.
#[test]
fn an_npz_input_is_budgeted_by_what_it_inflates_to() {
    let dir = tmpdir("npz-budget");
    let zeros: Vec<u8> = [b"\x93NUMPY\x01\x00".as_slice(), &{
        let mut h = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4000, 4000), }".to_vec();
        while !(h.len() + 11).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut v = (h.len() as u16).to_le_bytes().to_vec();
        v.extend(h);
        v
    }]
    .concat();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    use std::io::Write;
    w.start_file("arr_0.npy", opts).unwrap();
    w.write_all(&zeros).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..122 {
        w.write_all(&chunk).unwrap();
    }
    let bytes = w.finish().unwrap().into_inner();
    assert!(bytes.len() < 1 << 20, "128 MB of zeros deflate to {} bytes", bytes.len());
    std::fs::write(dir.join("x.npz"), bytes).unwrap();
    // The declared tensor is small: only the archive's inflated size is over the limit.
    let prog =
        write(&dir, "p.ff", "input X[10, 10] dense = file(\"x.npz\")\noutput Y[10, 10] dense\nY(i,j) = X(i,j) * 2\n");
    let (code, _, err) = cli(&["run", &prog, "--mem-limit", "64M"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("reading") && err.contains("x.npz") && err.contains("memory limit"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn control_hooks_do_not_change_results_and_report_phases() {
    let p = fuseflow_ir::load(&examples_dir().join("gcn.ff"), &Default::default()).unwrap();
    let cfg = RunConfig { fusion: fuseflow_compiler::Fusion::Partial, ..RunConfig::default() };
    let plain = run(&p, &examples_dir(), &cfg).unwrap();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = phases.clone();
    let control = RunControl {
        cancel: Some(Arc::new(AtomicBool::new(false))),
        observer: Some(Arc::new(move |e: &fuseflow::RunProgress| seen.lock().unwrap().push(e.phase))),
    };
    let cfg_limited = RunConfig { mem_limit: Some(1 << 30), max_work: Some(1 << 30), ..cfg.clone() };
    let watched = run_with(&p, &examples_dir(), &cfg_limited, &control).unwrap();
    assert_eq!((plain.cycles, plain.tokens, plain.verified), (watched.cycles, watched.tokens, watched.verified));
    let phases = phases.lock().unwrap();
    assert_eq!(phases.first(), Some(&Phase::Loading));
    assert!(phases.contains(&Phase::Reference { statement: 0, statements: p.stmts.len() }), "{phases:?}");
    assert!(phases.contains(&Phase::Compiling));
    let groups = plain.groups.len();
    assert!(phases.contains(&Phase::Simulating { group: groups - 1, groups }), "{phases:?}");
}

#[test]
fn cancellation_stops_with_what_finished() {
    let p = parse("input A[8, 8] dcsr = random(density=0.5)\noutput X[8] dense\nX(i) = sum(j, A(i,j))\n");
    let control = RunControl { cancel: Some(Arc::new(AtomicBool::new(true))), observer: None };
    let e = run_with(&p, Path::new("."), &RunConfig::default(), &control).unwrap_err();
    assert!(matches!(e, DriverError::Cancelled { .. }), "{e}");
    assert!(e.to_string().contains("loading inputs"), "{e}");
}

#[test]
fn ctrl_c_stops_a_run_and_writes_no_file() {
    let d = tmpdir("guard-ctrlc");
    // Long enough (seconds in a test build) that the signal arrives while it runs.
    let p = write(
        &d,
        "long.ff",
        "input A[3000, 3000] dcsr = random(density=0.02)\ninput B[3000, 3000] dcsr = random(density=0.02)\n\
         output X[3000, 3000] dcsr\nX(i,j) = A(i,k) * B(k,j)\n",
    );
    let trace = d.join("t.json");
    let child = common::bin()
        .args(["run", &p, "--trace", trace.to_str().unwrap(), "--stats", d.join("s.json").to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.starts_with("interrupted: cancelled while"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("long.ff")], "files left: {left:?}");
}

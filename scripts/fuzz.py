#!/usr/bin/env python3
"""Mutation fuzzing of the `fuseflow` command under an address-space cap.

Runs mutated programs (the examples with sizes, formats, densities, fusion and flags
changed, lines dropped or duplicated, bytes flipped), mutated data files (Matrix Market,
.npy, SAM tensor directories) and mutated exported graphs (`compile --emit comal` output
with bytes flipped, fed to `simulate --comal`), each with `ulimit -v` set, and counts
outcomes: ok (exit 0, 1 or 2: a result, a mismatch or a one-line error), abort (an
allocation failure or SIGABRT), panic, crash (another signal), hang (past the time limit)
and noisy (exit 2 with more than one stderr line). Reproducible: case k uses seed + k.

    scripts/fuzz.py [--cases N] [--seed S] [--cap-gib G] [--timeout SECONDS] [--bin PATH]
                    [--jobs J] [--keep DIR]

Exit status 1 if any case aborted, panicked, crashed or hung. Failing cases are copied to
--keep (default: fuzz-failures/) with the command line that reproduces them.
"""

import argparse
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

MEDIUM = ["3000", "20000", "65536", "100000", "1000000", "10000008"]
HUGE = ["0", "1", "2", "7", "65536", "1000000", "10000008", "2147483647", "4000000000",
        "4294967295", "4294967296", "18446744073709551615", "99999999999999999999", "-1"]
FORMATS = ["dense", "csr", "csc", "dcsr", "dcsc", "sparse", "csf", "(dense, compressed)",
           "(compressed, dense)", "(dense)", "dense order(1,0)"]
FLAGS = [["--fusion", "full"], ["--fusion", "partial"], ["--fusion", "0-1"], ["--fifo-depth", "1"],
         ["--fifo-depth", "1073741824"], ["--set", "fifo_depth=1073741824"], ["--set", "fifo_depth=4"],
         ["--hw", "rda"], ["--hw", "comal"], ["--max-cycles", "1000"], ["--no-verify"],
         ["--param", "N=4000000000"], ["--param", "N=10000008"], ["--param", "F=100000"],
         ["--preset", "paper"], ["--seed", "3"], ["--order", "k,i,j"], ["--trace-limit", "5"]]


def mutate_program(text, rng):
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(10)
        if kind >= 8 and lines:  # a param or a dimension becomes large but plausible
            i = rng.randrange(len(lines))
            if lines[i].startswith("param"):
                lines[i] = re.sub(r"=\s*\d+", "= " + rng.choice(MEDIUM), lines[i])
            else:
                lines[i] = re.sub(r"\[(\w+)", lambda m: "[" + rng.choice(MEDIUM), lines[i], count=1)
            continue
        if kind == 0 and lines:  # a number becomes a huge or odd one
            i = rng.randrange(len(lines))
            nums = list(re.finditer(r"\d+(\.\d+)?", lines[i]))
            if nums:
                m = rng.choice(nums)
                lines[i] = lines[i][:m.start()] + rng.choice(HUGE) + lines[i][m.end():]
        elif kind == 1 and lines:  # a format changes
            i = rng.randrange(len(lines))
            lines[i] = re.sub(r"\b(dense|csr|csc|dcsr|dcsc|sparse|csf)\b", rng.choice(FORMATS), lines[i], count=1)
        elif kind == 2 and lines:  # a density changes
            i = rng.randrange(len(lines))
            lines[i] = re.sub(r"density=[0-9.]+", "density=" + rng.choice(["0", "1", "0.5", "1e-9", "2", "nan"]), lines[i])
        elif kind == 3 and lines:  # a line goes
            del lines[rng.randrange(len(lines))]
        elif kind == 4 and lines:  # a line repeats
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        elif kind == 5:  # a fuse line over everything
            lines.append("fuse 0-%d" % rng.randint(0, 40))
        elif kind == 6 and lines:  # a byte flips
            i = rng.randrange(len(lines))
            if lines[i]:
                j = rng.randrange(len(lines[i]))
                lines[i] = lines[i][:j] + chr(rng.randrange(32, 127)) + lines[i][j + 1:]
        else:  # a shape grows a dimension
            i = rng.randrange(len(lines)) if lines else 0
            if lines:
                lines[i] = re.sub(r"\[([^\]]*)\]", lambda m: "[" + m.group(1) + ", " + rng.choice(HUGE[:9]) + "]",
                                  lines[i], count=1)
    return "\n".join(lines) + "\n"


def mtx_file(rng):
    rows, cols = rng.choice(HUGE[:10]), rng.choice(HUGE[:10])
    nnz = rng.choice(HUGE)
    body = ["%%MatrixMarket matrix coordinate " + rng.choice(["real", "integer", "pattern", "complex"]) + " " +
            rng.choice(["general", "symmetric", "skew-symmetric"]), f"{rows} {cols} {nnz}"]
    for _ in range(rng.randint(0, 5)):
        body.append(f"{rng.choice(HUGE[:6])} {rng.choice(HUGE[:6])} {rng.random()}")
    return ("\n".join(body) + "\n").encode()


def npy_file(rng):
    shape = tuple(int(rng.choice(HUGE[:10])) for _ in range(rng.randint(1, 3)))
    header = "{'descr': '<f8', 'fortran_order': %s, 'shape': %s, }" % (rng.choice(["False", "True"]), str(shape))
    header = header.ljust(118) + "\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    return data + os.urandom(rng.randint(0, 64))


def flip(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def classify(code, err, timed_out):
    if timed_out:
        return "hang"
    if "memory allocation of" in err or code in (-signal.SIGABRT, 134):
        return "abort"
    if "panicked" in err or code == 101:
        return "panic"
    if code is not None and code < 0 or code in (139, 137):
        return "crash"
    if code == 2 and len(err.strip().splitlines()) != 1:
        return "noisy"
    if code in (0, 1, 2):
        return f"exit{code}"
    return "crash"


def run_case(k, args, work):
    rng = random.Random(args.seed + k)
    d = os.path.join(work, f"case{k}")
    os.makedirs(d, exist_ok=True)
    kind = rng.choice(["program", "program", "program", "data", "graph"])
    examples = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".ff"))
    if kind == "program":
        src = open(os.path.join(EXAMPLES, rng.choice(examples))).read()
        prog = os.path.join(d, "p.ff")
        open(prog, "w").write(mutate_program(src, rng))
        cmd = [rng.choice(["run", "run", "graph", "orders"]), prog]
        for _ in range(rng.randint(0, 2)):
            flags = rng.choice(FLAGS)
            if cmd[0] != "run" and flags[0] not in ("--fusion", "--param", "--preset", "--order"):
                continue
            cmd += flags
    elif kind == "data":
        ext = rng.choice(["mtx", "npy"])
        data = mtx_file(rng) if ext == "mtx" else npy_file(rng)
        if rng.random() < 0.5:
            data = flip(data, rng)
        open(os.path.join(d, "a." + ext), "wb").write(data)
        dims = ", ".join(rng.choice(HUGE[:10]) for _ in range(rng.randint(1, 2)))
        fmt = rng.choice(["dense", "dcsr", "csr", "sparse"])
        prog = os.path.join(d, "p.ff")
        open(prog, "w").write(f"input A[{dims}] {fmt} = file(\"a.{ext}\")\noutput X[{dims.split(',')[0]}] dense\n"
                              "X(i) = sum(j, A(i,j))\n")
        cmd = ["run", prog]
    else:
        src = os.path.join(EXAMPLES, rng.choice(["spmm_gustavson.ff", "spmv.ff", "sddmm.ff", "add.ff", "gcn.ff"]))
        out = os.path.join(d, "g")
        subprocess.run([args.bin, "compile", src, "--emit", "comal", "--out", out], capture_output=True, timeout=60)
        files = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs]
        for f in rng.sample(files, min(len(files), rng.randint(1, 3))):
            data = open(f, "rb").read()
            open(f, "wb").write(flip(data, rng) if rng.random() < 0.7 else data[: rng.randrange(len(data) + 1)])
        cmd = ["simulate", "--comal", os.path.join(out, "graph.bin"), "--data", out]
        if rng.random() < 0.3:
            cmd += rng.choice([["--fifo-depth", "1073741824"], ["--max-cycles", "100000"]])
    shell = f"ulimit -v {args.cap_gib << 20} && exec \"$0\" \"$@\""
    try:
        p = subprocess.run(["sh", "-c", shell, args.bin] + cmd, capture_output=True, timeout=args.timeout, cwd=d)
        outcome = classify(p.returncode, p.stderr.decode(errors="replace"), False)
        err = p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        outcome, err = "hang", (e.stderr or b"").decode(errors="replace")
    if not outcome.startswith("exit"):
        keep = os.path.join(args.keep, f"{outcome}-{k}")
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(d, keep)
        open(os.path.join(keep, "command"), "w").write(" ".join(["fuseflow"] + cmd) + "\n" + err[-4000:])
    shutil.rmtree(d, ignore_errors=True)
    return kind, outcome


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap-gib", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "fuseflow"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", default="fuzz-failures")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin}: no such binary (cargo build --release -p fuseflow)")
    counts = {}
    with tempfile.TemporaryDirectory(prefix="fuseflow-fuzz-") as work:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for kind, outcome in pool.map(lambda k: run_case(k, args, work), range(args.cases)):
                counts.setdefault(kind, {}).setdefault(outcome, 0)
                counts[kind][outcome] += 1
    total = {}
    for kind in sorted(counts):
        print(kind.ljust(8), " ".join(f"{o}={n}" for o, n in sorted(counts[kind].items())))
        for o, n in counts[kind].items():
            total[o] = total.get(o, 0) + n
    print("total   ", " ".join(f"{o}={n}" for o, n in sorted(total.items())), f"(cases {args.cases}, seed {args.seed},",
          f"cap {args.cap_gib} GiB, timeout {args.timeout:g} s)")
    bad = sum(n for o, n in total.items() if o in ("abort", "panic", "crash", "hang"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

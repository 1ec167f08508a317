"""Run every benchmark and print one table (the figures of docs/benchmarks.md).

    .venv/bin/python bench/run_all.py [--quick] [--skip operator,...] [--out DIR]

Runs bench/wire.py, node.py, worker.py, server.py, operator.py, notify.py and latency.py
one after another (never in parallel: they would measure each other), each as
its own process, keeps every full output in --out (default a temporary folder)
and prints the machine (cores, CPU model, RAM, load) and one table with the
figure lines of every script.  --quick uses short runs (a smoke test of the
benchmarks, not figures to record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (full arguments, quick arguments)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "wire": ([], ["--events", "10000"]),
    "node": ([], ["--frames", "60", "--idle-seconds", "4"]),
    "worker": ([], ["--events", "3000", "--gallery", "2000", "--rates", "1000",
                    "--seconds", "2"]),
    "server": ([], ["--nodes", "50", "--seconds", "5"]),
    "operator": ([], ["--single", "1", "--batch", "5"]),
    "notify": ([], ["--seconds", "5"]),
    "latency": (["--json"], ["--json", "--appearances", "6"]),
}
NOISE = re.compile(r"^(\s*$|Traceback|\s+File |.*it/s\]|.*photo/s\]|INFO|WARNING)")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024 ** 2, 1),
            "load": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "kernel": platform.release()}


def latency_rows(data: dict) -> list[tuple[str, str]]:
    lat, node, commit = data["latency_ms"], data["node_ms"], data["commit_ms"]
    rows = [
        ("face in frame -> sighting row p50 / p99 (ms, target p99 < 400)",
         f"{lat['p50']:.0f} / {lat['p99']:.0f}"),
        ("  node share (capture, detect, embed) p50 / p99 (ms)",
         f"{node['p50']:.0f} / {node['p99']:.0f}"),
        ("  face in frame -> worker commit p50 / p99 (ms)",
         f"{commit['p50']:.0f} / {commit['p99']:.0f}"),
        ("appearances with a sighting", f"{data['with_a_sighting']} / {data['appearances']}"),
    ]
    rows += [(f"resident memory of `{name}` (MB)", f"{mb:.0f}")
             for name, mb in data["rss_mb"].items()]
    return rows


def run(name: str, args: list[str], out: Path, timeout: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args],
                           capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
        code, text = p.returncode, p.stdout + ("\n" + p.stderr if p.returncode else "")
    except subprocess.TimeoutExpired as e:
        code, text = 124, f"timed out after {timeout:.0f} s\n{e.stdout or ''}"
    (out / f"{name}.txt").write_text(text)
    return code, text, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    ap.add_argument("--out", type=Path, default=None, help="folder for the full outputs")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(BENCHES)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="facegrid-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    before = machine()
    table: list[tuple[str, str, str]] = []
    failed = []
    for name, (full, quick) in BENCHES.items():
        if name in skip:
            continue
        print(f"running bench/{name}.py …", file=sys.stderr, flush=True)
        code, text, took = run(name, quick if args.quick else full, out, args.timeout)
        if code != 0:
            failed.append(name)
            table.append((name, f"FAILED (exit {code}, {took:.0f} s): see {out / name}.txt",
                          ""))
            continue
        if name == "latency":
            table += [(name, k, v) for k, v in latency_rows(json.loads(text.splitlines()[-1]))]
        else:
            table += [(name, line.rstrip(), "") for line in text.splitlines()
                      if not NOISE.match(line) and any(c.isdigit() for c in line)]
        table.append((name, f"(run took {took:.0f} s)", ""))
    after = machine()
    print(f"machine: {before['cores']} cores, {before['cpu']}, {before['ram_gib']} GiB RAM, "
          f"Python {before['python']}, Linux {before['kernel']}")
    print(f"load average before {before['load']} after {after['load']}"
          + ("   (--quick: smoke-test figures)" if args.quick else ""))
    width = max(len(r[1]) for r in table) if table else 40
    print(f"{'bench':<9} {'figure':<{width}} value")
    print(f"{'-' * 9} {'-' * width} {'-' * 12}")
    last = None
    for bench, figure, value in table:
        print(f"{bench if bench != last else '':<9} {figure:<{width}} {value}")
        last = bench
    print(f"full outputs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

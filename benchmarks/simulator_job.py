"""Wall time and peak memory of a real `nvflare simulator` run of a job, and its results table.

    python benchmarks/simulator_job.py                       # jobs/feddcg, -n 18, default -t
    python benchmarks/simulator_job.py --threads 18 --workspace /tmp/ws18

Memory is sampled from /proc every 0.2 s over the whole process tree (the simulator, its server and every client
worker it starts): "peak tree" is the largest sum of resident memory seen at one moment, "peak process" the largest
single process. Linux only. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tree_rss(root: int) -> tuple[int, int, int]:
    """(sum of RSS, largest RSS, process count) of root and all its descendants."""
    pending, seen = [root], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        pending += _children(pid)
    sizes = [_rss_bytes(p) for p in seen]
    return sum(sizes), max(sizes), len(seen)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", type=Path, default=REPO / "jobs/feddcg")
    parser.add_argument("--clients", "-n", type=int, default=18)
    parser.add_argument("--threads", "-t", type=int, default=None, help="simulator -t (default: its own default, 1)")
    parser.add_argument("--workspace", "-w", type=Path, default=Path("/tmp/feddcg_bench_ws"))
    args = parser.parse_args(argv)
    if args.workspace.exists():
        shutil.rmtree(args.workspace)
    nvflare = Path(sys.executable).with_name("nvflare")
    command = [str(nvflare), "simulator", str(args.job), "-n", str(args.clients), "-w", str(args.workspace)]
    if args.threads:
        command += ["-t", str(args.threads)]
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_tree = peak_single = peak_count = 0
    while process.poll() is None:
        total, largest, count = tree_rss(process.pid)
        peak_tree, peak_single, peak_count = max(peak_tree, total), max(peak_single, largest), max(peak_count, count)
        time.sleep(0.2)
    wall = time.time() - start
    results_path = args.workspace / "server/simulate_job/app_server/results.json"
    print(f"command: {' '.join(command)}")
    print(f"exit code {process.returncode}, wall {wall:.0f} s ({wall / 60:.1f} min)")
    print(f"peak memory: process tree {peak_tree / 2**30:.2f} GiB, largest process {peak_single / 2**30:.2f} GiB, "
          f"up to {peak_count} processes")
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        for scope in ("unseen_domain", "seen_domains"):
            acc, zs = results["accuracy"][scope], results["zero_shot"][scope]
            print(f"{scope}: base {acc['base']:.2f} new {acc['new']:.2f} hm {acc['hm']:.2f} "
                  f"(zero-shot base {zs['base']:.2f} new {zs['new']:.2f} hm {zs['hm']:.2f})")
    else:
        print(f"no results at {results_path}; see {args.workspace}/server/log.txt")
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Print a Markdown table of criterion results: median time and GFLOP/s.

Usage: python3 tools/criterion_table.py [GROUP ...]   (default: every group)
Reads target/criterion/<group>/<bench...>/new/{estimates,benchmark}.json.
"""
import json
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent / "target" / "criterion"
groups = sys.argv[1:] or sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")
print("| benchmark | median | GFLOP/s |")
print("|---|---:|---:|")
for group in groups:
    for est in sorted((root / group).glob("**/new/estimates.json")):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        median_ns = json.loads(est.read_text())["median"]["point_estimate"]
        tp = bench.get("throughput") or {}
        flops = tp.get("Elements")
        gflops = f"{flops / median_ns:.1f}" if flops else ""
        ms = median_ns / 1e6
        t = f"{ms:.3f} ms" if ms < 100 else f"{ms / 1000:.3f} s"
        print(f"| {bench['full_id']} | {t} | {gflops} |")

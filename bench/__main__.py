"""``make bench`` / ``python -m bench``: every benchmark in turn (each prints its figures)."""

import runpy
import sys

BENCHES = ["bench.bench_synth", "bench.bench_read", "bench.bench_load"]

if __name__ == "__main__":
    for name in BENCHES:
        print(f"=== {name}", flush=True)
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")

"""Loading a paper-size pair: cold CSV parse + validation vs the cache, ratios measured in one run.

    python benchmarks/bench_data.py [--genes 18460] [--repeats 3] [--keep DIR]

Writes a synthetic pair of `--genes` genes (default 18,460 = the paper's 10,000 + 2,360 + 6,100; the
generator's 54/13/33 % split gives 9,968 / 2,400 / 6,092) into a temporary folder, then times, each
`--repeats` times in alternation, `deepdiff.data.load_pair`:
- parse: no cache (read, parse, validate, align, targets);
- hash hit: the cache holds the pair but the stat index does not (files read and sha256-hashed, then
  the cache file is read);
- hit: the usual case, unchanged files (stat fingerprint known: no CSV is read).
Prints medians and ratios; asserts nothing. Loading runs on the CPU (no device is involved).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepdiff.data import load_pair  # noqa: E402
from deepdiff.synthetic import write_synthetic_pair  # noqa: E402


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=18_460)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="write (or reuse) the pair here instead of a temp folder")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-data-"))
    data, cache = work / "pair", work / "cache"
    try:
        if not (data / "Cell2.expr.csv").is_file():
            seconds = timed(lambda: write_synthetic_pair(data, genes=args.genes, seed=0))
            print(f"wrote {args.genes} genes in {seconds:.1f} s")
        size = sum(p.stat().st_size for p in data.glob("*.csv")) / 2**20
        pair = load_pair(data, "Cell1", "Cell2", cache_dir=cache)  # fills the cache and the stat index
        sizes = "/".join(str(len(pair.split(s))) for s in ("train", "valid", "test"))
        cache_mb = sum(p.stat().st_size for p in cache.glob("*.arrow")) / 2**20
        print(f"pair: {sizes} genes (train/valid/test), 8 CSV files {size:.0f} MB, cache file {cache_mb:.0f} MB; "
              f"load average {os.getloadavg()[0]:.2f}")
        times: dict[str, list[float]] = {"parse": [], "hash hit": [], "hit": []}
        for _ in range(args.repeats):
            times["parse"].append(timed(lambda: load_pair(data, "Cell1", "Cell2")))
            for index in cache.glob("*.key"):
                index.unlink()  # forget the stat fingerprints: the next load hashes the files
            times["hash hit"].append(timed(lambda: load_pair(data, "Cell1", "Cell2", cache_dir=cache)))
            times["hit"].append(timed(lambda: load_pair(data, "Cell1", "Cell2", cache_dir=cache)))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, values in times.items():
            print(f"  {name:9s} {med[name]:7.3f} s  (runs: {', '.join(f'{v:.3f}' for v in values)})  "
                  f"parse/{name} x{med['parse'] / med[name]:.1f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

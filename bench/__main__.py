"""`make bench`: every benchmark module in turn; each prints its figures and ratios."""

from __future__ import annotations

import importlib
import sys
import time

MODULES = ["bench.bench_emulator", "bench.bench_ingest", "bench.bench_models"]


def main(names: list[str]) -> int:
    failed = []
    for name in names or MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"== {name}: not available ({exc})")
            continue
        print(f"\n==== {name}")
        began = time.perf_counter()
        try:
            module.run()
        except Exception as exc:  # report and go on: one broken bench must not hide the rest
            print(f"!! {name} failed: {exc!r}")
            failed.append(name)
        print(f"({name} took {time.perf_counter() - began:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

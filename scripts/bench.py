#!/usr/bin/env python3
"""The benchmark suite: ``scripts/bench.py {all,sampler,throughput,…} [--quick] [--write-docs]``.

See ``bench/cli.py`` for the subcommands and ``docs/benchmarks.md`` for the results.
"""

from __future__ import annotations

import os
import sys

# The repository root replaces this script's directory on the path, so that ``bench``
# names the package next to ``scripts/``, not this file.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.cli import main  # noqa: E402 - after the path set-up above

if __name__ == "__main__":
    raise SystemExit(main())

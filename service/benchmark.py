"""`lookalike bench [--part P1,P2,P5,P6] ...`: the benchmark suite of a source checkout (bench/suite.py).

The suite starts servers, peers and load generators as processes of their own and
prints ratio tables; it lives beside the package, not in it, so it runs from a
clone (pip install -e .), not from an installed wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.py"


def main(argv: Sequence[str]) -> int:
    if not SUITE.is_file():
        print(f"lookalike bench needs a source checkout: {SUITE} is missing "
              "(git clone the repository and pip install -e .)", file=sys.stderr)
        return 2
    root = str(SUITE.parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.suite import main as suite_main

    return suite_main(list(argv))

"""Run the DeepDiff paper's ablation study: `python tune/run_ablation.py --help` (the same as `deepdiff-ablation`).

The study code is the installed package `deepdiff_study` (pip install -e ".[tune]"); this is its entry point.
"""

import sys

from deepdiff_study.driver import main

if __name__ == "__main__":
    sys.exit(main())

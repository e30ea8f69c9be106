"""Export the best trial of every grid cell of a study: `python tune/export_best.py --help` (the same as
`deepdiff-export`). Reads MLflow only; the code is the installed package `deepdiff_study`."""

import sys

from deepdiff_study.export import main

if __name__ == "__main__":
    sys.exit(main())

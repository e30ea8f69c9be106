"""The study report: `python ablations/report.py --experiment NAME --out DIR [--mlflow-uri URI]`
(the same as the `deepdiff-report` command; see deepdiff_study/report/)."""

import sys

from deepdiff_study.report import main

if __name__ == "__main__":
    sys.exit(main())

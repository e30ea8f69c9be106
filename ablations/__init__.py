"""The study's definitions as data: `paper.yaml` (the paper's grid and search space).

Installed as the package ``deepdiff_study.ablations`` (see pyproject.toml), so the grid file ships
inside the wheel and `deepdiff_study.grid.PAPER_GRID` finds it wherever the project is installed.
"""

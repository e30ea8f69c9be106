"""deepdiff-tune: DeepDiff (Sekhon, Singh, Qi 2018) differential gene expression from histone marks.

This is the import package of the distribution ``deepdiff-tune`` (not PyPI's unrelated ``deepdiff``).
"""

__version__ = "0.1.0"
DISTRIBUTION = "deepdiff-tune"

"""The DeepDiff paper's ablation study as data: the grid and search space (`paper.yaml`) and its loader."""

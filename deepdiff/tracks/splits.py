"""Genes -> train / valid / test, the same for both cells of a pair: `assign_splits`.

- **random** (default): the genes, sorted by id, are permuted by ``numpy.random.default_rng(seed)``; the
  first ``round(N * train)`` go to train, the next ``round(N * valid)`` to valid, the rest to test. The
  default shares are the paper's 10,000 / 2,360 / 6,100 of 18,460 genes. The same genes and seed give the
  same split whatever order the annotation lists them in.
- **held-out chromosomes** (``test_chroms``, and optionally ``valid_chroms``): the genes on the test
  chromosomes are the test split; valid is the genes on ``valid_chroms`` or, without them, a random share
  of the rest drawn as above in the paper's proportion of valid to train (2,360 : 10,000).

Chromosome names given by a user are matched to the annotation's as tracks are (``chr8`` = ``8``). Every
split must get at least `MIN_PER_SPLIT` genes (a PCC needs two); else a `ConfigError` naming the option.
"""

from __future__ import annotations

import numpy as np

from deepdiff.errors import ConfigError
from deepdiff.tracks.genome import chrom_key

PAPER_SIZES = (10_000, 2_360, 6_100)  # train, valid, test genes of every pair of the paper (18,460)
PAPER_FRACTIONS = (PAPER_SIZES[0] / sum(PAPER_SIZES), PAPER_SIZES[1] / sum(PAPER_SIZES))
MIN_PER_SPLIT = 2
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


def assign_splits(ids: np.ndarray, chroms: np.ndarray, *, seed: int, fractions: tuple[float, float] = PAPER_FRACTIONS,
                  test_chroms: tuple[str, ...] = (), valid_chroms: tuple[str, ...] = ()) -> np.ndarray:
    """(N,) int8 split code (`SPLIT_CODES`) of the genes `ids` on chromosomes `chroms`."""
    n = len(ids)
    codes = np.zeros(n, dtype=np.int8)
    if not test_chroms:
        if valid_chroms:
            raise ConfigError("--valid-chroms needs --test-chroms (held-out chromosomes for both, or neither)")
        _draw(codes, np.arange(n), ids, seed, fractions)
        return _checked(codes, "--split-fractions")
    test = _on(chroms, test_chroms, "--test-chroms")
    valid = _on(chroms, valid_chroms, "--valid-chroms") if valid_chroms else np.zeros(n, bool)
    if (test & valid).any():
        raise ConfigError(f"--valid-chroms {','.join(valid_chroms)}: shares chromosomes with --test-chroms "
                          f"{','.join(test_chroms)}; expected different chromosomes")
    codes[test] = SPLIT_CODES["test"]
    codes[valid] = SPLIT_CODES["valid"]
    if not valid_chroms:
        rest = np.flatnonzero(~test)
        share = fractions[1] / (fractions[0] + fractions[1])
        _draw(codes, rest, ids, seed, (1.0 - share, share))
    return _checked(codes, "--test-chroms" if not valid_chroms else "--test-chroms/--valid-chroms")


def _draw(codes: np.ndarray, among: np.ndarray, ids: np.ndarray, seed: int, fractions: tuple[float, float]) -> None:
    """Seeded shares of the genes `among`: train, valid, then test (in place)."""
    ordered = among[np.argsort(ids[among].astype(str), kind="stable")]
    shuffled = ordered[np.random.default_rng(seed).permutation(len(ordered))]
    n_train = round(len(shuffled) * fractions[0])
    n_valid = round(len(shuffled) * fractions[1])
    codes[shuffled[:n_train]] = SPLIT_CODES["train"]
    codes[shuffled[n_train:n_train + n_valid]] = SPLIT_CODES["valid"]
    codes[shuffled[n_train + n_valid:]] = SPLIT_CODES["test"]


def _on(chroms: np.ndarray, names: tuple[str, ...], flag: str) -> np.ndarray:
    """Mask of the genes on the chromosomes `names` (matched with or without 'chr')."""
    present = {chrom_key(c): c for c in np.unique(chroms.astype(str))}
    mask = np.zeros(len(chroms), bool)
    for name in names:
        chrom = present.get(chrom_key(name))
        if chrom is None:
            shown = ", ".join(sorted(present.values())[:6])
            raise ConfigError(f"{flag} {name}: no gene of the pair lies on it; expected chromosomes of the "
                              f"annotation with genes (e.g. {shown})")
        mask |= chroms == chrom
    return mask


def _checked(codes: np.ndarray, flag: str) -> np.ndarray:
    counts = np.bincount(codes, minlength=3)
    for name, code in SPLIT_CODES.items():
        if counts[code] < MIN_PER_SPLIT:
            raise ConfigError(f"{flag}: split {name} gets {counts[code]} gene(s) of {len(codes)}; expected at least "
                              f"{MIN_PER_SPLIT} in every split (a PCC needs two)")
    return codes

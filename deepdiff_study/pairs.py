"""The selected pairs' data for a study, checked before any trial starts. No Ray.

With ``--data DIR`` a pair's files are the paper's, named by epigenome (``E123.train.csv`` ...); every
missing file of every selected pair is reported in one `DataError` before anything runs. Without it,
each selected pair gets a synthetic stand-in imitating the real sample's statistics (`deepdiff.synthetic`,
signal "realistic"), written once under the study's storage and reused by later runs and by
`deepdiff train --config` of an exported trial.

After a study, `recorded_source` finds a pair again from a grid cell's ``data`` tag (the report's
attention maps and ``--seeds`` replicates): the recorded folder, or a synthetic pair regenerated from its
recorded settings when that folder is gone. The tags name files and a folder: each must be one plain
file name (`deepdiff_study.untrusted.plain_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepdiff.data import FILE_KINDS, PairData, load_pair, pair_files
from deepdiff.errors import DataError
from deepdiff.synthetic import ensure_synthetic_pair
from deepdiff_study.grid import Pair
from deepdiff_study.untrusted import plain_name

# The synthetic generator the study uses, written into every exported config's data section so that
# `deepdiff train --config` regenerates the same pair whatever the generator's default becomes.
SIGNAL = "realistic"
SYNTHETIC_KEYS = ("genes", "seed", "signal", "imitates")  # a synthetic pair's settings, as `pair_sources` records them


@dataclass(frozen=True)
class PairSource:
    pair: Pair
    dir: Path  # folder holding CELL.{train,valid,test,expr}.csv of both cells
    synthetic: dict[str, Any] | None  # write_synthetic_pair arguments when generated, else None

    def files(self) -> list[Path]:
        return list(pair_files(self.dir, self.pair.epigenome_a, self.pair.epigenome_b).values())


def pair_sources(pairs: list[Pair], *, data_dir: str | Path | None, synthetic_root: str | Path,
                 genes: int, seed: int = 0) -> list[PairSource]:
    """Where each pair's files are (`data_dir`) or will be generated (under `synthetic_root`)."""
    if data_dir is not None:
        return [PairSource(p, Path(data_dir).resolve(), None) for p in pairs]
    root = Path(synthetic_root).resolve()
    return [
        PairSource(p, root / f"pair{p.number}-{p.name}-{SIGNAL}-genes{genes}-seed{seed}",
                   dict(zip(SYNTHETIC_KEYS, (genes, seed, SIGNAL, p.imitates))))
        for p in pairs
    ]


def check_files(sources: list[PairSource]) -> None:
    """One `DataError` naming every missing file of the real-data pairs (synthetic ones are generated)."""
    missing = [(s, f) for s in sources if s.synthetic is None for f in s.files() if not f.is_file()]
    if not missing:
        return
    folder = missing[0][0].dir
    if not folder.is_dir():
        raise DataError(f"--data {folder}: directory not found; expected CELL.{{{','.join(FILE_KINDS)}}}.csv per epigenome in it")
    names = sorted({f.name for _, f in missing})
    pairs = sorted({s.pair.number for s, _ in missing})
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    raise DataError(
        f"--data {folder}: missing {shown} (pairs {', '.join(map(str, pairs))}); expected "
        f"CELL.{{{','.join(FILE_KINDS)}}}.csv for both epigenomes of every selected pair, or drop --data to use synthetic data"
    )


def load_sources(sources: list[PairSource], *, cache_dir: str | Path | None) -> dict[int, PairData]:
    """Every selected pair, validated and aligned (real files are checked first, all at once)."""
    check_files(sources)
    pairs = {}
    for source in sources:
        if source.synthetic is not None:
            ensure_synthetic_pair(source.dir, cell_a=source.pair.epigenome_a, cell_b=source.pair.epigenome_b, **source.synthetic)
        pairs[source.pair.number] = load_pair(source.dir, source.pair.epigenome_a, source.pair.epigenome_b, cache_dir=cache_dir)
    return pairs


def recorded_source(pair: Pair, data: dict[str, Any], *, regenerate_root: str | Path) -> PairSource:
    """Where the pair of a grid cell's ``data`` tag (`records.data_tag`) is now.

    The recorded folder when it holds the pair's files. A synthetic pair whose folder is gone (another
    machine, a cleaned study folder) is generated again under `regenerate_root` from the recorded
    settings: the generator's bytes depend only on them, so it is the same pair. Real files that are gone
    are a `DataError` naming what is missing.
    """
    from deepdiff_study.records import Tag  # MLflow: at call time

    for tag, name in ((Tag.EPIGENOME_A, pair.epigenome_a), (Tag.EPIGENOME_B, pair.epigenome_b)):
        plain_name(name, f"pair {pair.number}: grid-cell tag {tag}")  # names its files
    source = PairSource(pair, Path(data["dir"]), data.get("synthetic") or None)
    if source.synthetic is not None and not (isinstance(source.synthetic, dict) and set(source.synthetic) <= set(SYNTHETIC_KEYS)):
        raise DataError(f"pair {pair.number}: grid-cell tag {Tag.DATA}: 'synthetic' holds {source.synthetic!r}; expected "
                        f"the generator's settings ({', '.join(SYNTHETIC_KEYS)})")
    if all(f.is_file() for f in source.files()):
        return source
    if source.synthetic is None:
        missing = [f.name for f in source.files() if not f.is_file()]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{source.dir}: the data of pair {pair.number} {pair.name} the study trained on is not there "
                        f"(missing {missing[0]}{more}); expected the folder its grid cells' data tag names")
    folder = plain_name(source.dir.name, f"pair {pair.number}: the folder of grid-cell tag {Tag.DATA}")
    return PairSource(pair, Path(regenerate_root).resolve() / folder, source.synthetic)

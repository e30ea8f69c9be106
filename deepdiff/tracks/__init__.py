"""Build a cell-type pair from the field's formats: histone-mark tracks (bigWig, indexed BAM), a gene
annotation (GTF/GFF3, BED6 of TSSs) and expression tables -> the DeepDiffChrome files every other
command reads (`deepdiff build-pair`, docs/own-data.md).

One job per module: `annotation` (one TSS per gene), `expression` (tables), `genome` (chromosome names
and sizes across files), `signal` (a track binned around TSSs), `splits` (train/valid/test), `manifest`
(what a pair is built from), `record` (checksums, the build record, a rebuild only when inputs change),
`build` (the steps and the files written), `command` (the command line). pyBigWig and pysam, the extra
``deepdiff-tune[tracks]``, are imported only when a track is opened. This package imports nothing at
import time: worker processes import `signal` alone.
"""

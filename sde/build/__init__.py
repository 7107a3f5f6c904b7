"""Building a dataset too big to read at once: part by part, in worker processes, resumable.

A local NeMo manifest larger than one part (:data:`sde.build.parts.PART_BYTES`), and than a
one-piece build has memory for (:data:`sde.build.parts.ONE_PIECE_BYTES`), is split at line
boundaries (:mod:`~sde.build.parts`); worker processes read and score one part each and write
its tables to the build folder (:mod:`~sde.build.part_files`); the parts are then joined into
the dataset's tables, streaming, with the vocabulary summed by DuckDB (:mod:`~sde.build.merge`).
Peak memory is a few parts', whatever the manifest's size; an interrupted build leaves its
finished parts, and the next run with the same manifest and options builds only the others
(:mod:`~sde.build.stream`). :mod:`~sde.build.load` decides between this, the one-piece build of
:func:`sde.dataset.build_dataset` and a dataset already in the cache.
"""

"""The bottom layer: file formats, vocabularies, errors, atomic writes, weights, run layout, Slurm and media."""

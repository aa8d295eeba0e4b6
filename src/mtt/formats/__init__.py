"""The files that pass between stages, one module per format: its constants, writer, reader and
checks (docs/FORMATS.md has one section per format).

- `tsv_dialect`: the one dialect every tab-separated table is read in
- `split_folder`: `mtt split`'s folder: {train,valid,test,student,none}.tsv, tags.txt, report.json
- `mel_shard`: `mtt preprocess`'s HDF5 log-mel shard, and its failures TSV; `mel_store` reads
  crops and songs from many shards
- `pseudo_label_shard`: `mtt pseudo-label`'s HDF5 soft labels of one shard's songs
- `evaluation_folder`: `mtt evaluate`'s folder: metrics.json, per_tag.tsv, predictions.h5
- `hdf5`: the checks every reader of these HDF5 files makes before reading a dataset

Checkpoints are written and read by `mtt.checkpoint`.
"""

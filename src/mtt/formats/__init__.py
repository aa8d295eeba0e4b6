"""The files that pass between stages, one module per format: its constants, writer, reader and
checks (docs/FORMATS.md has one section per module).

- `split_folder`: `mtt split`'s folder: {train,valid,test,student,none}.tsv, tags.txt, report.json
- `mel_shard`: `mtt preprocess`'s HDF5 log-mel shard, and its failures TSV
- `pseudo_labels`: `mtt pseudo-label`'s HDF5 soft labels of one shard's songs
- `evaluation`: `mtt evaluate`'s folder: metrics.json, per_tag.tsv, predictions.h5

Tables are read with `mtt.formats.tsv_dialect`, checkpoints written and read by `mtt.checkpoint`.
"""

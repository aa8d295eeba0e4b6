"""Data preparation, the pipeline's first stage: `mtt split` (`split`: a dataset's songs into
train / valid / test / student sets by artist, with `stratify`'s CALS algorithm, or an official
split) and `mtt preprocess` (`preprocess`: audio into HDF5 log-mel shards)."""

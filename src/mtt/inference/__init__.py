"""Inference: scoring songs with a checkpoint.

`device` (device, precision, threads, batch sizes: one set of names for every command and the
API), `songs` (the chunk plan and the song-level mean every prediction uses; songs stored in mel
shards), `tagger` (`mtt.Tagger`: audio files or arrays), and the commands `tag`, `evaluate`,
`pseudo_label` and `export`.
"""

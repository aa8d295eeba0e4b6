import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mtt.formats.mel_shard import ShardWriter, shard_attributes
from mtt.frontend import DB_FLOOR, frontend_params
from mtt.formats.mel_store import MelStore

# songs of known content: band 0 holds the frame index (exact in float16 up to 2048), the
# other bands the song's number plus a band pattern
LENGTHS = {"a": 1292, "b": 431, "c": 100, "d": 2000, "e": 1}


def song(track_id: str, frames: int) -> np.ndarray:
    values = np.empty((frames, 128))
    values[:, 0] = np.arange(frames)
    values[:, 1:] = sorted(LENGTHS).index(track_id) * 10 - np.arange(1, 128) * 0.5
    return values.astype(np.float16)  # (frames, 128) as stored


def write_shard(path, track_ids):
    writer = ShardWriter(path, shard_attributes(1.0, "test"))
    for track_id in track_ids:
        writer.add(track_id, song(track_id, LENGTHS[track_id]), LENGTHS[track_id] * 512)
    writer.close()
    return path


@pytest.fixture
def shards(tmp_path):
    return [write_shard(tmp_path / "one.h5", ["a", "b", "c"]),
            write_shard(tmp_path / "two.h5", ["d", "e"])]


def truth(track_id):
    return song(track_id, LENGTHS[track_id]).T.astype(np.float32)


def test_index_over_many_shards(shards):
    store = MelStore(shards)
    assert store.track_ids == ["a", "b", "c", "d", "e"] and len(store) == 5
    assert "d" in store and "z" not in store
    assert {t: store.num_frames(t) for t in store.track_ids} == LENGTHS
    assert MelStore(shards[1]).track_ids == ["d", "e"]  # one path, not a list


def test_read_song_returns_the_stored_values(shards):
    store = MelStore(shards)
    for track_id in LENGTHS:
        mel = store.read_song(track_id)
        assert mel.dtype == np.float32 and mel.shape == (128, LENGTHS[track_id])
        np.testing.assert_array_equal(mel, truth(track_id))


def test_read_crop_is_a_random_window_of_the_song(shards):
    store, rng, full = MelStore(shards), np.random.default_rng(0), truth("d")
    starts = set()
    for _ in range(200):
        crop = store.read_crop("d", 431, rng)
        assert crop.shape == (128, 431) and crop.dtype == np.float32
        start = int(crop[0, 0])
        np.testing.assert_array_equal(crop, full[:, start:start + 431])
        starts.add(start)
    assert len(starts) > 150 and min(starts) >= 0 and max(starts) <= 2000 - 431
    exact = store.read_crop("b", 431, rng)  # a song of exactly the crop length
    np.testing.assert_array_equal(exact, truth("b"))


def test_short_songs_are_padded_with_the_db_floor(shards):
    store = MelStore(shards)
    crop = store.read_crop("c", 431, np.random.default_rng(1))
    assert DB_FLOOR == frontend_params()["db_floor"] == -100.0
    np.testing.assert_array_equal(crop[:, :100], truth("c"))
    assert (crop[:, 100:] == -100.0).all()
    assert store.read_crop("e", 5, np.random.default_rng(1)).shape == (128, 5)


def test_read_chunks_cover_the_song_from_start_to_end(shards):
    from mtt.inference.songs import chunk_starts
    store, full = MelStore(shards), truth("d")
    for n_chunks in (1, 2, 3, 5, 12):  # sparse (read chunk by chunk) and dense (read once)
        chunks = store.read_chunks("d", chunk_starts(store.num_frames("d"), 431, n_chunks), 431)
        assert chunks.shape == (n_chunks, 128, 431)
        np.testing.assert_array_equal(chunks[0], full[:, :431])
        if n_chunks > 1:
            np.testing.assert_array_equal(chunks[-1], full[:, -431:])
        starts = [int(c[0, 0]) for c in chunks]
        gaps = np.diff(starts)
        assert (gaps >= 0).all() and (gaps.max() - gaps.min() <= 1 if len(gaps) else True)
    short = store.read_chunks("c", chunk_starts(store.num_frames("c"), 431, 3), 431)
    assert short.shape == (3, 128, 431) and (short[:, :, 100:] == -100).all()
    with pytest.raises(ValueError):
        store.read_chunks("d", [], 431)
    with pytest.raises(ValueError):
        store.read_crop("d", 0, np.random.default_rng(0))


def test_writer_refuses_a_mel_of_the_wrong_shape(tmp_path):
    writer = ShardWriter(tmp_path / "w.h5", shard_attributes(1.0, "test"))
    with pytest.raises(ValueError, match="'x'"):
        writer.add("x", np.zeros((128, 431), np.float16)[:100], 100 * 512)  # bands first
    writer.close()


def test_pickled_store_reads_the_same(shards):
    store = MelStore(shards)
    store.read_song("a")  # opens a file: the pickle must not carry it
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.read_song("d"), store.read_song("d"))


class Crops(Dataset):
    def __init__(self, store):
        self.store = store

    def __len__(self):
        return 40

    def __getitem__(self, index):
        track_id = self.store.track_ids[index % len(self.store)]
        rng = np.random.default_rng(index)
        return torch.from_numpy(self.store.read_crop(track_id, 256, rng))


def test_works_in_forked_dataloader_workers(shards):
    store = MelStore(shards)
    store.read_song("a")  # the parent has open files before the workers start
    loader = DataLoader(Crops(store), batch_size=8, num_workers=2,
                        multiprocessing_context="fork")
    batches = torch.cat(list(loader))
    expected = torch.stack([Crops(store)[i] for i in range(40)])
    assert torch.equal(batches, expected)


def test_unknown_track_and_bad_shards_have_clear_errors(shards, tmp_path):
    store = MelStore(shards)
    with pytest.raises(KeyError, match="'zz'"):
        store.read_song("zz")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        MelStore([tmp_path / "missing.h5"])
    with pytest.raises(ValueError, match="stored twice"):
        MelStore([shards[0], write_shard(tmp_path / "again.h5", ["b"])])
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5"):
        MelStore([tmp_path / "text.h5"])
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.attrs.update(shard_attributes(1.0, "x"))
        other.attrs["n_mels"] = 96
        other["track_id"] = np.array([], dtype=h5py.string_dtype())
        other["offset"] = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="different front end"):
        MelStore([tmp_path / "other.h5"])


def test_reads_touch_only_the_needed_part(shards, monkeypatch):
    """A crop must slice the dataset, never read a whole song or shard."""
    store = MelStore(shards)
    store.read_song("a")
    requested = []
    real_getitem = h5py.Dataset.__getitem__

    def spy(dataset, key, *args):
        requested.append(key)
        return real_getitem(dataset, key, *args)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    store.read_crop("d", 431, np.random.default_rng(0))
    assert len(requested) == 1
    key = requested[0]
    assert isinstance(key, slice) and key.stop - key.start == 431

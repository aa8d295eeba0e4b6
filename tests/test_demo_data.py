"""The demo dataset: MSD layout and schemas, determinism, label statistics, decodable audio."""
import json
import sqlite3
from collections import Counter

import numpy as np
import pytest
import soundfile

from mtt import cli
from mtt.demo import (SIZES, TAGS, generate, make_catalogue, observe_all, observed_tags,
                      render_song)
from mtt.formats.split_folder import read_split_table

N_SONGS = 24  # enough to check the files; label statistics use the catalogue at full size
SECONDS = 5.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert cli.main(["demo-data", "--out", str(out), "--size", "small", "--songs", str(N_SONGS),
                     "--seconds", str(SECONDS), "--seed", "7", "--workers", "2"]) == 0
    return out


def test_msd_layout_and_schemas(demo):
    assert (demo / "tags.txt").read_text().splitlines() == TAGS
    con = sqlite3.connect(demo / "track_metadata.db")
    columns = [r[1] for r in con.execute("PRAGMA table_info(songs)")]
    assert columns == ["track_id", "title", "song_id", "release", "artist_id", "artist_mbid",
                       "artist_name", "duration", "artist_familiarity", "artist_hotttnesss",
                       "year", "track_7digitalid", "shs_perf", "shs_work"]
    track_ids = [r[0] for r in con.execute("SELECT track_id FROM songs")]
    con.close()
    assert len(track_ids) == len(set(track_ids)) == N_SONGS
    for track_id in track_ids:
        assert len(track_id) == 18 and track_id.startswith("TR") and track_id[2:].isalnum()
        assert (demo / "audio" / track_id[2] / track_id[3] / track_id[4] /
                f"{track_id}.flac").is_file()
    con = sqlite3.connect(demo / "lastfm_tags.db")
    tables = {r[0]: [c[1] for c in con.execute(f"PRAGMA table_info({r[0]})")]
              for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"tids": ["tid"], "tags": ["tag"], "tid_tag": ["tid", "tag", "val"]}
    links = con.execute("SELECT tids.tid, tags.tag, tid_tag.val FROM tid_tag "
                        "JOIN tids ON tid_tag.tid = tids.rowid "
                        "JOIN tags ON tid_tag.tag = tags.rowid").fetchall()
    con.close()
    assert links and all(t in track_ids and 0 <= v <= 100 for t, _, v in links)
    assert not (demo / ".demo.partial").exists()


def test_audio_decodes_as_22050_hz_mono_flac(demo):
    files = sorted((demo / "audio").rglob("*.flac"))
    assert len(files) == N_SONGS
    for path in files[:6]:
        info = soundfile.info(path)
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 22050, 1)
        wave, _ = soundfile.read(path, dtype="float32")
        assert abs(len(wave) / 22050 - SECONDS) < 0.2
        assert np.isfinite(wave).all() and 0.01 < np.sqrt(np.mean(wave ** 2)) < 0.7


@pytest.mark.slow
def test_same_seed_same_bytes(demo, tmp_path):
    again = tmp_path / "again"
    generate(again, seed=7, size="small", workers=1, n_songs=N_SONGS, seconds=SECONDS)
    files = sorted(p.relative_to(demo) for p in demo.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (demo / name).read_bytes() == (again / name).read_bytes(), name


def test_other_seed_other_data(tmp_path):
    _, songs_a = make_catalogue(0, 50)
    _, songs_b = make_catalogue(1, 50)
    assert [s.track_id for s in songs_a] != [s.track_id for s in songs_b]
    assert not np.array_equal(render_song(songs_a[0], 2.0), render_song(songs_b[0], 2.0))


@pytest.mark.parametrize("size", ["small", "default"])
@pytest.mark.parametrize("seed", [0, 1])
def test_label_statistics_like_lastfm(size, seed):
    artists, songs = make_catalogue(seed, SIZES[size]["songs"])
    rows = observed_tags(songs, artists, seed)
    vocab_rows = [(t, g) for t, g, _ in rows if g in TAGS]
    labeled = {t for t, _ in vocab_rows}
    unlabeled_share = 1 - len(labeled) / len(songs)
    assert 0.6 <= unlabeled_share <= 0.85
    # missing labels are mostly per artist: most artists are all-or-nothing
    by_artist = Counter()
    labeled_by_artist = Counter()
    for song in songs:
        by_artist[song.artist] += 1
        labeled_by_artist[song.artist] += song.track_id in labeled
    unlabeled = [s for s in songs if s.track_id not in labeled]
    by_untagged_artist = sum(labeled_by_artist[s.artist] == 0 for s in unlabeled)
    assert by_untagged_artist / len(unlabeled) >= 0.8
    tags_per_song = Counter(t for t, _ in vocab_rows)
    assert 1.5 <= np.mean(list(tags_per_song.values())) <= 6
    assert {g for _, g in vocab_rows} == set(TAGS)  # every tag observed
    # noisy: some true tags are missing, some observed tags are false
    truth = {s.track_id: set(s.true_tags()) for s in songs}
    observed_true = sum(g in truth[t] for t, g in vocab_rows)
    assert 0.7 < observed_true / len(vocab_rows) < 0.99
    recalled = observed_true / sum(len(truth[t]) for t in labeled)
    assert 0.3 < recalled < 0.8
    assert len(artists) * 3 < len(songs)  # several songs per artist


def test_every_tag_is_true_for_some_songs():
    _, songs = make_catalogue(0, SIZES["small"]["songs"])
    counts = Counter(t for s in songs for t in s.true_tags())
    assert set(counts) == set(TAGS)


@pytest.mark.slow
def test_msd_split_runs_on_the_demo_data(tmp_path):
    out = tmp_path / "demo"
    generate(out, seed=3, size="small", workers=2, seconds=1.0)
    split = tmp_path / "split"
    assert cli.main(["split", "--format", "msd", "--track-metadata",
                     str(out / "track_metadata.db"), "--lastfm-tags", str(out / "lastfm_tags.db"),
                     "--tag-list", str(out / "tags.txt"), "--audio-ext", "flac",
                     "--out", str(split)]) == 0
    sizes = {s: len(read_split_table(split / f"{s}.tsv"))
             for s in ("train", "valid", "test", "student", "none")}
    assert sum(sizes.values()) == SIZES["small"]["songs"]
    assert sizes["train"] > 0 and sizes["valid"] > 0 and sizes["test"] > 0
    assert sizes["student"] > sizes["train"]  # most songs are unlabeled, by untagged artists
    report = json.loads((split / "report.json").read_text())
    assert report["tags"] == TAGS
    first = read_split_table(split / "student.tsv").iloc[0]
    assert (out / "audio" / first["path"]).is_file()


def test_refuses_to_replace_a_folder_that_is_not_demo_data(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    assert cli.main(["demo-data", "--out", str(tmp_path / "mine"), "--songs", "2"]) == 2
    assert "not a demo dataset" in capsys.readouterr().err
    assert (tmp_path / "mine" / "precious.txt").exists()


def test_observe_all_labels_every_artist_with_the_same_noise():
    artists, songs = make_catalogue(0, SIZES["default"]["songs"])
    observed = observe_all(songs, artists, seed=0)
    assert 0.85 <= len(observed) / len(songs) <= 0.95  # a tagged artist's songs: 90 % tagged
    truth = {s.track_id: set(s.true_tags()) for s in songs}
    pairs = [(t, g) for t, tags in observed.items() for g in tags]
    assert set(g for _, g in pairs) <= set(TAGS)
    precision = sum(g in truth[t] for t, g in pairs) / len(pairs)
    assert 0.7 < precision < 0.99  # as noisy as the labeled songs' tags
    assert observe_all(songs, artists, seed=0) == observed  # deterministic


def test_labeled_part_and_its_rest_are_the_whole_dataset(demo, tmp_path):
    """`--part labeled` then `--rest-of`: the same tables, and a rest folder whose audio/ holds
    every song (the unlabeled ones rendered, links to the labeled part for the others) with the
    bytes of the one-step dataset; the labeled part holds exactly the songs with a tag."""
    labeled, rest = tmp_path / "labeled", tmp_path / "rest"
    assert cli.main(["demo-data", "--out", str(labeled), "--songs", str(N_SONGS), "--seconds",
                     str(SECONDS), "--seed", "7", "--workers", "1", "--part", "labeled"]) == 0
    assert cli.main(["demo-data", "--rest-of", str(labeled), "--out", str(rest),
                     "--workers", "2"]) == 0
    for name in ("track_metadata.db", "lastfm_tags.db", "tags.txt", "true_tags.tsv"):
        assert (labeled / name).read_bytes() == (demo / name).read_bytes(), name

    def files(root):
        return {p.relative_to(root): p for p in (root / "audio").rglob("*.flac")}
    whole, parts, linked = files(demo), files(rest), files(labeled)
    assert parts.keys() == whole.keys()
    assert all(parts[k].read_bytes() == whole[k].read_bytes() for k in whole)
    assert {k for k, p in parts.items() if p.is_symlink()} == linked.keys()
    con = sqlite3.connect(labeled / "lastfm_tags.db")
    tagged = {t for (t,) in con.execute(
        "SELECT DISTINCT tids.tid FROM tid_tag JOIN tids ON tid_tag.tid = tids.rowid "
        "JOIN tags ON tid_tag.tag = tags.rowid WHERE tags.tag IN (%s)" % ",".join("?" * len(TAGS)),
        TAGS)}
    con.close()
    assert {p.stem for p in linked.values()} == tagged and 0 < len(tagged) < N_SONGS
    # the rest folder moves with its results folder: the links are relative
    moved = tmp_path / "moved"
    moved.mkdir()
    labeled.rename(moved / "labeled")
    rest.rename(moved / "rest")
    assert all(p.read_bytes() for p in files(moved / "rest").values())
    assert cli.main(["demo-data", "--rest-of", str(tmp_path / "nothing"), "--out",
                     str(tmp_path / "r2")]) == 2

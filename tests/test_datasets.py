"""Dataset adapters on small inputs in each dataset's real format."""
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mtt.datasets import DatasetError, load_tracks
from mtt.datasets.table import join_tags
from mtt.datasets.msd import msd_audio_path
from mtt.datasets.vocabulary import MSD_TOP50

JAMENDO = Path(__file__).resolve().parents[1].parent / "shared/datasets/mtg-jamendo"

SONGS_SCHEMA = ("CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, "
                "release text, artist_id text, artist_mbid text, artist_name text, "
                "duration real, artist_familiarity real, artist_hotttnesss real, year int, "
                "track_7digitalid int, shs_perf int, shs_work int)")


def write_msd(folder, songs, tag_links, extra_tids=()):
    """songs: [(track_id, artist_id)], tag_links: [(track_id, tag, val)] -> two DB paths."""
    meta, tags_db = folder / "track_metadata.db", folder / "lastfm_tags.db"
    con = sqlite3.connect(meta)
    con.execute(SONGS_SCHEMA)
    con.executemany("INSERT INTO songs VALUES (?, 'title', 'SO0', 'rel', ?, '', 'name', 200.0, "
                    "0.5, 0.5, 2000, 1, -1, 0)", songs)
    con.commit()
    con.close()
    con = sqlite3.connect(tags_db)
    con.execute("CREATE TABLE tids (tid TEXT)")
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    tids = list(dict.fromkeys([t for t, _, _ in tag_links] + list(extra_tids)))
    names = list(dict.fromkeys(tag for _, tag, _ in tag_links))
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in tids])
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in names])
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                    [(tids.index(t) + 1, names.index(g) + 1, v) for t, g, v in tag_links])
    con.commit()
    con.close()
    return meta, tags_db


def test_msd_labels_paths_and_vocabulary(tmp_path):
    songs = [("TRAAAAA128F1234567", "AR1"), ("TRBBBBB128F1234567", "AR1"),
             ("TRCCCCC128F1234567", "AR2")]
    links = [("TRAAAAA128F1234567", "rock", 100), ("TRAAAAA128F1234567", "seen live", 80),
             ("TRAAAAA128F1234567", "Jazz", 5), ("TRCCCCC128F1234567", "pop", 40),
             ("TRZZZZZ128F1234567", "rock", 100)]  # not in the catalogue: ignored
    meta, tags_db = write_msd(tmp_path, songs, links)
    table = load_tracks("msd", track_metadata=meta, lastfm_tags=tags_db)
    assert table.tags == MSD_TOP50
    assert list(table.track_id) == [s for s, _ in songs]
    assert list(table.artist_id) == ["AR1", "AR1", "AR2"]
    assert table.path[0] == "A/A/A/TRAAAAA128F1234567.mp3"
    assert list(table.tag_strings()) == ["rock;jazz", "", "pop"]  # case-insensitive, MSD order
    weighted = load_tracks("msd", track_metadata=meta, lastfm_tags=tags_db, min_tag_weight=10,
                           audio_ext="wav")
    assert list(weighted.tag_strings()) == ["rock", "", "pop"]
    assert weighted.path[2] == msd_audio_path("TRCCCCC128F1234567", "wav")
    custom = load_tracks("msd", track_metadata=meta, lastfm_tags=tags_db,
                         tags=["seen live", "pop"])
    assert list(custom.tag_strings()) == ["seen live", "", "pop"]


def test_msd_bad_inputs_name_the_file(tmp_path):
    meta, tags_db = write_msd(tmp_path, [("TRAAAAA128F1234567", "AR1")], [])
    with pytest.raises(DatasetError, match="missing.db: file not found"):
        load_tracks("msd", track_metadata=tmp_path / "missing.db", lastfm_tags=tags_db)
    with pytest.raises(DatasetError, match=r"track_metadata.db: missing table\(s\) tids"):
        load_tracks("msd", track_metadata=meta, lastfm_tags=meta)
    (tmp_path / "junk.db").write_text("not sqlite at all " * 100)
    with pytest.raises(DatasetError, match="junk.db: not an SQLite database"):
        load_tracks("msd", track_metadata=tmp_path / "junk.db", lastfm_tags=tags_db)


def test_mtg_jamendo_real_file_head(tmp_path):
    lines = (JAMENDO / "autotagging_moodtheme.tsv").read_text().splitlines()[:301]
    path = tmp_path / "autotagging_moodtheme.tsv"
    path.write_text("\n".join(lines) + "\n")
    table = load_tracks("mtg-jamendo", metadata=path)
    assert len(table) == 300
    first = lines[1].split("\t")
    assert (table.track_id[0], table.artist_id[0], table.path[0]) == (first[0], first[1], first[3])
    assert table.tag_strings()[0] == ";".join(t for t in table.tags if t in first[5:])
    counts = table.labels.sum(0)
    assert (np.diff(counts) <= 0).all(), "default vocabulary is most frequent first"
    assert all(t.startswith("mood/theme---") for t in table.tags)
    top = load_tracks("mtg-jamendo", metadata=path, top_tags=5)
    assert top.tags == table.tags[:5]


def test_mtg_jamendo_bad_header(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ID\tARTIST\n1\t2\n")
    with pytest.raises(DatasetError, match="bad.tsv: header"):
        load_tracks("mtg-jamendo", metadata=path)


def write_mtat(path, rows):
    tags = ["no voice", "singer", "guitar"]
    header = "\t".join(f'"{c}"' for c in ["clip_id", *tags, "mp3_path"])
    body = ["\t".join(f'"{v}"' for v in row) for row in rows]
    path.write_text("\n".join([header, *body]) + "\n")


def test_mtat_artist_from_file_name(tmp_path):
    path = tmp_path / "annotations_final.csv"
    write_mtat(path, [
        ("2", "0", "1", "1", "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3"),
        ("6", "1", "0", "0", "f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-88-117.mp3"),
        ("10", "0", "0", "0", "c/lisa_debenedictis-fruitless-01-fruitless-0-29.mp3"),
    ])
    table = load_tracks("mtat", metadata=path)
    assert table.tags == ["no voice", "singer", "guitar"]
    assert list(table.track_id) == ["2", "6", "10"]
    assert list(table.artist_id) == ["american_bach_soloists"] * 2 + ["lisa_debenedictis"]
    assert list(table.tag_strings()) == ["singer;guitar", "no voice", ""]
    assert table.path[2] == "c/lisa_debenedictis-fruitless-01-fruitless-0-29.mp3"
    assert load_tracks("mtat", metadata=path, tags=["guitar", "singer"]).tags == ["guitar", "singer"]


def test_mtat_rejects_non_binary_values(tmp_path):
    path = tmp_path / "annotations_final.csv"
    write_mtat(path, [("2", "0", "2", "1", "f/a-b-0-29.mp3")])
    with pytest.raises(DatasetError, match="line 2, column 'singer': '2' is not 0 or 1"):
        load_tracks("mtat", metadata=path)


def test_tsv_roundtrip_and_errors(tmp_path):
    path = tmp_path / "catalogue.tsv"
    path.write_text("track_id\tartist_id\tpath\ttags\textra\n"
                    "t1\ta1\tx/t1.ogg\trock;piano\t1\n"
                    "t2\ta1\tx/t2.ogg\t\t2\n"
                    "NA\t\tx/NA.ogg\t piano \t3\n")
    table = load_tracks("tsv", metadata=path)
    assert table.tags == ["piano", "rock"]  # most frequent first
    assert list(table.track_id) == ["t1", "t2", "NA"]
    assert list(table.tag_strings()) == ["piano;rock", "", "piano"]
    assert table.artist_id[2] == ""
    (tmp_path / "bad.tsv").write_text("track_id\tpath\n1\tx\n")
    with pytest.raises(DatasetError, match=r"bad.tsv: missing column\(s\) artist_id, tags"):
        load_tracks("tsv", metadata=tmp_path / "bad.tsv")
    (tmp_path / "dup.tsv").write_text("track_id\tartist_id\tpath\ttags\n1\ta\tp\tx\n1\ta\tp\tx\n")
    with pytest.raises(DatasetError, match="dup.tsv: duplicate track IDs"):
        load_tracks("tsv", metadata=tmp_path / "dup.tsv")


def test_join_tags_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    labels = rng.random((500, 13)) < 0.2
    tags = [f"t{i}" for i in range(13)]
    expected = [";".join(t for t, on in zip(tags, row) if on) for row in labels]
    assert list(join_tags(labels, tags)) == expected

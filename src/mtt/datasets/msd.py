"""Million Song Dataset: `track_metadata.db` + `lastfm_tags.db` in the MSD's own SQLite schemas.

track_metadata.db: table songs(track_id, ..., artist_id, ...), one row per track (the catalogue).
lastfm_tags.db: tids(tid), tags(tag), tid_tag(tid, tag, val) where tid_tag.tid and tid_tag.tag
are rowids of tids and tags and val is a 0-100 weight.

A track is labeled with a vocabulary tag when tid_tag links them (with val >= the minimum weight
when one is given). Tag names match case-insensitively, as Last.fm tags vary in case.
Audio lives at <audio root>/<id[2]>/<id[3]>/<id[4]>/<track_id>.<ext> (the MSD's `audio/` tree).

The file names, table definitions and ID alphabet below are the one description of the layout:
the readers here, the demo dataset's writers (`mtt.demo.msd`) and bench/split.py's fixture use
them.
"""
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from mtt.datasets import DatasetError
from mtt.datasets.table import TrackTable, check_unique_ids
from mtt.datasets.vocabulary import MSD_TOP50


TRACK_METADATA = "track_metadata.db"
LASTFM_TAGS = "lastfm_tags.db"
# Table -> column definitions, as in the published files (CREATE TABLE <table> (<columns>)).
TRACK_METADATA_TABLES = {
    "songs": "track_id text PRIMARY KEY, title text, song_id text, release text, artist_id text, "
             "artist_mbid text, artist_name text, duration real, artist_familiarity real, "
             "artist_hotttnesss real, year int, track_7digitalid int, shs_perf int, shs_work int",
}
LASTFM_TAGS_TABLES = {"tids": "tid TEXT", "tags": "tag TEXT",
                      "tid_tag": "tid INT, tag INT, val FLOAT"}
# MSD IDs (TR... tracks, AR... artists, SO... songs): a 2-letter prefix and 16 of these.
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def msd_audio_path(track_id: str, ext: str = "mp3") -> str:
    return f"{track_id[2]}/{track_id[3]}/{track_id[4]}/{track_id}.{ext}"


def create_tables(con, tables: dict) -> None:
    """CREATE TABLE for each of `tables` (TRACK_METADATA_TABLES, LASTFM_TAGS_TABLES)."""
    for name, columns in tables.items():
        con.execute(f"CREATE TABLE {name} ({columns})")


def _connect(path, tables):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise DatasetError(path, f"not an SQLite database ({error})") from error
    missing = [t for t in tables if t not in present]
    if missing:
        con.close()
        raise DatasetError(path, f"missing table(s) {', '.join(missing)} "
                                 f"(expected the MSD schema: {', '.join(tables)})")
    return con


def read_songs(track_metadata) -> pd.DataFrame:
    """track_id and artist_id of every track in songs, in table order."""
    con = _connect(track_metadata, list(TRACK_METADATA_TABLES))
    try:
        songs = pd.read_sql_query("SELECT track_id, artist_id FROM songs", con)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
        raise DatasetError(track_metadata, f"cannot read songs(track_id, artist_id): {error}")
    finally:
        con.close()
    if songs["track_id"].isna().any():
        raise DatasetError(track_metadata, "songs has rows without a track_id")
    songs["artist_id"] = songs["artist_id"].fillna("").astype(str)
    songs["track_id"] = songs["track_id"].astype(str)
    return songs


def read_tag_links(lastfm_tags, vocab, min_tag_weight=None):
    """(tid strings, vocabulary column) pairs of tid_tag rows whose tag is in `vocab`."""
    con = _connect(lastfm_tags, list(LASTFM_TAGS_TABLES))
    try:
        tag_rows = con.execute("SELECT rowid, tag FROM tags").fetchall()
        column_of = {t.strip().lower(): i for i, t in enumerate(vocab)}
        tag_column = {rowid: column_of[name.strip().lower()] for rowid, name in tag_rows
                      if isinstance(name, str) and name.strip().lower() in column_of}
        if not tag_column:
            return np.array([], dtype=object), np.array([], dtype=np.int64)
        query = (f"SELECT tid, tag FROM tid_tag WHERE tag IN "
                 f"({','.join(str(int(r)) for r in tag_column)})")
        params = ()
        if min_tag_weight is not None:
            query += " AND val >= ?"
            params = (float(min_tag_weight),)
        links = np.array(con.execute(query, params).fetchall(), dtype=np.int64).reshape(-1, 2)
        tids = pd.read_sql_query("SELECT rowid AS rid, tid FROM tids", con)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
        raise DatasetError(lastfm_tags, f"cannot read the Last.fm tag tables: {error}")
    finally:
        con.close()
    tid_of_rowid = pd.Series(tids["tid"].to_numpy(dtype=object), index=tids["rid"].to_numpy())
    tid_strings = tid_of_rowid.reindex(links[:, 0]).to_numpy(dtype=object)
    if pd.isna(tid_strings).any():
        raise DatasetError(lastfm_tags, "tid_tag refers to tid rowids missing from tids")
    columns = np.array([tag_column[r] for r in links[:, 1]], dtype=np.int64)
    return tid_strings, columns


def load_msd(track_metadata, lastfm_tags, tags=None, top_tags=None, min_tag_weight=None,
             audio_ext="mp3") -> TrackTable:
    vocab = list(tags) if tags is not None else list(MSD_TOP50)
    songs = read_songs(track_metadata)
    track_id = songs["track_id"].to_numpy(dtype=object)
    check_unique_ids(track_id, track_metadata)
    tid_strings, columns = read_tag_links(lastfm_tags, vocab, min_tag_weight)
    rows = pd.Index(track_id).get_indexer(tid_strings)
    known = rows >= 0  # tags of tracks outside the catalogue are ignored
    labels = np.zeros((len(track_id), len(vocab)), dtype=bool)
    labels[rows[known], columns[known]] = True
    if top_tags is not None:
        keep = np.sort(np.argsort(-labels.sum(0), kind="stable")[:top_tags])
        labels, vocab = labels[:, keep], [vocab[i] for i in keep]
    short = songs["track_id"].str.len().to_numpy() < 5
    if short.any():
        raise DatasetError(track_metadata,
                           f"track ID {track_id[short][0]!r} too short for the MSD audio layout")
    path = np.array([msd_audio_path(t, audio_ext) for t in track_id], dtype=object)
    artist_id = songs["artist_id"].to_numpy(dtype=object)
    return TrackTable(track_id, artist_id, path, labels, vocab)

"""The demo dataset written in the Million Song Dataset's own layout (`mtt.datasets.msd`): audio
files at the MSD's paths, `track_metadata.db` and `lastfm_tags.db` in its table definitions."""
import sqlite3
from pathlib import Path

import numpy as np
import soundfile

from mtt.datasets import DEMO_SPLIT
from mtt.datasets.msd import (LASTFM_TAGS_TABLES, TRACK_METADATA_TABLES, create_tables,
                              msd_audio_path)
from mtt.demo.catalogue import random_ids
from mtt.demo.synthesis import SAMPLE_RATE, render_song


def audio_path(track_id: str) -> str:
    """The song's FLAC file, relative to the dataset folder."""
    return f"audio/{msd_audio_path(track_id, DEMO_SPLIT['audio_ext'])}"


def write_audio(job) -> str:
    """Render one song and write it as 22,050 Hz mono 16-bit FLAC; job: (folder, song, seconds).

    FLAC, not the MSD's MP3: encoding an MP3 (libsndfile's LAME) took 38 ms a song, 1.5 times
    the synthesis, and more than half the demo-data stage; FLAC takes 2 ms. Preprocessing still
    decodes compressed audio; real MP3 decoding is tested on the clips in `shared/audio`."""
    folder, song, seconds = job
    wave = render_song(song, seconds)
    path = Path(folder) / audio_path(song.track_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return song.track_id


def write_track_metadata(path, songs, artists, seconds, seed):
    """songs(...) with one row per song: IDs, titles, artist, duration, and random-looking
    release years (1980s for an 80s song), familiarity and 7digital IDs."""
    rng = np.random.default_rng([seed, 3])
    con = sqlite3.connect(path)
    create_tables(con, TRACK_METADATA_TABLES)
    song_ids = random_ids(rng, "SO", len(songs))
    rows = []
    for k, (song, song_id) in enumerate(zip(songs, song_ids)):
        artist = artists[song.artist]
        year = int(rng.integers(1980, 1990)) if song.eighties else int(
            rng.choice([0, *range(1990, 2011)]))
        rows.append((song.track_id, f"Song {k + 1}", song_id, f"{artist['name']} Album",
                     artist["id"], "", artist["name"], float(seconds),
                     round(float(rng.random()), 6), round(float(rng.random()), 6), year,
                     int(rng.integers(1, 10**7)), -1, 0))
    con.executemany("INSERT INTO songs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def write_lastfm_tags(path, rows):
    """tids, tags and tid_tag (rowids of both, val the weight) from (track_id, tag, weight)
    rows, in the order each track and tag first appears."""
    con = sqlite3.connect(path)
    create_tables(con, LASTFM_TAGS_TABLES)
    tids = list(dict.fromkeys(r[0] for r in rows))
    tags = list(dict.fromkeys(r[1] for r in rows))
    tid_row = {t: i + 1 for i, t in enumerate(tids)}
    tag_row = {t: i + 1 for i, t in enumerate(tags)}
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in tids])
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in tags])
    con.executemany("INSERT INTO tid_tag VALUES (?,?,?)",
                    [(tid_row[t], tag_row[g], float(v)) for t, g, v in rows])
    con.execute("CREATE INDEX idx_tids ON tids (tid)")
    con.execute("CREATE INDEX idx_tags ON tags (tag)")
    con.execute("CREATE INDEX idx_tid_tag ON tid_tag (tid, tag)")
    con.commit()
    con.close()

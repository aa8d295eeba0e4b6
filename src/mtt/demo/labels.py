"""The Last.fm-like observation of the songs' true tags: who gets tagged, and how noisily.

About three quarters of the artists are untagged (so are their songs, as obscure MSD artists
are); songs of tagged artists carry a noisy subset of their true tags (tags left out, the
artist's main genre attached to all its songs, rare false tags), with 0-100 weights, plus tags
outside the vocabulary.
"""
import numpy as np

from mtt.demo.catalogue import GENRES, INSTRUMENTS, TAGS

TAGGED_ARTIST_SHARE = 0.27
TAGGED_SONG_SHARE = 0.9
KEEP_TRUE_TAG = {"genre": 0.8, "instrument": 0.45, "voice": 0.5, "tempo": 0.4, "mood": 0.4,
                 "era": 0.6}
ARTIST_GENRE_BLEED = 0.5  # chance a song also gets its artist's main genre tag
FALSE_TAG_RATE = 0.01
OTHER_TAGS = ["favorites", "seen live", "awesome", "love", "my music", "albums i own",
              "under 2000 listeners", "cool"]


def tag_group(tag: str) -> str:
    if tag in GENRES:
        return "genre"
    if tag in INSTRUMENTS:
        return "instrument"
    if tag in ("female vocal", "male vocal", "instrumental"):
        return "voice"
    if tag in ("fast", "slow"):
        return "tempo"
    if tag in ("happy", "sad", "mellow"):
        return "mood"
    return "era"


def observed_tags(songs, artists, seed: int):
    """Last.fm-like (track_id, tag, weight) rows: missing for untagged artists, noisy otherwise.

    Which artists are tagged is drawn again (a new attempt of the same seed) until every
    vocabulary tag is observed at least once, so that small datasets cover the vocabulary
    (after 100 attempts, the attempt covering the most tags is kept). Sets each artist's
    `tagged`.
    """
    best = None
    for attempt in range(100):
        rng = np.random.default_rng([seed, 2, attempt])
        tagged = rng.random(len(artists)) < TAGGED_ARTIST_SHARE
        rows = _observe(songs, artists, tagged, rng)
        covered = len({tag for _, tag, _ in rows} & set(TAGS))
        if best is None or covered > best[0]:
            best = (covered, rows, tagged)
        if covered == len(TAGS):
            break
    _, rows, tagged = best
    for artist, is_tagged in zip(artists, tagged):
        artist["tagged"] = bool(is_tagged)
    return rows


def observe_all(songs, artists, seed: int) -> dict[str, set[str]]:
    """Vocabulary tags of every song as if every artist were tagged: the observation process
    of `observed_tags` (same noise, own random stream), for an oracle of the unlabeled songs."""
    rng = np.random.default_rng([seed, 3])
    observed = {}
    for track, tag, _ in _observe(songs, artists, np.ones(len(artists), bool), rng):
        if tag in TAGS:
            observed.setdefault(track, set()).add(tag)
    return observed


def _observe(songs, artists, tagged, rng):
    rows = []
    for song in songs:
        artist = artists[song.artist]
        if not tagged[song.artist] or rng.random() >= TAGGED_SONG_SHARE:
            if rng.random() < 0.05:  # some untagged songs only carry tags outside the vocabulary
                rows.append((song.track_id, str(rng.choice(OTHER_TAGS)), int(rng.integers(0, 101))))
            continue
        true = set(song.true_tags())
        weights = {}
        for tag in TAGS:
            if tag in true and rng.random() < KEEP_TRUE_TAG[tag_group(tag)]:
                weights[tag] = int(rng.integers(10, 101))
            elif tag not in true and rng.random() < FALSE_TAG_RATE:
                weights[tag] = int(rng.integers(0, 41))
        if rng.random() < ARTIST_GENRE_BLEED:
            weights.setdefault(artist["genre"], int(rng.integers(20, 101)))
        for tag in OTHER_TAGS:
            if rng.random() < 0.08:
                weights[tag] = int(rng.integers(0, 101))
        rows.extend((song.track_id, tag, weight) for tag, weight in weights.items())
    return rows

"""Who plays what: the demo's vocabulary, genre styles, artists and their songs.

Artists are drawn first, each with a characteristic style (a main genre and its own
probabilities for instruments, vocals, mode, tempo, energy and production); each song varies
around its artist's style. A `Song` holds every property the renderer (`mtt.demo.synthesis`)
makes audible, and `Song.true_tags()` names them in the vocabulary.
"""
from dataclasses import dataclass

import numpy as np

from mtt.datasets.msd import ID_ALPHABET

GENRES = ["rock", "electronic", "hip-hop", "folk", "jazz", "metal", "ambient", "reggae"]
GENRE_SHARE = [0.20, 0.17, 0.13, 0.12, 0.11, 0.10, 0.08, 0.09]
INSTRUMENTS = ["piano", "guitar", "synth", "strings"]
TAGS = [*GENRES, *INSTRUMENTS, "female vocal", "male vocal", "instrumental",
        "fast", "slow", "happy", "sad", "mellow", "80s", "lo-fi"]

# Per genre: tempo range (BPM), chance of each instrument, of vocals, of major mode, of low energy,
# reverb time (s) and wet level, guitar distortion drive.
STYLE = {
    "rock":       dict(bpm=(95, 165), piano=.20, guitar=.95, synth=.10, strings=.10, vocal=.85,
                       major=.60, mellow=.10, rt60=.6, wet=.15, drive=4.0),
    "electronic": dict(bpm=(115, 140), piano=.20, guitar=.05, synth=.95, strings=.25, vocal=.35,
                       major=.50, mellow=.10, rt60=.9, wet=.20, drive=0.0),
    "hip-hop":    dict(bpm=(78, 100), piano=.40, guitar=.05, synth=.40, strings=.25, vocal=.90,
                       major=.40, mellow=.10, rt60=.4, wet=.10, drive=0.0),
    "folk":       dict(bpm=(70, 130), piano=.15, guitar=.95, synth=.00, strings=.30, vocal=.85,
                       major=.60, mellow=.50, rt60=.8, wet=.20, drive=0.0),
    "jazz":       dict(bpm=(80, 190), piano=.90, guitar=.25, synth=.00, strings=.10, vocal=.40,
                       major=.50, mellow=.40, rt60=1.0, wet=.20, drive=0.0),
    "metal":      dict(bpm=(120, 195), piano=.05, guitar=1.0, synth=.05, strings=.10, vocal=.70,
                       major=.15, mellow=.00, rt60=.7, wet=.12, drive=25.0),
    "ambient":    dict(bpm=(55, 90), piano=.40, guitar=.10, synth=.85, strings=.60, vocal=.10,
                       major=.50, mellow=.80, rt60=2.8, wet=.50, drive=0.0),
    "reggae":     dict(bpm=(66, 92), piano=.30, guitar=.80, synth=.10, strings=.05, vocal=.80,
                       major=.60, mellow=.20, rt60=.5, wet=.15, drive=0.0),
}
ID_CHARS = np.array(list(ID_ALPHABET))


@dataclass
class Song:
    track_id: str
    artist: int
    genre: str
    instruments: tuple
    voice: str  # "female", "male" or ""
    bpm: float
    major: bool
    mellow: bool
    eighties: bool
    lofi: bool
    render_seed: int

    def true_tags(self) -> list[str]:
        tags = [self.genre, *self.instruments]
        tags.append(f"{self.voice} vocal" if self.voice else "instrumental")
        if self.bpm >= 140:
            tags.append("fast")
        if self.bpm <= 85:
            tags.append("slow")
        if self.major and self.bpm >= 100:
            tags.append("happy")
        if not self.major and self.bpm <= 110:
            tags.append("sad")
        if self.mellow:
            tags.append("mellow")
        if self.eighties:
            tags.append("80s")
        if self.lofi:
            tags.append("lo-fi")
        return [t for t in TAGS if t in tags]


def random_ids(rng, prefix, count, taken=None) -> list[str]:
    """MSD-style IDs: prefix + 16 characters of A-Z0-9, unique."""
    taken = set() if taken is None else taken
    ids = []
    while len(ids) < count:
        candidate = prefix + "".join(rng.choice(ID_CHARS, 16))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _beta_around(rng, mean, concentration=4.0):
    mean = min(max(mean, 0.02), 0.98)
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def make_catalogue(seed: int, n_songs: int):
    """(artists, songs): artist dicts (id, name, genre; `tagged` is added by
    `mtt.demo.labels.observed_tags`) and `Song`s."""
    rng = np.random.default_rng([seed, 1])
    artists, songs = [], []
    while len(songs) < n_songs:
        a = len(artists)
        genre = str(rng.choice(GENRES, p=GENRE_SHARE))
        style = STYLE[genre]
        profile = {i: _beta_around(rng, style[i]) for i in INSTRUMENTS}
        sings = _beta_around(rng, style["vocal"])
        voice = "female" if rng.random() < 0.45 else "male"
        low, high = style["bpm"]
        tempo = rng.uniform(low, high)
        major = _beta_around(rng, style["major"])
        mellow = _beta_around(rng, style["mellow"]) if style["mellow"] > 0 else 0.0
        eighties = 0.9 if rng.random() < 0.15 else 0.02
        lofi = 0.85 if rng.random() < (0.3 if genre == "hip-hop" else 0.1) else 0.02
        artists.append({"genre": genre})
        for _ in range(min(1 + rng.poisson(5), 15, n_songs - len(songs))):
            song_genre = genre if rng.random() < 0.85 else str(rng.choice(
                [g for g in GENRES if g != genre]))
            played = tuple(i for i in INSTRUMENTS if rng.random() < profile[i])
            if not played:  # every song has a harmonic instrument
                played = (max(INSTRUMENTS, key=lambda i: STYLE[song_genre][i]),)
            bpm = float(np.clip(tempo * np.exp(rng.normal(0, 0.08)), 52, 200))
            is_mellow = bool(rng.random() < mellow) and song_genre != "metal"
            if is_mellow:
                bpm = min(bpm, 110.0)
            songs.append(Song(
                track_id="", artist=a, genre=song_genre, instruments=played,
                voice=voice if rng.random() < sings else "", bpm=round(bpm, 1),
                major=bool(rng.random() < major), mellow=is_mellow,
                eighties=bool(rng.random() < eighties), lofi=bool(rng.random() < lofi),
                render_seed=int(rng.integers(2**31))))
    taken = set()
    for song, track_id in zip(songs, random_ids(rng, "TR", len(songs), taken)):
        song.track_id = track_id
    for artist, (artist_id, name_seed) in zip(
            artists, zip(random_ids(rng, "AR", len(artists), taken),
                         rng.integers(2**31, size=len(artists)))):
        artist["id"] = artist_id
        artist["name"] = _artist_name(np.random.default_rng(int(name_seed)))
    return artists, songs


def _artist_name(rng) -> str:
    syllables = ["ka", "lo", "mi", "ra", "ven", "tor", "sa", "del", "mo", "ri", "an", "zu", "el"]
    words = ["".join(rng.choice(syllables, rng.integers(2, 4))).title()
             for _ in range(rng.integers(1, 3))]
    return " ".join(words)

"""`mtt demo-data`: the embedded demo dataset, synthesized with numpy, in the MSD's own layout.

    DIR/audio/<id[2]>/<id[3]>/<id[4]>/<track_id>.mp3   22,050 Hz mono MP3 (soundfile)
    DIR/track_metadata.db                              songs(...) as in the MSD
    DIR/lastfm_tags.db                                 tids(tid), tags(tag), tid_tag(tid, tag, val)
    DIR/tags.txt                                       the vocabulary (model output order)
    DIR/demo.json                                      generation settings and counts

so `mtt split --format msd` runs the real MSD code path on it.

How songs are made: artists are drawn first, each with a characteristic style (a main genre and
its own probabilities for instruments, vocals, mode, tempo, energy and production); each song
varies around its artist's style. Every tag of the vocabulary is a property of the song that the
renderer makes audible:

    genre (one per song)  drum pattern, tempo range, instrumentation, distortion, reverb
    piano/guitar/synth/strings  the instrument plays (own timbre and playing pattern)
    female/male vocal, instrumental  a formant-filtered voice in a high/low register, or none
    fast / slow           tempo >= 140 / <= 85 BPM
    happy / sad           major and >= 100 BPM / minor and <= 110 BPM
    mellow                low energy: soft or no drums, no distortion, soft playing
    80s                   gated-reverb snare, chorused bright synth, plate reverb
    lo-fi                 band-limited, hiss and crackle, coarse quantization

Labels imitate Last.fm: about three quarters of the artists are untagged (so are their songs, as
obscure MSD artists are); songs of tagged artists carry a noisy subset of their true tags (tags
left out, the artist's main genre attached to all its songs, rare false tags), with 0-100
weights, plus tags outside the vocabulary. The constants below were set from these descriptions
before any model was trained on the data and are not tuned to any result; another seed draws a
different dataset from the same distribution.
"""
import json
import multiprocessing
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

SAMPLE_RATE = 22050
SIZES = {"default": {"songs": 2000, "seconds": 20.0}, "small": {"songs": 240, "seconds": 12.0}}

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
# Labels (Last.fm-like): shares and noise.
TAGGED_ARTIST_SHARE = 0.27
TAGGED_SONG_SHARE = 0.9
KEEP_TRUE_TAG = {"genre": 0.8, "instrument": 0.45, "voice": 0.5, "tempo": 0.4, "mood": 0.4,
                 "era": 0.6}
ARTIST_GENRE_BLEED = 0.5  # chance a song also gets its artist's main genre tag
FALSE_TAG_RATE = 0.01
OTHER_TAGS = ["favorites", "seen live", "awesome", "love", "my music", "albums i own",
              "under 2000 listeners", "cool"]
ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="output folder (replaced if it holds an "
                        "earlier demo dataset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="default: %(songs)d songs of %(seconds)g s; small: %(s)d of %(t)g s"
                        % {**SIZES["default"], "s": SIZES["small"]["songs"],
                           "t": SIZES["small"]["seconds"]})
    parser.add_argument("--songs", type=int, help="number of songs (overrides --size)")
    parser.add_argument("--seconds", type=float, help="song length in s (overrides --size)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes rendering audio (default: the CPU count)")


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not (out / "demo.json").exists():
        print(f"mtt demo-data: error: {out}: exists and is not a demo dataset; not replacing it",
              file=sys.stderr)
        return 2
    if (args.songs is not None and args.songs < 1) or (args.seconds is not None
                                                        and args.seconds < 1):
        print("mtt demo-data: error: --songs and --seconds must be at least 1", file=sys.stderr)
        return 2
    summary = generate(out, seed=args.seed, size=args.size, workers=args.workers,
                       n_songs=args.songs, seconds=args.seconds)
    print(f"mtt demo-data: {summary['songs']} songs by {summary['artists']} artists, "
          f"{summary['labeled_songs']} labeled, in {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- the catalogue (who plays what)

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
    """(artists, songs): artist dicts (id, name, genre, tagged) and `Song`s."""
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


def observed_tags(songs, artists, seed: int):
    """Last.fm-like (track_id, tag, weight) rows: missing for untagged artists, noisy otherwise.

    Which artists are tagged is drawn again (a new attempt of the same seed) until every
    vocabulary tag is observed at least once, so that small datasets cover the vocabulary
    (after 100 attempts, the attempt covering the most tags is kept).
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


# --------------------------------------------------------------------------- audio synthesis

def midi_hz(note):
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)


def harmonic_tone(freq, n, bright, dark, bright_decay, dark_decay, attack=0.005, release=0.03,
                  vibrato=0.0, sustain=False):
    """One note from two harmonic wavetables: a bright attack fading into a darker body.

    `bright`/`dark` are harmonic amplitude lists; decays are time constants in seconds (the dark
    one is ignored when `sustain`); vibrato is a relative depth at 5.5 Hz.
    """
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    if vibrato:
        f = freq * (1 + vibrato * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1, t / 0.3))
        phase = np.cumsum(f, dtype=np.float64) / SAMPLE_RATE
    else:
        phase = freq * t.astype(np.float64)
    index = ((phase % 1.0) * 2048).astype(np.int32)
    out = np.zeros(n, dtype=np.float32)
    for amps, decay in ((bright, bright_decay), (dark, dark_decay)):
        table = _wavetable(freq, tuple(amps))
        envelope = np.exp(-t / decay) if decay else np.ones(n, dtype=np.float32)
        if sustain and amps is dark:
            envelope = np.ones(n, dtype=np.float32)
        out += table[index] * envelope
    ramp = np.minimum(1, t / attack) * np.minimum(1, (n - 1 - np.arange(n)) / (release * SAMPLE_RATE) + 1e-3)
    return (out * ramp).astype(np.float32)


_TABLES = {}


def _wavetable(freq, amps):
    key = (round(float(freq), 2), amps)
    if key not in _TABLES:
        x = np.arange(2048) / 2048
        table = np.zeros(2048)
        for k, a in enumerate(amps, start=1):
            if a and k * freq < 10000:  # no partials near or above Nyquist
                table += a * np.sin(2 * np.pi * k * x)
        _TABLES[key] = (table / max(1e-9, np.abs(table).max())).astype(np.float32)
        if len(_TABLES) > 5000:
            _TABLES.clear()
    return _TABLES[key]


SAW = tuple(1 / k for k in range(1, 25))
SQUARE = tuple((1 / k if k % 2 else 0) for k in range(1, 25))
PIANO_BRIGHT = tuple(1 / k ** 1.1 for k in range(1, 14))
PIANO_DARK = tuple(1 / k ** 2.5 for k in range(1, 7))
PLUCK_BRIGHT = tuple(abs(np.sin(np.pi * k * 0.18)) / k for k in range(1, 18))
PLUCK_DARK = tuple(1 / k ** 2 for k in range(1, 6))
BASS = (1.0, 0.45, 0.18, 0.08)


def note_samples(kind, note, seconds, cache):
    """A cached note of one instrument."""
    n = max(16, int(seconds * SAMPLE_RATE))
    key = (kind, note, n)
    if key not in cache:
        f = float(midi_hz(note))
        if kind == "piano":
            wave = harmonic_tone(f, n, PIANO_BRIGHT, PIANO_DARK, 0.12, 1.4)
        elif kind == "pluck":
            wave = harmonic_tone(f, n, PLUCK_BRIGHT, PLUCK_DARK, 0.06, 0.9, attack=0.002)
        elif kind == "power":  # guitar through an amp (distortion is applied to the layer)
            wave = harmonic_tone(f, n, SAW, PLUCK_DARK, 0.0, 0.0, attack=0.003, sustain=True)
        elif kind == "synth":
            wave = harmonic_tone(f, n, SAW, SQUARE, 0.25, 0.0, attack=0.01, sustain=True)
        elif kind == "pad":
            wave = harmonic_tone(f, n, SAW, PLUCK_DARK, 0.0, 0.0, attack=0.4, release=0.4,
                                 vibrato=0.003, sustain=True)
        elif kind == "strings":
            wave = (harmonic_tone(f, n, SAW, SAW, 0.0, 0.0, attack=0.25, release=0.2,
                                  vibrato=0.004, sustain=True)
                    + harmonic_tone(f * 1.004, n, SAW, SAW, 0.0, 0.0, attack=0.3, release=0.2,
                                    vibrato=0.005, sustain=True)) * 0.5
        elif kind == "bass":
            wave = harmonic_tone(f, n, BASS, (1.0, 0.2), 0.15, 0.8, attack=0.004)
        else:
            raise ValueError(kind)
        cache[key] = wave
    return cache[key]


def place(buffer, wave, start, gain):
    start = int(start)
    if start >= len(buffer) or start + len(wave) <= 0:
        return
    wave = wave[max(0, -start):]
    start = max(0, start)
    stop = min(len(buffer), start + len(wave))
    buffer[start:stop] += gain * wave[:stop - start]


def drum_kit(rng, eighties):
    """Short drum samples for one song."""
    sr = SAMPLE_RATE

    def t(seconds):
        return np.arange(int(seconds * sr), dtype=np.float32) / sr

    tk = t(0.35)
    f0 = rng.uniform(45, 60)
    kick = np.sin(2 * np.pi * np.cumsum(f0 + 110 * np.exp(-tk / 0.03)) / sr) * np.exp(-tk / 0.16)
    ts = t(0.3)
    noise = rng.standard_normal(len(ts)).astype(np.float32)
    snare = (0.7 * signal.sosfilt(_BANDS["snare"], noise) * np.exp(-ts / 0.09)
             + 0.5 * np.sin(2 * np.pi * rng.uniform(170, 210) * ts) * np.exp(-ts / 0.05))
    if eighties:  # gated reverb: a dense tail cut off sharply
        tail = signal.fftconvolve(snare, reverb_ir(rng, 1.5))[:int(0.35 * sr)]
        tail[int(0.25 * sr):] *= np.exp(-np.arange(len(tail) - int(0.25 * sr)) / (0.01 * sr))
        snare = 0.6 * np.pad(snare, (0, len(tail) - len(snare))) + 0.9 * tail
    th = t(0.06)
    hat = signal.sosfilt(_BANDS["hat"], rng.standard_normal(len(th))) * np.exp(-th / 0.015)
    to = t(0.3)
    open_hat = signal.sosfilt(_BANDS["hat"], rng.standard_normal(len(to))) * np.exp(-to / 0.09)
    tr = t(0.8)
    ride = sum(np.sin(2 * np.pi * f * tr) for f in rng.uniform(3000, 7500, 6)) / 6
    ride = (ride + 0.3 * signal.sosfilt(_BANDS["hat"], rng.standard_normal(len(tr)))) \
        * np.exp(-tr / 0.35)
    clap = np.zeros(int(0.2 * sr), dtype=np.float32)
    for k in range(3):
        burst = signal.sosfilt(_BANDS["snare"], rng.standard_normal(int(0.12 * sr))) \
            * np.exp(-t(0.12) / 0.02)
        place(clap, burst.astype(np.float32), k * 0.011 * sr, 0.8)
    shaker = signal.sosfilt(_BANDS["hat"], rng.standard_normal(len(to))) \
        * np.exp(-((to - 0.03) / 0.02) ** 2)
    crash = signal.sosfilt(_BANDS["hat"], rng.standard_normal(int(1.5 * sr))) \
        * np.exp(-t(1.5) / 0.5)
    kit = {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat, "ride": ride,
           "clap": clap, "shaker": shaker, "crash": crash}
    return {k: (v / np.abs(v).max()).astype(np.float32) for k, v in kit.items()}


_BANDS = {"snare": signal.butter(2, [1200, 6000], "bandpass", fs=SAMPLE_RATE, output="sos"),
          "hat": signal.butter(2, 6000, "highpass", fs=SAMPLE_RATE, output="sos"),
          "lofi": signal.butter(4, 3200, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "amp": signal.butter(2, 4500, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "synth": signal.butter(2, 2500, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "rumble": signal.butter(2, 40, "highpass", fs=SAMPLE_RATE, output="sos")}

# Drum patterns: (sample, beat positions within a 4-beat bar, velocity).
PATTERNS = {
    "rock": [("kick", [0, 2, 2.5], 1.0), ("snare", [1, 3], 0.9),
             ("hat", [i / 2 for i in range(8)], 0.35)],
    "metal": [("kick", [i / 4 for i in range(16)], 0.9), ("snare", [1, 3], 1.0),
              ("crash", [0], 0.45), ("hat", [0, 1, 2, 3], 0.3)],
    "electronic": [("kick", [0, 1, 2, 3], 1.0), ("clap", [1, 3], 0.7),
                   ("open_hat", [0.5, 1.5, 2.5, 3.5], 0.4), ("hat", [i / 4 for i in range(16)], 0.15)],
    "hip-hop": [("kick", [0, 1.75, 2.5], 1.0), ("snare", [1, 3], 1.0),
                ("hat", [0, 0.58, 1, 1.58, 2, 2.58, 3, 3.58], 0.35)],
    "jazz": [("ride", [0, 1, 1.67, 2, 3, 3.67], 0.4), ("kick", [0, 2], 0.25),
             ("hat", [1, 3], 0.3), ("snare", [1.67, 3.33], 0.12)],
    "reggae": [("kick", [2], 1.0), ("snare", [2], 0.6), ("hat", [i / 2 for i in range(8)], 0.3)],
    "folk": [("kick", [0, 2], 0.6), ("shaker", [i / 2 for i in range(8)], 0.3)],
    "soft": [("kick", [0, 2], 0.35), ("shaker", [1, 3], 0.2)],
}


def reverb_ir(rng, rt60):
    n = int(min(rt60, 3.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.01 * SAMPLE_RATE)] *= np.linspace(0, 1, int(0.01 * SAMPLE_RATE))
    return (ir / np.sqrt((ir ** 2).sum())).astype(np.float32)


MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = {True: [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4]],
                False: [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4], [0, 5, 3, 4]]}
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410),
          (300, 870, 2240)]  # a e i o u (formants of an adult male voice, Hz)


def render_song(song: Song, seconds: float) -> np.ndarray:
    """The song's waveform (float32, mono, SAMPLE_RATE)."""
    rng = np.random.default_rng(song.render_seed)
    n = int(seconds * SAMPLE_RATE)
    beat = 60.0 / song.bpm * SAMPLE_RATE  # samples per beat
    scale = MAJOR if song.major else MINOR
    root = int(rng.integers(40, 52))  # key: E2..D#3
    progression = PROGRESSIONS[song.major][rng.integers(4)]
    bars_per_chord = 2 if song.bpm > 150 else 1
    n_bars = int(np.ceil(n / (4 * beat))) + 1
    chords = [progression[(b // bars_per_chord) % 4] for b in range(n_bars)]
    energy = 0.55 if song.mellow else 1.0
    cache = {}

    def chord_notes(degree, octave, count=3):
        return [root + 12 * octave + scale[(degree + 2 * i) % 7] + 12 * ((degree + 2 * i) // 7)
                for i in range(count)]

    layers = {}

    def layer(name):
        return layers.setdefault(name, np.zeros(n, dtype=np.float32))

    # drums
    pattern = {"ambient": None, "folk": "folk"}.get(song.genre, song.genre)
    if song.mellow and song.genre not in ("ambient", "folk", "jazz"):
        pattern = "soft"
    if song.mellow and song.genre == "folk":
        pattern = None if rng.random() < 0.6 else "soft"
    if pattern:
        kit = drum_kit(rng, song.eighties)
        drums = layer("drums")
        for bar in range(n_bars):
            for sample, beats, velocity in PATTERNS[pattern]:
                for b in beats:
                    jitter = rng.normal(0, 0.004 * SAMPLE_RATE)
                    gain = velocity * energy * rng.uniform(0.85, 1.0)
                    place(drums, kit[sample], (bar * 4 + b) * beat + jitter, gain)
            if pattern == "rock" and bar % 4 == 0:
                place(drums, kit["crash"], bar * 4 * beat, 0.4 * energy)

    # bass
    bass = layer("bass")
    bass_beats = {"electronic": [0.5, 1.5, 2.5, 3.5], "hip-hop": [0, 1.75, 2.5],
                  "reggae": [0, 0.75, 1.5, 2.5], "metal": [i / 2 for i in range(8)],
                  "rock": [i / 2 for i in range(8)], "ambient": [0]}.get(song.genre, [0, 1, 2, 3])
    for bar in range(n_bars):
        for i, b in enumerate(bass_beats):
            degree = chords[bar]
            if song.genre == "jazz":  # walking bass through the scale
                degree = chords[bar] + [0, 2, 4, 5][i % 4]
            note = root - 12 + scale[degree % 7] + 12 * (degree // 7)
            length = 4 if song.genre == "ambient" else 0.9 * (60 / song.bpm)
            place(bass, note_samples("bass", note, length, cache), (bar * 4 + b) * beat,
                  0.8 * energy)

    instruments = set(song.instruments)
    if "piano" in instruments:
        piano = layer("piano")
        hits = [0, 1.5, 2.5] if song.genre == "jazz" else [0, 2]
        arpeggio = song.mellow or song.genre == "ambient"
        for bar in range(n_bars):
            notes = chord_notes(chords[bar], 2, 4)
            if arpeggio:
                for k in range(8):
                    place(piano, note_samples("piano", notes[k % 4], 1.2, cache),
                          (bar * 4 + k / 2) * beat, 0.35)
            else:
                for b in hits:
                    for note in notes:
                        place(piano, note_samples("piano", note, 1.6, cache),
                              (bar * 4 + b) * beat + rng.normal(0, 40), 0.3 * energy)
    if "guitar" in instruments:
        guitar = layer("guitar")
        distorted = STYLE[song.genre]["drive"] > 0 and not song.mellow
        for bar in range(n_bars):
            if distorted:
                notes = [root + 12 + scale[chords[bar] % 7]]
                notes += [notes[0] + 7, notes[0] + 12]
                step = 0.25 if song.genre == "metal" else 0.5
                length = step * 0.8 * 60 / song.bpm
                for k in range(int(4 / step)):
                    for note in notes:
                        place(guitar, note_samples("power", note, length, cache),
                              (bar * 4 + k * step) * beat, 0.3)
            else:
                strums = {"reggae": [0.5, 1.5, 2.5, 3.5], "jazz": [0, 2]}.get(
                    song.genre, [0, 1, 1.5, 2.5, 3])
                length = 0.25 if song.genre == "reggae" else 1.0
                notes = chord_notes(chords[bar], 2, 3) + chord_notes(chords[bar], 3, 2)
                for b in strums:
                    for k, note in enumerate(notes):
                        place(guitar, note_samples("pluck", note, length, cache),
                              (bar * 4 + b) * beat + k * 0.012 * SAMPLE_RATE, 0.25 * energy)
        if distorted:
            drive = STYLE[song.genre]["drive"]
            layers["guitar"] = signal.sosfilt(_BANDS["amp"], np.tanh(drive * guitar)).astype(
                np.float32) * 0.6
    if "synth" in instruments:
        synth = layer("synth")
        pad = song.genre == "ambient" or song.mellow
        for bar in range(n_bars):
            notes = chord_notes(chords[bar], 3, 3)
            if pad:
                for note in notes:
                    place(synth, note_samples("pad", note, 4 * 60 / song.bpm + 0.4, cache),
                          bar * 4 * beat, 0.25)
            else:
                for k in range(16):
                    note = notes[k % 3] + (12 if k % 8 >= 4 else 0)
                    place(synth, note_samples("synth", note, 0.22 * 60 / song.bpm, cache),
                          (bar * 4 + k / 4) * beat, 0.22)
        if song.eighties:  # chorus: a slightly delayed, detuned-by-delay copy
            delay = int(0.018 * SAMPLE_RATE)
            synth[delay:] += 0.7 * synth[:-delay].copy()
        if not song.eighties:
            layers["synth"] = signal.sosfilt(_BANDS["synth"], synth).astype(np.float32)
    if "strings" in instruments:
        strings = layer("strings")
        for bar in range(n_bars):
            for note in chord_notes(chords[bar], 3, 3):
                place(strings, note_samples("strings", note, 4 * 60 / song.bpm + 0.2, cache),
                      bar * 4 * beat, 0.22)
    if song.voice:
        layers["voice"] = sing(song, rng, n, beat, root, scale, chords)

    gains = {"drums": 0.9, "bass": 0.7, "piano": 0.8, "guitar": 0.8, "synth": 0.7,
             "strings": 0.7, "voice": 1.0}
    mix = np.zeros(n, dtype=np.float32)
    for name, wave in layers.items():
        rms = np.sqrt(np.mean(wave ** 2)) + 1e-9
        mix += gains[name] * wave / rms * 0.1 * rng.uniform(0.8, 1.2)

    style = STYLE[song.genre]
    rt60, wet = style["rt60"] * rng.uniform(0.7, 1.3), style["wet"]
    if song.eighties:
        rt60, wet = max(rt60, 1.6), max(wet, 0.35)
    mix = mix + wet * signal.oaconvolve(mix, reverb_ir(rng, rt60))[:n].astype(np.float32)
    if song.lofi:
        mix = signal.sosfilt(_BANDS["lofi"], mix).astype(np.float32)
        mix += rng.normal(0, 0.02 * np.sqrt(np.mean(mix ** 2)) / 0.1 * 0.5, n).astype(np.float32)
        crackle = rng.random(n) < 4 / SAMPLE_RATE
        mix[crackle] += rng.uniform(-0.3, 0.3, int(crackle.sum())).astype(np.float32)
        mix = np.round(mix * 24) / 24
    mix = signal.sosfilt(_BANDS["rumble"], mix).astype(np.float32)
    fade = int(0.05 * SAMPLE_RATE)
    mix[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    mix[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    peak = np.abs(mix).max() + 1e-9
    loudness = rng.uniform(0.5, 0.95) * (0.7 if song.mellow else 1.0)
    return (mix / peak * loudness).astype(np.float32)


def sing(song, rng, n, beat, root, scale, chords):
    """A voice: a melody on the scale, sung on vowels through formant filters."""
    voice = np.zeros(n, dtype=np.float32)
    female = song.voice == "female"
    base = root + (24 if female else 12)  # female: E4-D#5 tonic, male: E3-D#4
    rap = song.genre == "hip-hop"
    shift = 1.17 if female else 1.0
    position, degree = 0.0, 2
    while position * beat < n:
        phrase_beats = 8 if rng.random() < 0.7 else 4
        end = position + phrase_beats
        while position < end:
            length = rng.choice([0.5, 0.5, 1.0]) if rap else rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])
            degree = int(np.clip(degree + rng.integers(-1 if rap else -2, 2 if rap else 3), -2, 9))
            note = base + scale[degree % 7] + 12 * (degree // 7)
            seconds = length * beat / SAMPLE_RATE
            tone = harmonic_tone(float(midi_hz(note)), int(seconds * SAMPLE_RATE), SAW, SAW,
                                 0.0, 0.0, attack=0.03, release=0.06,
                                 vibrato=0.0 if rap else 0.012, sustain=True)
            formants = VOWELS[rng.integers(len(VOWELS))]
            sung = np.zeros_like(tone)
            for k, f in enumerate(formants):
                b, a = signal.iirpeak(min(f * shift, 0.45 * SAMPLE_RATE), 6, fs=SAMPLE_RATE)
                sung += signal.lfilter(b, a, tone).astype(np.float32) / (k + 1)
            place(voice, sung, position * beat, 1.0)
            position += length
        position += rng.choice([1.0, 2.0, 4.0])
    return voice


# --------------------------------------------------------------------------------- writing

def audio_path(track_id: str) -> str:
    return f"audio/{track_id[2]}/{track_id[3]}/{track_id[4]}/{track_id}.mp3"


def _render_and_write(job):
    folder, song, seconds = job
    wave = render_song(song, seconds)
    path = Path(folder) / audio_path(song.track_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, SAMPLE_RATE, format="MP3", bitrate_mode="VARIABLE",
                    compression_level=0.5)
    return song.track_id


def write_track_metadata(path, songs, artists, seconds, seed):
    rng = np.random.default_rng([seed, 3])
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, "
                "release text, artist_id text, artist_mbid text, artist_name text, "
                "duration real, artist_familiarity real, artist_hotttnesss real, year int, "
                "track_7digitalid int, shs_perf int, shs_work int)")
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
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE tids (tid TEXT)")
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
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


def generate(out, seed=0, size="default", workers=2, n_songs=None, seconds=None) -> dict:
    """Write the demo dataset to `out` (built in a temporary folder, renamed at the end)."""
    out = Path(out)
    settings = dict(SIZES[size])
    if n_songs is not None:
        settings["songs"] = int(n_songs)
    if seconds is not None:
        settings["seconds"] = float(seconds)
    artists, songs = make_catalogue(seed, settings["songs"])
    tag_rows = observed_tags(songs, artists, seed)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    jobs = [(str(tmp), song, settings["seconds"]) for song in songs]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_and_write, jobs, chunksize=4):
                pass
    else:
        for job in jobs:
            _render_and_write(job)
    write_track_metadata(tmp / "track_metadata.db", songs, artists, settings["seconds"], seed)
    write_lastfm_tags(tmp / "lastfm_tags.db", tag_rows)
    (tmp / "tags.txt").write_text("".join(f"{t}\n" for t in TAGS), encoding="utf-8")
    labeled = {t for t, tag, _ in tag_rows if tag in TAGS}
    summary = {"seed": seed, "size": size, "songs": len(songs), "artists": len(artists),
               "seconds": settings["seconds"], "sample_rate": SAMPLE_RATE,
               "tagged_artists": sum(a["tagged"] for a in artists),
               "labeled_songs": len(labeled), "tags": TAGS}
    (tmp / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (tmp / "true_tags.tsv").write_text(
        "track_id\tartist_id\ttags\n" + "".join(
            f"{s.track_id}\t{artists[s.artist]['id']}\t{';'.join(s.true_tags())}\n"
            for s in songs), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary

"""The demo songs' audio, synthesized with numpy and scipy: every tag is a property you can hear.

    genre (one per song)  drum pattern, tempo range, instrumentation, distortion, reverb
    piano/guitar/synth/strings  the instrument plays (own timbre and playing pattern)
    female/male vocal, instrumental  a formant-filtered voice in a high/low register, or none
    fast / slow           tempo >= 140 / <= 85 BPM
    happy / sad           major and >= 100 BPM / minor and <= 110 BPM
    mellow                low energy: soft or no drums, no distortion, soft playing
    80s                   gated-reverb snare, chorused bright synth, plate reverb
    lo-fi                 band-limited, hiss and crackle, coarse quantization

`render_song` draws the song's key and chords (`arrange`), renders one layer per part (`drums`,
`bass`, the instruments in `INSTRUMENT_LAYERS`, `voice`), mixes them (`mix`) and masters the
mix (`master`: reverb, lo-fi wear, fades, level). All randomness comes from one generator seeded
by the song's `render_seed`, drawn in that order, so a song sounds the same on every run.
"""
import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from mtt.demo.catalogue import STYLE, Song

SAMPLE_RATE = 22050


# ---------------------------------------------------------------------------- tones and notes

def midi_hz(note):
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69) / 12)


def harmonic_tone(freq, n, bright, dark, bright_decay, dark_decay, attack=0.005, release=0.03,
                  vibrato=0.0, sustain=False):
    """One note from two harmonic wavetables: a bright attack fading into a darker body.

    `bright`/`dark` are harmonic amplitude lists; decays are time constants in seconds (the dark
    one is ignored when `sustain`); vibrato is a relative depth at 5.5 Hz.
    """
    t = _time(n)
    if vibrato:
        f = freq * (1 + vibrato * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1, t / 0.3))
        phase = np.cumsum(f, dtype=np.float64) / SAMPLE_RATE
    else:
        phase = freq * t.astype(np.float64)
    index = ((phase % 1.0) * 2048).astype(np.int32)
    out = np.zeros(n, dtype=np.float32)
    for amps, decay in ((bright, bright_decay), (dark, dark_decay)):
        table = _wavetable(freq, tuple(amps))
        if decay and not (sustain and amps is dark):
            out += table[index] * _decay(n, decay)
        else:  # a constant envelope: multiplying by ones changes nothing
            out += table[index]
    return (out * _ramp(n, attack, release)).astype(np.float32)


# Notes of a song share few lengths and envelopes, so their time axes, decays and attack/release
# ramps are computed once per worker (bounded caches; the values are exactly those computed inline).
@functools.lru_cache(maxsize=256)
def _time(n):
    return np.arange(n, dtype=np.float32) / SAMPLE_RATE


@functools.lru_cache(maxsize=512)
def _decay(n, decay):
    return np.exp(-_time(n) / decay)


@functools.lru_cache(maxsize=512)
def _ramp(n, attack, release):
    return (np.minimum(1, _time(n) / attack)
            * np.minimum(1, (n - 1 - np.arange(n)) / (release * SAMPLE_RATE) + 1e-3))


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


def note_samples(kind, note, seconds):
    """One note of one instrument, `seconds` long (cached: `_note`)."""
    return _note(kind, note, max(16, int(seconds * SAMPLE_RATE)))


# Shared by the songs a process renders (their notes repeat); 2,048 notes are about 150 MB.
@functools.lru_cache(maxsize=2048)
def _note(kind, note, n):
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
    return wave


def place(buffer, wave, start, gain):
    """Add `gain * wave` into `buffer` from sample `start` (clipped at both ends)."""
    start = int(start)
    if start >= len(buffer) or start + len(wave) <= 0:
        return
    wave = wave[max(0, -start):]
    start = max(0, start)
    stop = min(len(buffer), start + len(wave))
    buffer[start:stop] += gain * wave[:stop - start]


# ------------------------------------------------------------------ filters, drum kit, reverb

_BANDS = {"snare": signal.butter(2, [1200, 6000], "bandpass", fs=SAMPLE_RATE, output="sos"),
          "hat": signal.butter(2, 6000, "highpass", fs=SAMPLE_RATE, output="sos"),
          "lofi": signal.butter(4, 3200, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "amp": signal.butter(2, 4500, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "synth": signal.butter(2, 2500, "lowpass", fs=SAMPLE_RATE, output="sos"),
          "rumble": signal.butter(2, 40, "highpass", fs=SAMPLE_RATE, output="sos")}


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


def reverb_ir(rng, rt60):
    n = int(min(rt60, 3.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.01 * SAMPLE_RATE)] *= np.linspace(0, 1, int(0.01 * SAMPLE_RATE))
    return (ir / np.sqrt((ir ** 2).sum())).astype(np.float32)


# Drum patterns: (sample, beat positions within a 4-beat bar, velocity).
PATTERNS = {
    "rock": [("kick", [0, 2, 2.5], 1.0), ("snare", [1, 3], 0.9),
             ("hat", [i / 2 for i in range(8)], 0.35)],
    "metal": [("kick", [i / 4 for i in range(16)], 0.9), ("snare", [1, 3], 1.0),
              ("crash", [0], 0.45), ("hat", [0, 1, 2, 3], 0.3)],
    "electronic": [("kick", [0, 1, 2, 3], 1.0), ("clap", [1, 3], 0.7),
                   ("open_hat", [0.5, 1.5, 2.5, 3.5], 0.4),
                   ("hat", [i / 4 for i in range(16)], 0.15)],
    "hip-hop": [("kick", [0, 1.75, 2.5], 1.0), ("snare", [1, 3], 1.0),
                ("hat", [0, 0.58, 1, 1.58, 2, 2.58, 3, 3.58], 0.35)],
    "jazz": [("ride", [0, 1, 1.67, 2, 3, 3.67], 0.4), ("kick", [0, 2], 0.25),
             ("hat", [1, 3], 0.3), ("snare", [1.67, 3.33], 0.12)],
    "reggae": [("kick", [2], 1.0), ("snare", [2], 0.6), ("hat", [i / 2 for i in range(8)], 0.3)],
    "folk": [("kick", [0, 2], 0.6), ("shaker", [i / 2 for i in range(8)], 0.3)],
    "soft": [("kick", [0, 2], 0.35), ("shaker", [1, 3], 0.2)],
}


# ------------------------------------------------------------ the arrangement every layer follows

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
PROGRESSIONS = {True: [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4]],
                False: [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4], [0, 5, 3, 4]]}
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410),
          (300, 870, 2240)]  # a e i o u (formants of an adult male voice, Hz)


@dataclass
class Arrangement:
    """Length, tempo grid, key and chords of one song, shared by its layers."""
    n: int  # samples
    beat: float  # samples per beat
    root: int  # MIDI note of the key's tonic
    scale: list  # MAJOR or MINOR
    chords: list  # scale degree of each bar's chord
    energy: float  # 1, or less for a mellow song

    @property
    def n_bars(self) -> int:
        return len(self.chords)

    def chord_notes(self, degree, octave, count=3):
        return [self.root + 12 * octave + self.scale[(degree + 2 * i) % 7]
                + 12 * ((degree + 2 * i) // 7) for i in range(count)]


def arrange(song: Song, seconds: float, rng) -> Arrangement:
    """Draw the song's key and chord progression (two draws of `rng`)."""
    n = int(seconds * SAMPLE_RATE)
    beat = 60.0 / song.bpm * SAMPLE_RATE
    root = int(rng.integers(40, 52))  # key: E2..D#3
    progression = PROGRESSIONS[song.major][rng.integers(4)]
    bars_per_chord = 2 if song.bpm > 150 else 1
    n_bars = int(np.ceil(n / (4 * beat))) + 1
    chords = [progression[(b // bars_per_chord) % 4] for b in range(n_bars)]
    return Arrangement(n=n, beat=beat, root=root, scale=MAJOR if song.major else MINOR,
                       chords=chords, energy=0.55 if song.mellow else 1.0)


# ---------------------------------------------------- layers: (song, arrangement, rng) -> wave

def drums(song: Song, a: Arrangement, rng):
    """The genre's drum pattern (soft or none when mellow), or None for a song without drums."""
    pattern = {"ambient": None, "folk": "folk"}.get(song.genre, song.genre)
    if song.mellow and song.genre not in ("ambient", "folk", "jazz"):
        pattern = "soft"
    if song.mellow and song.genre == "folk":
        pattern = None if rng.random() < 0.6 else "soft"
    if not pattern:
        return None
    kit = drum_kit(rng, song.eighties)
    out = np.zeros(a.n, dtype=np.float32)
    for bar in range(a.n_bars):
        for sample, beats, velocity in PATTERNS[pattern]:
            for b in beats:
                jitter = rng.normal(0, 0.004 * SAMPLE_RATE)
                gain = velocity * a.energy * rng.uniform(0.85, 1.0)
                place(out, kit[sample], (bar * 4 + b) * a.beat + jitter, gain)
        if pattern == "rock" and bar % 4 == 0:
            place(out, kit["crash"], bar * 4 * a.beat, 0.4 * a.energy)
    return out


def bass(song: Song, a: Arrangement, rng):
    """Every song has a bass line on the chord roots (walking through the scale in jazz)."""
    out = np.zeros(a.n, dtype=np.float32)
    bass_beats = {"electronic": [0.5, 1.5, 2.5, 3.5], "hip-hop": [0, 1.75, 2.5],
                  "reggae": [0, 0.75, 1.5, 2.5], "metal": [i / 2 for i in range(8)],
                  "rock": [i / 2 for i in range(8)], "ambient": [0]}.get(song.genre, [0, 1, 2, 3])
    for bar in range(a.n_bars):
        for i, b in enumerate(bass_beats):
            degree = a.chords[bar]
            if song.genre == "jazz":  # walking bass through the scale
                degree = a.chords[bar] + [0, 2, 4, 5][i % 4]
            note = a.root - 12 + a.scale[degree % 7] + 12 * (degree // 7)
            length = 4 if song.genre == "ambient" else 0.9 * (60 / song.bpm)
            place(out, note_samples("bass", note, length), (bar * 4 + b) * a.beat,
                  0.8 * a.energy)
    return out


def piano(song: Song, a: Arrangement, rng):
    """Chords (jazz: syncopated comping), or arpeggios when mellow or ambient."""
    out = np.zeros(a.n, dtype=np.float32)
    hits = [0, 1.5, 2.5] if song.genre == "jazz" else [0, 2]
    arpeggio = song.mellow or song.genre == "ambient"
    for bar in range(a.n_bars):
        notes = a.chord_notes(a.chords[bar], 2, 4)
        if arpeggio:
            for k in range(8):
                place(out, note_samples("piano", notes[k % 4], 1.2),
                      (bar * 4 + k / 2) * a.beat, 0.35)
        else:
            for b in hits:
                for note in notes:
                    place(out, note_samples("piano", note, 1.6),
                          (bar * 4 + b) * a.beat + rng.normal(0, 40), 0.3 * a.energy)
    return out


def guitar(song: Song, a: Arrangement, rng):
    """Distorted power chords where the genre drives an amp (not when mellow), else strums."""
    out = np.zeros(a.n, dtype=np.float32)
    distorted = STYLE[song.genre]["drive"] > 0 and not song.mellow
    for bar in range(a.n_bars):
        if distorted:
            notes = [a.root + 12 + a.scale[a.chords[bar] % 7]]
            notes += [notes[0] + 7, notes[0] + 12]
            step = 0.25 if song.genre == "metal" else 0.5
            length = step * 0.8 * 60 / song.bpm
            for k in range(int(4 / step)):
                for note in notes:
                    place(out, note_samples("power", note, length),
                          (bar * 4 + k * step) * a.beat, 0.3)
        else:
            strums = {"reggae": [0.5, 1.5, 2.5, 3.5], "jazz": [0, 2]}.get(
                song.genre, [0, 1, 1.5, 2.5, 3])
            length = 0.25 if song.genre == "reggae" else 1.0
            notes = a.chord_notes(a.chords[bar], 2, 3) + a.chord_notes(a.chords[bar], 3, 2)
            for b in strums:
                for k, note in enumerate(notes):
                    place(out, note_samples("pluck", note, length),
                          (bar * 4 + b) * a.beat + k * 0.012 * SAMPLE_RATE, 0.25 * a.energy)
    if distorted:
        drive = STYLE[song.genre]["drive"]
        return signal.sosfilt(_BANDS["amp"], np.tanh(drive * out)).astype(np.float32) * 0.6
    return out


def synth(song: Song, a: Arrangement, rng):
    """A pad (ambient or mellow) or a 16th-note arpeggio; 80s: chorused and unfiltered."""
    out = np.zeros(a.n, dtype=np.float32)
    pad = song.genre == "ambient" or song.mellow
    for bar in range(a.n_bars):
        notes = a.chord_notes(a.chords[bar], 3, 3)
        if pad:
            for note in notes:
                place(out, note_samples("pad", note, 4 * 60 / song.bpm + 0.4),
                      bar * 4 * a.beat, 0.25)
        else:
            for k in range(16):
                note = notes[k % 3] + (12 if k % 8 >= 4 else 0)
                place(out, note_samples("synth", note, 0.22 * 60 / song.bpm),
                      (bar * 4 + k / 4) * a.beat, 0.22)
    if song.eighties:  # chorus: a slightly delayed, detuned-by-delay copy
        delay = int(0.018 * SAMPLE_RATE)
        out[delay:] += 0.7 * out[:-delay].copy()
        return out
    return signal.sosfilt(_BANDS["synth"], out).astype(np.float32)


def strings(song: Song, a: Arrangement, rng):
    """Sustained chords, one per bar."""
    out = np.zeros(a.n, dtype=np.float32)
    for bar in range(a.n_bars):
        for note in a.chord_notes(a.chords[bar], 3, 3):
            place(out, note_samples("strings", note, 4 * 60 / song.bpm + 0.2),
                  bar * 4 * a.beat, 0.22)
    return out


INSTRUMENT_LAYERS = {"piano": piano, "guitar": guitar, "synth": synth, "strings": strings}


def voice(song: Song, a: Arrangement, rng):
    """A voice: a melody on the scale, sung on vowels through formant filters (rapped in
    hip-hop); female a register higher than male."""
    out = np.zeros(a.n, dtype=np.float32)
    female = song.voice == "female"
    base = a.root + (24 if female else 12)  # female: E4-D#5 tonic, male: E3-D#4
    rap = song.genre == "hip-hop"
    shift = 1.17 if female else 1.0
    position, degree = 0.0, 2
    while position * a.beat < a.n:
        phrase_beats = 8 if rng.random() < 0.7 else 4
        end = position + phrase_beats
        while position < end:
            length = rng.choice([0.5, 0.5, 1.0]) if rap else rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])
            degree = int(np.clip(degree + rng.integers(-1 if rap else -2, 2 if rap else 3), -2, 9))
            note = base + a.scale[degree % 7] + 12 * (degree // 7)
            seconds = length * a.beat / SAMPLE_RATE
            tone = harmonic_tone(float(midi_hz(note)), int(seconds * SAMPLE_RATE), SAW, SAW,
                                 0.0, 0.0, attack=0.03, release=0.06,
                                 vibrato=0.0 if rap else 0.012, sustain=True)
            formants = VOWELS[rng.integers(len(VOWELS))]
            sung = np.zeros_like(tone)
            for k, f in enumerate(formants):
                num, den = signal.iirpeak(min(f * shift, 0.45 * SAMPLE_RATE), 6, fs=SAMPLE_RATE)
                sung += signal.lfilter(num, den, tone).astype(np.float32) / (k + 1)
            place(out, sung, position * a.beat, 1.0)
            position += length
        position += rng.choice([1.0, 2.0, 4.0])
    return out


# ------------------------------------------------------------------------- mix and master

GAINS = {"drums": 0.9, "bass": 0.7, "piano": 0.8, "guitar": 0.8, "synth": 0.7, "strings": 0.7,
         "voice": 1.0}


def mix(layers: dict, rng):
    """Each layer at its RMS-normalized gain, with a random balance, summed in layer order."""
    n = len(next(iter(layers.values())))
    out = np.zeros(n, dtype=np.float32)
    for name, wave in layers.items():
        rms = np.sqrt(np.mean(wave ** 2)) + 1e-9
        out += GAINS[name] * wave / rms * 0.1 * rng.uniform(0.8, 1.2)
    return out


def lo_fi(wave, rng):
    """Band-limited, hiss and crackle, coarse quantization."""
    n = len(wave)
    wave = signal.sosfilt(_BANDS["lofi"], wave).astype(np.float32)
    wave += rng.normal(0, 0.02 * np.sqrt(np.mean(wave ** 2)) / 0.1 * 0.5, n).astype(np.float32)
    crackle = rng.random(n) < 4 / SAMPLE_RATE
    wave[crackle] += rng.uniform(-0.3, 0.3, int(crackle.sum())).astype(np.float32)
    return np.round(wave * 24) / 24


def master(song: Song, wave, rng):
    """The genre's reverb (an 80s plate when 80s), lo-fi wear, rumble filter, fades, level."""
    n = len(wave)
    style = STYLE[song.genre]
    rt60, wet = style["rt60"] * rng.uniform(0.7, 1.3), style["wet"]
    if song.eighties:
        rt60, wet = max(rt60, 1.6), max(wet, 0.35)
    wave = wave + wet * signal.oaconvolve(wave, reverb_ir(rng, rt60))[:n].astype(np.float32)
    if song.lofi:
        wave = lo_fi(wave, rng)
    wave = signal.sosfilt(_BANDS["rumble"], wave).astype(np.float32)
    fade = int(0.05 * SAMPLE_RATE)
    wave[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    wave[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    peak = np.abs(wave).max() + 1e-9
    loudness = rng.uniform(0.5, 0.95) * (0.7 if song.mellow else 1.0)
    return (wave / peak * loudness).astype(np.float32)


def render_song(song: Song, seconds: float) -> np.ndarray:
    """The song's waveform (float32, mono, SAMPLE_RATE)."""
    rng = np.random.default_rng(song.render_seed)
    arrangement = arrange(song, seconds, rng)
    layers = {}
    drum_layer = drums(song, arrangement, rng)
    if drum_layer is not None:
        layers["drums"] = drum_layer
    layers["bass"] = bass(song, arrangement, rng)
    for name, play in INSTRUMENT_LAYERS.items():
        if name in song.instruments:
            layers[name] = play(song, arrangement, rng)
    if song.voice:
        layers["voice"] = voice(song, arrangement, rng)
    return master(song, mix(layers, rng), rng)

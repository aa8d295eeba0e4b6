"""Benchmark `mtt split` at MSD scale: a generated fixture in the MSD SQLite schemas (1 M tracks,
44 k artists by default), split by our splitter and by a random artist-level split (the usual
baseline, as sklearn's GroupShuffleSplit would do), each in its own process so that its peak
memory (max RSS) is measured alone. Fixture generation is timed separately.

    python bench/split.py --quick     # one fixture, one run of each
    python bench/split.py             # 3 runs each

Last line: tracks=N seconds=S peak_mb=M (medians for our splitter) and the baseline's figures.
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtt.datasets.msd import (ID_ALPHABET, LASTFM_TAGS, LASTFM_TAGS_TABLES,  # noqa: E402
                              TRACK_METADATA, TRACK_METADATA_TABLES, create_tables)
from mtt.formats.split_folder import LABELED_SETS  # noqa: E402
from mtt.datasets.vocabulary import MSD_TOP50  # noqa: E402

ID_CHARS = np.frombuffer(ID_ALPHABET.encode("ascii"), dtype=np.uint8)


def random_ids(rng, prefix, count):
    """Unique MSD-style IDs (prefix + 16 of A-Z0-9)."""
    ids = np.empty(0, dtype=object)
    while len(ids) < count:
        codes = ID_CHARS[rng.integers(0, 36, size=(count - len(ids), 16))]
        new = np.char.add(prefix, codes.view("S16").ravel().astype("U16")).astype(object)
        ids = np.unique(np.concatenate([ids, new]))
    return rng.permutation(ids)[:count]


def make_fixture(folder, n_tracks=1_000_000, n_artists=44_000, seed=0):
    """track_metadata.db + lastfm_tags.db: skewed artist sizes, ~1/4 of tracks with vocabulary
    tags drawn from artist profiles over Zipf-distributed tags, plus tags outside the vocabulary."""
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(0, 1.2, n_artists)
    sizes = np.maximum(1, np.round(sizes / sizes.sum() * n_tracks)).astype(np.int64)
    while sizes.sum() != n_tracks:  # fix rounding on the largest artists
        diff = n_tracks - sizes.sum()
        biggest = np.argsort(-sizes)[: abs(diff)]
        sizes[biggest] += np.sign(diff)
    artist_of_track = np.repeat(np.arange(n_artists), sizes)
    track_ids = random_ids(rng, "TR", n_tracks)
    artist_ids = random_ids(rng, "AR", n_artists)

    tag_weight = 1 / np.arange(1, 51) ** 0.8
    tag_weight /= tag_weight.sum()
    profiles = np.zeros((n_artists, 50), dtype=bool)
    for k in range(3):
        profiles[np.arange(n_artists), rng.choice(50, n_artists, p=tag_weight)] = True
    labeled_share = rng.beta(0.6, 1.6, n_artists) * (rng.random(n_artists) < 0.6)
    links_track, links_tag = [], []
    for start in range(0, n_tracks, 100_000):
        artists = artist_of_track[start:start + 100_000]
        labeled = rng.random(len(artists)) < labeled_share[artists]
        labels = profiles[artists] & (rng.random((len(artists), 50), dtype=np.float32) < 0.6)
        labels |= rng.random((len(artists), 50), dtype=np.float32) < 0.004
        labels &= labeled[:, None]
        rows, cols = np.nonzero(labels)
        links_track.append(rows + start)
        links_tag.append(cols)
    links_track = np.concatenate(links_track)
    links_tag = np.concatenate(links_tag)
    other = rng.integers(0, n_tracks, 1_000_000)  # tags outside the vocabulary
    links_track = np.concatenate([links_track, other])
    links_tag = np.concatenate([links_tag, 50 + rng.integers(0, 2000, len(other))])
    tag_names = MSD_TOP50 + [f"other tag {i}" for i in range(2000)]

    con = sqlite3.connect(folder / TRACK_METADATA)
    con.execute("PRAGMA journal_mode = OFF")
    create_tables(con, TRACK_METADATA_TABLES)
    con.executemany("INSERT INTO songs VALUES (?, 'title', 'SOXXXXXXXXXXXXXXXX', 'release', ?, "
                    "'', 'artist', 200.0, 0.5, 0.5, 2000, 1, -1, 0)",
                    zip(track_ids.tolist(), artist_ids[artist_of_track].tolist()))
    con.commit()
    con.close()
    con = sqlite3.connect(folder / LASTFM_TAGS)
    con.execute("PRAGMA journal_mode = OFF")
    create_tables(con, LASTFM_TAGS_TABLES)
    tid_tracks, tid_row = np.unique(links_track, return_inverse=True)
    con.executemany("INSERT INTO tids VALUES (?)", ((t,) for t in track_ids[tid_tracks].tolist()))
    con.executemany("INSERT INTO tags VALUES (?)", ((t,) for t in tag_names))
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                    zip((tid_row + 1).tolist(), (links_tag + 1).tolist(),
                        rng.integers(0, 101, len(links_tag)).astype(float).tolist()))
    con.execute("CREATE INDEX idx_tid_tag ON tid_tag (tid, tag)")
    con.commit()
    con.close()
    return len(tid_tracks)


def run_split(kind, folder, out, seed):
    """One split in this process (called through a subprocess by `measure`)."""
    from mtt.datasets import load_tracks
    from mtt.prepare.split import split_tracks, write_split
    table = load_tracks("msd", track_metadata=folder / TRACK_METADATA,
                        lastfm_tags=folder / LASTFM_TAGS)
    if kind == "ours":
        sets = split_tracks(table, [0.7, 0.15, 0.15], seed)
    else:  # random artist-level split to the same track shares, unlabeled as in CALS
        labeled = table.labels.any(1)
        artists, codes = np.unique(table.artist_id[labeled], return_inverse=True)
        order = np.random.default_rng(seed).permutation(len(artists))
        cumulative = np.cumsum(np.bincount(codes, minlength=len(artists))[order])
        artist_set = np.empty(len(artists), dtype=np.int64)
        artist_set[order] = np.searchsorted([0.7, 0.85], cumulative / cumulative[-1], "right")
        sets = np.empty(len(table), dtype=object)
        sets[labeled] = np.array(LABELED_SETS, dtype=object)[artist_set[codes]]
        by_labeled_artist = pd.Index(artists).get_indexer(table.artist_id) >= 0
        sets[~labeled & by_labeled_artist] = "none"
        sets[~labeled & ~by_labeled_artist] = "student"
    report = write_split(out, table, sets, {"bench": kind})
    print(json.dumps({"mean_mad": report["mean_mad"], "tracks": len(table),
                      "labeled": report["whole"]["tracks"],
                      "shares": [report["sets"][s]["share"] for s in LABELED_SETS]}))


def measure(kind, folder, out, seed):
    """(seconds, peak MB, result) of one split in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--run", kind, "--fixture", str(folder),
                                "--out", str(out), "--seed", str(seed)],
                               stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{kind} split failed (status {status})")
    return seconds, usage.ru_maxrss / 1024, json.loads(stdout.strip().splitlines()[-1])


def jamendo_quality(folder, seeds=(0, 1, 2, 3, 4)):
    """MAD of per-tag positive rate on the real MTG-Jamendo mood/theme metadata: the official
    split-0 vs ours at its set sizes on its tracks and tags, and ours at 60/20/20 on the file."""
    from mtt.datasets import load_tracks
    from mtt.prepare.split import split_tracks
    from mtt.prepare.stratify import positive_rate_mad
    folder = Path(folder)
    full = load_tracks("mtg-jamendo", metadata=folder / "autotagging_moodtheme.tsv")
    official = [load_tracks("mtg-jamendo", tags=full.tags, metadata=folder /
                            f"split-0/autotagging_moodtheme-{s}.tsv")
                for s in ("train", "validation", "test")]
    used = np.concatenate([t.labels for t in official]).any(0)  # split-0 uses 56 of 59 tags
    ids = np.concatenate([t.track_id for t in official])
    names = np.concatenate([np.full(len(t), k) for k, t in enumerate(official)])
    same = full.subset(pd.Index(full.track_id).get_indexer(ids))
    same.labels, same.tags = same.labels[:, used], [t for t, u in zip(full.tags, used) if u]
    shares = np.bincount(names) / len(names)

    def mads(table, sets):
        _, per_set = positive_rate_mad(table.labels, [sets == s for s in LABELED_SETS])
        return [m for _, m in per_set]

    rows = {"official split-0": mads(same, np.array(LABELED_SETS)[names])}
    for label, iterations in (("ours, stratification only", 0), ("ours", 2000)):
        runs = [mads(same, split_tracks(same, shares, seed, search_iterations=iterations))
                for seed in seeds]
        rows[label + " (official sizes)"] = np.median(runs, 0).tolist()
    runs = [mads(full, split_tracks(full, [0.6, 0.2, 0.2], seed)) for seed in seeds]
    rows["ours at 60/20/20, all 59 tags"] = np.median(runs, 0).tolist()
    print(f"official shares: {np.round(shares, 4).tolist()}; medians over seeds {list(seeds)}")
    for label, values in rows.items():
        print(f"{label:45s} train {values[0]:.4f} valid {values[1]:.4f} test {values[2]:.4f} "
              f"mean {np.mean(values):.4f}")
    ours, base = np.mean(rows["ours (official sizes)"]), np.mean(rows["official split-0"])
    print(f"jamendo_mad={ours:.4f} official_mad={base:.4f} ratio={ours / base:.3f} "
          f"mad_60_20_20={np.mean(rows['ours at 60/20/20, all 59 tags']):.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--artists", type=int, default=44_000)
    parser.add_argument("--jamendo", metavar="DIR",
                        help="instead: split quality on MTG-Jamendo metadata in DIR vs its "
                        "official split (e.g. ../shared/datasets/mtg-jamendo)")
    parser.add_argument("--run", choices=["ours", "random"], help=argparse.SUPPRESS)
    parser.add_argument("--fixture", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_split(args.run, Path(args.fixture), Path(args.out), args.seed)
        return
    if args.jamendo:
        jamendo_quality(args.jamendo, seeds=(0, 1, 2) if args.quick else (0, 1, 2, 3, 4))
        return
    repeats = {"ours": 1, "random": 1} if args.quick else {"ours": 3, "random": 3}
    with tempfile.TemporaryDirectory(prefix="mtt-split-bench-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        tagged = make_fixture(tmp, args.tracks, args.artists)
        fixture_seconds = time.perf_counter() - start
        print(f"fixture: {args.tracks} tracks, {args.artists} artists, {tagged} with Last.fm "
              f"tags, {fixture_seconds:.1f} s", flush=True)
        results = {}
        for kind in ("ours", "random"):
            runs = []
            for r in range(repeats[kind]):
                runs.append(measure(kind, tmp, tmp / f"{kind}-{r}", seed=r))
                seconds, peak, info = runs[-1]
                print(f"{kind} run {r}: {seconds:.1f} s, peak {peak:.0f} MB, "
                      f"mean MAD {info['mean_mad']}, shares {info['shares']}", flush=True)
            results[kind] = {
                "seconds": statistics.median(r[0] for r in runs),
                "peak_mb": statistics.median(r[1] for r in runs),
                "mad": statistics.median(r[2]["mean_mad"] for r in runs),
                "tracks": runs[0][2]["tracks"]}
    ours, base = results["ours"], results["random"]
    print(f"tracks={ours['tracks']} seconds={ours['seconds']:.1f} peak_mb={ours['peak_mb']:.0f} "
          f"mad={ours['mad']:.6f} random_seconds={base['seconds']:.1f} "
          f"random_peak_mb={base['peak_mb']:.0f} random_mad={base['mad']:.6f} "
          f"time_ratio={ours['seconds'] / base['seconds']:.2f} "
          f"mad_ratio={ours['mad'] / base['mad']:.3f} fixture_seconds={fixture_seconds:.1f}")


if __name__ == "__main__":
    main()

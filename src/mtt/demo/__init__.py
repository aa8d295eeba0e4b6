"""`mtt demo-data`: the embedded demo dataset, synthesized with numpy, in the MSD's own layout.

    DIR/audio/<id[2]>/<id[3]>/<id[4]>/<track_id>.flac  22,050 Hz mono 16-bit FLAC (soundfile)
    DIR/track_metadata.db                              songs(...) as in the MSD
    DIR/lastfm_tags.db                                 tids(tid), tags(tag), tid_tag(tid, tag, val)
    DIR/tags.txt                                       the vocabulary (model output order)
    DIR/true_tags.tsv                                  true tags (track_id, artist_id, tags)
    DIR/demo.json                                      generation settings and counts

so `mtt split --format msd` runs the real MSD code path on it. One module per job:

    catalogue   who plays what: the vocabulary, genre styles, artists and their `Song`s
    labels      the Last.fm-like observation of the true tags (most artists untagged, noisy)
    synthesis   each song's audio, one layer per instrument, mixed and mastered
    msd         the writers of the MSD layout (paths and tables of `mtt.datasets.msd`)

The constants were set from the descriptions in those modules before any model was trained on
the data and are not tuned to any result; another seed draws a different dataset from the same
distribution, and a seed always gives the same files.
"""
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from mtt.checks import nonnegative_int, output_folder, positive_float, positive_int
from mtt.datasets import DEMO_SPLIT
from mtt.demo.catalogue import TAGS, Song, make_catalogue
from mtt.demo.labels import observe_all, observed_tags
from mtt.demo.msd import audio_path, write_audio, write_lastfm_tags, write_track_metadata
from mtt.demo.synthesis import SAMPLE_RATE, render_song

__all__ = ["SIZES", "TAGS", "Song", "make_catalogue", "observed_tags", "observe_all",
           "render_song", "generate", "generate_rest", "add_arguments", "run"]

SIZES = {"default": {"songs": 2000, "seconds": 20.0}, "small": {"songs": 240, "seconds": 12.0}}


def add_arguments(parser):
    parser.add_argument("--out", required=True, type=output_folder, help="output folder (replaced if it holds an "
                        "earlier demo dataset)")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="default: %(songs)d songs of %(seconds)g s; small: %(s)d of %(t)g s"
                        % {**SIZES["default"], "s": SIZES["small"]["songs"],
                           "t": SIZES["small"]["seconds"]})
    parser.add_argument("--songs", type=positive_int, help="number of songs (overrides --size)")
    parser.add_argument("--seconds", type=positive_float, help="song length in s (overrides --size)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                        help="processes rendering audio (default: the CPU count)")
    parser.add_argument("--part", choices=["all", "labeled"], default="all",
                        help="labeled: the tables and only the audio of the songs with a tag of "
                        "the vocabulary (all a teacher needs); --rest-of renders the others")
    parser.add_argument("--rest-of", type=Path, metavar="DIR",
                        help="render into --out the songs a `--part labeled` dataset in DIR left "
                        "out, with links to DIR's audio for the others: --out/audio is then the "
                        "whole collection (the settings are DIR's; --seed, --size, --songs and "
                        "--seconds are not given)")


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
    if args.rest_of is not None:
        if not (args.rest_of / "demo.json").is_file():
            print(f"mtt demo-data: error: {args.rest_of}: not a demo dataset (no demo.json)",
                  file=sys.stderr)
            return 2
        rendered = generate_rest(out, args.rest_of, workers=args.workers)
        print(f"mtt demo-data: {rendered} songs rendered into {out}, the rest linked to "
              f"{args.rest_of}", file=sys.stderr)
        return 0
    summary = generate(out, seed=args.seed, size=args.size, workers=args.workers,
                       n_songs=args.songs, seconds=args.seconds, part=args.part)
    print(f"mtt demo-data: {summary['songs']} songs by {summary['artists']} artists, "
          f"{summary['labeled_songs']} labeled, in {out}"
          + (" (audio of the labeled songs only)" if args.part == "labeled" else ""),
          file=sys.stderr)
    return 0


def generate(out, seed=0, size="default", workers=2, n_songs=None, seconds=None,
             part="all") -> dict:
    """Write the demo dataset to `out` (built in a temporary folder, renamed at the end);
    part "labeled": the audio of the songs with a vocabulary tag only (`generate_rest`)."""
    out = Path(out)
    settings = dict(SIZES[size])
    if n_songs is not None:
        settings["songs"] = int(n_songs)
    if seconds is not None:
        settings["seconds"] = float(seconds)
    artists, songs = make_catalogue(seed, settings["songs"])
    tag_rows = observed_tags(songs, artists, seed)
    labeled = labeled_songs(tag_rows)
    tmp = _fresh_partial(out)
    render(tmp, [s for s in songs if part == "all" or s.track_id in labeled],
           settings["seconds"], workers)
    # the files the workflow splits the demo from, as the dataset registry names them
    write_track_metadata(tmp / DEMO_SPLIT["track_metadata"], songs, artists, settings["seconds"],
                         seed)
    write_lastfm_tags(tmp / DEMO_SPLIT["lastfm_tags"], tag_rows)
    (tmp / DEMO_SPLIT["tag_list"]).write_text("".join(f"{t}\n" for t in TAGS), encoding="utf-8")
    summary = {"seed": seed, "size": size, "songs": len(songs), "artists": len(artists),
               "seconds": settings["seconds"], "sample_rate": SAMPLE_RATE, "part": part,
               "tagged_artists": sum(a["tagged"] for a in artists),
               "labeled_songs": len(labeled), "tags": TAGS}
    (tmp / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (tmp / "true_tags.tsv").write_text(
        "track_id\tartist_id\ttags\n" + "".join(
            f"{s.track_id}\t{artists[s.artist]['id']}\t{';'.join(s.true_tags())}\n"
            for s in songs), encoding="utf-8")
    _replace(tmp, out)
    return summary


def generate_rest(out, labeled_dir, workers=2) -> int:
    """Render into `out` the songs a `part="labeled"` dataset in `labeled_dir` left out, and link
    its labeled songs' files, so `out/audio` holds the whole collection; the songs rendered."""
    out, labeled_dir = Path(out), Path(labeled_dir)
    meta = json.loads((labeled_dir / "demo.json").read_text(encoding="utf-8"))
    artists, songs = make_catalogue(meta["seed"], meta["songs"])
    labeled = labeled_songs(observed_tags(songs, artists, meta["seed"]))
    tmp = _fresh_partial(out)
    rest = [s for s in songs if s.track_id not in labeled]
    render(tmp, rest, meta["seconds"], workers)
    for song in songs:
        if song.track_id in labeled:
            link = tmp / audio_path(song.track_id)
            link.parent.mkdir(parents=True, exist_ok=True)
            target = (labeled_dir / audio_path(song.track_id)).resolve()
            # relative, from where the link will lie once `out` is in place
            final = (out.resolve() / audio_path(song.track_id)).parent
            link.symlink_to(os.path.relpath(target, final))
    (tmp / "demo.json").write_text(json.dumps({**meta, "part": "rest"}, indent=1) + "\n",
                                   encoding="utf-8")
    _replace(tmp, out)
    return len(rest)


def labeled_songs(tag_rows) -> set:
    """The track IDs with a tag of the vocabulary: the songs a labeled split can hold."""
    return {track_id for track_id, tag, _ in tag_rows if tag in TAGS}


def render(folder, songs, seconds, workers):
    """Each song's audio file under `folder`, in `workers` processes."""
    jobs = [(str(folder), song, seconds) for song in songs]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(write_audio, jobs, chunksize=4):
                pass
    else:
        for job in jobs:
            write_audio(job)


def _fresh_partial(out: Path) -> Path:
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _replace(tmp: Path, out: Path):
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)

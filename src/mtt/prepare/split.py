"""`mtt split`: an artist-level stratified split (CALS) of any supported dataset, or the import
of a published split.

Labeled tracks (at least one vocabulary tag) are split by artist into train/valid/test (see
`mtt.prepare.stratify`). Unlabeled tracks by artists of the labeled sets go to `none` (all labeled sets by
default, or train only with `--exclude-artists train`); every other unlabeled track goes to
`student`. Output folder (`mtt.formats.split_folder`; docs/SPLITS.md):
  {train,valid,test,student,none}.tsv  columns track_id, artist_id, path, tags (';'-joined)
  tags.txt                             the vocabulary, model output order
  report.json                          sizes, per-tag positive rates, MAD from the whole
"""
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtt.checks import nonnegative_float, nonnegative_int, output_folder, positive_int
from mtt.datasets import (FORMATS, SPLIT_OPTIONS, DatasetError, format_options, load_official_split,
                          load_tracks, split_formats)
from mtt.datasets.table import TrackTable, check_npy_size, join_tags, read_npy_header
from mtt.formats.split_folder import LABELED_SETS, SETS, read_tag_list, write_split_folder
from mtt.prepare.stratify import positive_rate_mad, stratified_split
from mtt.datasets.vocabulary import MSD_TOP50

# The argparse type of a numeric option's JSON schema, by (type, minimum).
NUMBER_TYPES = {("integer", 0): nonnegative_int, ("integer", 1): positive_int,
                ("number", 0): nonnegative_float}


def add_arguments(parser):
    source = parser.add_argument_group("dataset")
    source.add_argument("--format", choices=split_formats(),
                        help="metadata format (required unless --published gives the split)")
    for option in (*format_options(split_formats()).values(), *SPLIT_OPTIONS):
        kind = option.schema.get("type")
        source.add_argument(option.flag, default=option.default, help=option.help,
                            choices=option.schema.get("enum"),
                            type=NUMBER_TYPES[kind, option.schema.get("minimum")]
                            if kind in ("integer", "number") else str)
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    parser.add_argument("--fractions", type=nonnegative_float, nargs=3, default=[0.7, 0.15, 0.15],
                        metavar=("TRAIN", "VALID", "TEST"),
                        help="shares of labeled tracks (default 0.7 0.15 0.15)")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--exclude-artists", choices=["all", "train"], default="all",
                        help="unlabeled tracks by artists of these labeled sets go to `none` "
                        "(default all: the student set shares no artist with any labeled set)")
    parser.add_argument("--search-iterations", type=nonnegative_int, default=2000,
                        help="local-search steps after iterative stratification (0: none)")
    parser.add_argument("--published",
                        help="import a published split from DIR/{train,valid,test,student}_ids.npy "
                        "(+ *_binaries.npy); metadata, when given, adds artists, paths and tags")


def run(args) -> int:
    try:
        table, set_of_track, settings = make_split(args)
        labels_known = not (args.published and not args.format)
        source = args.official_split or args.published or catalogue_file(args)
        try:
            check_usable(table, set_of_track, labels_known)
        except ValueError as error:  # name the catalogue the split was made from
            raise ValueError(f"{source}: {error}" if source else str(error)) from None
    except (DatasetError, ValueError, OSError) as error:
        print(f"mtt split: error: {error}", file=sys.stderr)
        return 2
    report = write_split(args.out, table, set_of_track, settings)
    sizes = ", ".join(f"{s} {report['sets'][s]['tracks']}" for s in SETS)
    print(f"mtt split: {sizes}; mean MAD {report['mean_mad']}", file=sys.stderr)
    return 0


def make_split(args):
    """(track table, set name per track, the report's settings) of the dataset `args` name: the
    dataset's official split, a published one, or ours."""
    tags = read_tag_list(args.tag_list) if args.tag_list else None
    if tags is not None and not tags:
        raise DatasetError(args.tag_list, "the tag list is empty")
    if args.min_positives and (args.published or args.official_split):
        raise ValueError("--min-positives is for our split, not --published/--official-split")
    options = {name: getattr(args, name) for name in format_options(split_formats())}
    if args.official_split:
        table, set_of_track = load_official_split(args.format, args.official_split, tags,
                                                  args.top_tags, **options)
        return table, set_of_track, {"format": args.format,
                                     "official_split": str(args.official_split)}
    table = load_tracks(args.format, tags, args.top_tags, **options) if args.format else None
    if args.published:
        vocab = table.tags if table is not None else (tags or list(MSD_TOP50))
        set_of_track, table = import_published(args.published, table, vocab, args.audio_ext)
        return table, set_of_track, {"published": str(args.published)}
    if table is None:
        raise ValueError("give --format (and its metadata) or --published")
    dropped = []
    if args.min_positives:
        table, dropped = drop_rare_tags(table, args.min_positives)
    set_of_track = split_tracks(table, args.fractions, args.seed, args.exclude_artists,
                                args.search_iterations)
    settings = {"format": args.format, "seed": args.seed,
                "fractions": [float(f) for f in args.fractions],
                "exclude_artists": args.exclude_artists,
                "search_iterations": args.search_iterations}
    if args.min_positives:
        settings.update(min_positives=args.min_positives, dropped_tags=dropped)
    return table, set_of_track, settings


def catalogue_file(args):
    """The first metadata file of its format that `args` give (None without a format)."""
    if not args.format:
        return None
    official = bool(args.official_split)
    return next((getattr(args, o.name) for o in FORMATS[args.format].reads(official)
                 if o.tracked and getattr(args, o.name)), None)


def check_usable(table: TrackTable, set_of_track, labels_known=True) -> None:
    """Refuse a split no model can be trained and evaluated on, naming what is missing: a
    labeled set without songs, or (where the labels are known: not a published split imported
    without metadata) no tag with a positive song in train. Tags of which train has no positive
    are named on stderr: the split is usable, but the model cannot learn them."""
    empty = [name for name in LABELED_SETS if not (set_of_track == name).any()]
    if empty:
        sizes = ", ".join(f"{name} {int((set_of_track == name).sum())}" for name in LABELED_SETS)
        raise ValueError(f"the split has no {' and no '.join(empty)} songs ({sizes}): the "
                         "catalogue has too few labeled artists for these fractions (every "
                         "artist's songs go to one set)")
    if not labels_known or not len(table.tags):
        return
    positives = table.labels[set_of_track == "train"].sum(0)
    missing = [tag for tag, n in zip(table.tags, positives) if n == 0]
    shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
    if len(missing) == len(table.tags):
        raise ValueError(f"no tag has a positive song in train ({len(table.tags)} tags): "
                         "nothing to learn; use a larger catalogue or other fractions")
    if missing:
        print(f"mtt split: warning: {len(missing)} of {len(table.tags)} tags have no positive "
              f"song in train, so no model learns them: {shown} (--min-positives, --top-tags or "
              "a --tag-list without them drops them)", file=sys.stderr)


def drop_rare_tags(table: TrackTable, min_positives: int):
    """(the table without the tags fewer than `min_positives` tracks have, those tags); says
    on stderr which it drops."""
    keep = table.labels.sum(0) >= min_positives
    dropped = [tag for tag, kept in zip(table.tags, keep) if not kept]
    if keep.sum() == 0:
        raise ValueError(f"--min-positives {min_positives}: no tag has that many tracks")
    if dropped:
        print(f"mtt split: dropped {len(dropped)} of {len(table.tags)} tags with fewer than "
              f"{min_positives} positive tracks: {', '.join(dropped)}", file=sys.stderr)
    kept_tags = [tag for tag, kept in zip(table.tags, keep) if kept]
    return TrackTable(table.track_id, table.artist_id, table.path, table.labels[:, keep],
                      kept_tags), dropped


def artist_keys(table: TrackTable) -> np.ndarray:
    """Grouping key per track: its artist, or the track itself when the artist is unknown."""
    keys = table.artist_id.astype(object).copy()
    unknown = keys == ""
    keys[unknown] = "\x00track:" + table.track_id[unknown].astype(object)
    return keys


def split_tracks(table: TrackTable, fractions, seed, exclude_artists="all",
                 search_iterations=2000) -> np.ndarray:
    """Set name of every track (an object array over SETS)."""
    labeled = table.labels.any(1)
    keys = artist_keys(table)
    artists, codes = np.unique(keys[labeled], return_inverse=True)
    counts, sizes = _artist_tag_counts(codes, table.labels[labeled], len(artists))
    artist_set = stratified_split(counts, sizes, fractions, seed,
                                  search_iterations=search_iterations)
    set_of_track = np.empty(len(table), dtype=object)
    set_of_track[labeled] = np.array(LABELED_SETS, dtype=object)[artist_set[codes]]
    excluded_sets = LABELED_SETS if exclude_artists == "all" else ("train",)
    excluded = artists[np.isin(artist_set, [LABELED_SETS.index(s) for s in excluded_sets])]
    unlabeled_excluded = ~labeled & (pd.Index(excluded).get_indexer(keys) >= 0)
    set_of_track[unlabeled_excluded] = "none"
    set_of_track[~labeled & ~unlabeled_excluded] = "student"
    return set_of_track


def _artist_tag_counts(codes, labels, n_artists):
    """(n_artists, n_tags) positive counts and (n_artists,) track counts."""
    if len(codes) == 0:
        return np.zeros((0, labels.shape[1]), dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    counts = np.add.reduceat(labels[order], starts, axis=0, dtype=np.int64)
    return counts, np.bincount(codes, minlength=n_artists)


class _IdArrayUnpickler(pickle.Unpickler):
    """Unpickles an object array of strings and nothing else: the only globals it resolves are
    the three numpy needs to rebuild an array, none of which runs code of the file's choosing."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it would load {module}.{name}")


def _load_binaries(path, expected):
    """A {set}_binaries.npy label matrix of shape `expected`, its header checked first."""
    try:
        with open(path, "rb") as f:
            shape, _, dtype = read_npy_header(path, f)
            if dtype.hasobject:
                raise DatasetError(path, "not a numeric numpy file (an object array)")
            check_npy_size(path, f, shape, dtype, expected=expected)
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except (OSError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(path, f"not a numeric numpy file ({error})") from None


def _load_ids(path):
    """A 1-D array of track IDs from `path`, never running code it holds: plain string arrays
    load with allow_pickle=False; object arrays (a published split may be one) go through an
    unpickler that builds numpy arrays of str/bytes only."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            check_npy_size(path, f, shape, dtype, ndim=1)
            if not dtype.hasobject:
                f.seek(0)
                ids = np.load(f, allow_pickle=False)
            else:
                try:
                    ids = _IdArrayUnpickler(f).load()
                except Exception as error:  # noqa: BLE001 - whatever it holds, one line
                    raise DatasetError(path, "an object array that is not plain track IDs "
                                       f"(refused: {error})") from None
    except OSError as error:
        raise DatasetError(path, f"not a numpy file ({error})") from None
    except ValueError as error:
        raise DatasetError(path, f"not a numpy file ({error})") from None
    if not isinstance(ids, np.ndarray) or ids.ndim != 1:
        shape = getattr(ids, "shape", type(ids).__name__)
        raise DatasetError(path, f"expected a 1-D array of track IDs, got shape {shape}")
    if ids.dtype.hasobject and not all(isinstance(i, (str, bytes)) for i in ids):
        raise DatasetError(path, "an object array holding values other than track-ID strings")
    return np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids], dtype=object)


def import_published(folder, table, vocab, audio_ext="mp3"):
    """(set name per track, track table) of a published split in `folder`.

    `folder` holds {train,valid,test}_ids.npy and optionally student_ids.npy and none_ids.npy,
    plus optional {set}_binaries.npy label matrices (n, len(vocab)) aligned with the IDs.
    With a metadata `table`, artists and paths come from it, labels from the binaries where
    present (else from the table), and catalogue tracks in no set go to `none`. Without one,
    artists are unknown and paths follow the MSD layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, "not a folder")
    ids, binaries = {}, {}
    for name in SETS:
        path = folder / f"{name}_ids.npy"
        if not path.exists():
            if name in LABELED_SETS:
                raise DatasetError(path, "file not found (a published split needs "
                                         "train, valid and test IDs)")
            ids[name] = np.array([], dtype=object)
            continue
        ids[name] = _load_ids(path)
        binary_path = folder / f"{name}_binaries.npy"
        if binary_path.exists():
            matrix = _load_binaries(binary_path, (len(ids[name]), len(vocab)))
            if matrix.shape != (len(ids[name]), len(vocab)):
                raise DatasetError(binary_path, f"shape {matrix.shape} does not match "
                                   f"{len(ids[name])} IDs x {len(vocab)} tags")
            binaries[name] = matrix > 0.5
    all_ids = np.concatenate([ids[s] for s in SETS])
    values, counts = np.unique(all_ids, return_counts=True)
    if (counts > 1).any():
        raise DatasetError(folder, f"{int((counts > 1).sum())} track IDs are in more than one "
                                   f"set (or repeated), e.g. {values[counts > 1][0]!r}")
    set_of_id = np.concatenate([np.full(len(ids[s]), s, dtype=object) for s in SETS])

    if table is None:
        from mtt.datasets.msd import msd_audio_path
        labels = np.zeros((len(all_ids), len(vocab)), dtype=bool)
        table = TrackTable(all_ids, np.full(len(all_ids), "", dtype=object),
                           np.array([msd_audio_path(t, audio_ext) if len(t) >= 5 else t
                                     for t in all_ids], dtype=object), labels, list(vocab))
        set_of_track = set_of_id
    else:
        rows = pd.Index(table.track_id).get_indexer(all_ids)
        if (rows < 0).any():
            raise DatasetError(folder, f"{int((rows < 0).sum())} published track IDs are not in "
                                       f"the metadata, e.g. {all_ids[rows < 0][0]!r}")
        set_of_track = np.full(len(table), "none", dtype=object)
        set_of_track[rows] = set_of_id
        table = table.subset(np.arange(len(table)))  # a copy: labels are overwritten below
    for name, matrix in binaries.items():
        table.labels[pd.Index(table.track_id).get_indexer(ids[name])] = matrix
    return set_of_track, table


def write_split(out, table: TrackTable, set_of_track, settings) -> dict:
    """Write the split folder (`mtt.formats.split_folder`); returns the report."""
    tag_strings = join_tags(table.labels, table.tags)
    by_track_id = np.argsort(table.track_id.astype(str), kind="stable")
    report = split_report(table, set_of_track, settings)
    sets = {}
    for name in SETS:
        members = by_track_id[set_of_track[by_track_id] == name]
        sets[name] = [table.track_id[members], table.artist_id[members], table.path[members],
                      tag_strings[members]]
    write_split_folder(out, sets, table.tags, report)
    return report


def split_report(table: TrackTable, set_of_track, settings) -> dict:
    keys = artist_keys(table)
    masks = [set_of_track == s for s in LABELED_SETS]
    whole, per_set = positive_rate_mad(table.labels, masks)
    labeled_total = int(sum(m.sum() for m in masks))
    artists = {s: set(keys[set_of_track == s]) for s in SETS}
    report = {**settings, "tags": list(table.tags), "sets": {}}
    for name, mask, (rates, mad) in zip(LABELED_SETS, masks, per_set):
        report["sets"][name] = {
            "tracks": int(mask.sum()), "artists": len(artists[name]),
            "share": _round(mask.sum() / labeled_total if labeled_total else 0.0),
            "mad": _round(mad),
            "positive_rate": {t: _round(r) for t, r in zip(table.tags, rates)},
        }
    for name in ("student", "none"):
        report["sets"][name] = {"tracks": int((set_of_track == name).sum()),
                                "artists": len(artists[name])}
    report["whole"] = {"tracks": labeled_total,
                       "artists": len(set().union(*(artists[s] for s in LABELED_SETS))),
                       "positive_rate": {t: _round(r) for t, r in zip(table.tags, whole)}}
    mads = [report["sets"][s]["mad"] for s in LABELED_SETS]
    report["mean_mad"] = _round(np.mean(mads)) if None not in mads else None
    known = {s: {a for a in artists[s] if not str(a).startswith("\x00")} for s in SETS}
    report["shared_artists"] = {f"{a}-{b}": len(known[a] & known[b])
                                for i, a in enumerate(SETS) for b in SETS[i + 1:]}
    return report


def _round(value):
    value = float(value)
    return None if np.isnan(value) else round(value, 6)

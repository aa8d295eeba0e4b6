"""`mtt evaluate`: song-level metrics of a checkpoint on a split, with bootstrap intervals.

Writes the evaluation folder (`mtt.formats.evaluation_folder`): `metrics.json` (macro ROC-AUC and PR-AUC
with 95% intervals over songs, per-tag values, the tags left out of the macro averages because
the split has no positive or no negative song for them, also named on stderr), `per_tag.tsv`, and
`predictions.h5` (track_id, probs, labels) for later analysis.
"""
import argparse
import sys
from pathlib import Path

from ..checks import keep_output, nonnegative_int, output_folder, refuse_non_finite
from ..checkpoint import load_checkpoint
from ..formats.evaluation_folder import write_evaluation
from ..formats.split_folder import read_split, read_tag_list
from ..formats.mel_store import MelStore
from ..metrics import tagging_report
from .device import resolve_device, select_precision, set_threads
from .songs import add_prediction_arguments, checkpoint_frames, predict_songs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--tracks", required=True, type=Path, help="split TSV to evaluate on")
    parser.add_argument("--tags", required=True, type=Path, help="tag list (model output order)")
    parser.add_argument("--mels", required=True, nargs="+", type=Path, help="mel shards")
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    parser.add_argument("--bootstrap", type=nonnegative_int, default=1000, help="bootstrap resamples (0: none)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed")
    add_prediction_arguments(parser)


def run(args) -> int:
    try:
        report = evaluate(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"mtt evaluate: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {report['n_songs']} songs, roc_auc={report['roc_auc']['macro']:.4f} "
          f"[{report['roc_auc'].get('ci_low', float('nan')):.4f}, "
          f"{report['roc_auc'].get('ci_high', float('nan')):.4f}] "
          f"pr_auc={report['pr_auc']['macro']:.4f} "
          f"[{report['pr_auc'].get('ci_low', float('nan')):.4f}, "
          f"{report['pr_auc'].get('ci_high', float('nan')):.4f}]", file=sys.stderr)
    excluded = report["excluded_tags"]
    if excluded:
        unseen = [tag for tag in excluded if report["per_tag"][tag]["positives"] == 0]
        everywhere = [tag for tag in excluded if tag not in unseen]
        reasons = "; ".join(f"no {kind} song for {', '.join(tags)}" for kind, tags in
                            (("positive", unseen), ("negative", everywhere)) if tags)
        print(f"mtt evaluate: {len(excluded)} of {report['n_tags']} tags left out of the macro "
              f"averages, {args.tracks} has {reasons}", file=sys.stderr)
    return 0


def evaluate(args) -> dict:
    if args.chunks is not None and args.chunks < 1:
        raise ValueError("--chunks must be at least 1")
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be 0 or more")
    tags = read_tag_list(args.tags)
    set_threads(args.threads)
    device = resolve_device(args.device)
    model, info = load_checkpoint(args.checkpoint)
    precision = select_precision(args.precision, device, model=model)
    if info["tags"] != tags:
        raise ValueError(f"{args.checkpoint}: its tags differ from {args.tags} "
                         f"({len(info['tags'])} vs {len(tags)} tags, or another order)")
    model.to(device)
    store = MelStore(args.mels)
    track_ids, labels = store.keep_stored(*read_split(args.tracks, tags), "evaluation")
    if not track_ids:
        raise ValueError(f"{args.tracks}: no song has a stored mel in {list(map(str, args.mels))}")
    probs = predict_songs(model, store, track_ids, device, chunks=args.chunks,
                          whole_song=args.whole_song, frames=checkpoint_frames(model, info),
                          batch_size=args.batch_size, progress=True, precision=precision)
    refuse_non_finite(probs, track_ids, store, args.checkpoint)
    report = tagging_report(labels, probs, tags, n_bootstrap=args.bootstrap, seed=args.seed)
    report["n_tags"] = len(tags)  # n_tags_evaluated of them, without excluded_tags
    report["checkpoint"] = str(args.checkpoint)
    report["tracks"] = str(args.tracks)
    report["prediction"] = ("whole song" if args.whole_song
                            else "mean of the chunks covering the song" if args.chunks is None
                            else f"mean of {args.chunks} chunks")
    report["precision"] = precision
    kept = keep_output(lambda out: write_evaluation(Path(out), report, track_ids, probs, labels,
                                                    tags), args.out, "evaluate", folder=True)
    if kept is not None:  # the work is done: keep it where it can be found
        raise ValueError(f"cannot write {args.out}: {kept[1]}; the evaluation is in {kept[0]}")
    return report

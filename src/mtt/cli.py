"""The `mtt` command: one subcommand per pipeline stage.

Each stage lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their subcommand runs, so `mtt --help` stays fast.
"""
import argparse
import importlib
import sys

from mtt.malloc import keep_freed_memory

COMMANDS = {
    "tag": ("mtt.inference.tag", "predict tags for audio files with a checkpoint"),
    "export": ("mtt.inference.export", "export a checkpoint with its log-mel front end to ONNX"),
    "demo-data": ("mtt.demo", "generate the embedded demo dataset (MSD layout)"),
    "split": ("mtt.prepare.split", "build an artist-level stratified split (CALS)"),
    "preprocess": ("mtt.prepare.preprocess", "decode audio into a log-mel HDF5 shard"),
    "train": ("mtt.training.command", "train a teacher or a noisy student"),
    "evaluate": ("mtt.inference.evaluate", "song-level metrics of a checkpoint on a split"),
    "pseudo-label": ("mtt.inference.pseudo_label", "teacher soft labels for one mel shard"),
    "summarize": ("mtt.report.summarize", "gather evaluation results into one table"),
    "plots": ("mtt.report.plots", "figures for the workflow report"),
}


class OneLineParser(argparse.ArgumentParser):
    """An unusable argument is one line, `mtt CMD: error: argument --X: reason` (exit 2), with
    a pointer to --help instead of the multi-line usage (subcommands inherit the class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def main(argv=None) -> int:
    from mtt import __version__
    parser = OneLineParser(prog="mtt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mtt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    keep_freed_memory()  # large tensors reuse freed heap instead of fresh page-faulted mmaps
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

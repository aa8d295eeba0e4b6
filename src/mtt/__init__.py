"""Semi-supervised music auto-tagging with the Music Tagging Transformer."""

__version__ = "0.1.0"


def __getattr__(name):  # `mtt.Tagger` without importing torch for `mtt --help`
    if name == "Tagger":
        from .inference.tagger import Tagger
        return Tagger
    raise AttributeError(f"module 'mtt' has no attribute {name!r}")

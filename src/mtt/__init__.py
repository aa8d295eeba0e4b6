"""Semi-supervised music auto-tagging with the Music Tagging Transformer."""

__version__ = "0.1.0"

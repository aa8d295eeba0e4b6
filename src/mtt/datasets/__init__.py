"""Dataset formats: the registry of the metadata layouts `mtt split` reads and the workflow's
`dataset:` section names.

Each format declares its options (config keys under `dataset:` and `mtt split` flags: a JSON
schema of the value, a help line, whether it is a file the workflow tracks as an input of the
split), the options its loader needs, its loader and, where it has one, the reader of its
official split. Loaders and readers are "module:function" names in the adapter modules (numpy,
pandas), imported only when a split is made: this module needs the standard library alone, so
the workflow imports it at plan time. Adding a format: docs/EXTENDING.md.
"""
from dataclasses import dataclass, field, replace
from importlib import import_module


class DatasetError(Exception):
    """Metadata that cannot be used; `str()` names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


PATH = {"type": "string", "minLength": 1}
POSITIVE_INT = {"type": "integer", "minimum": 1}


@dataclass(frozen=True)
class Option:
    """One setting of a dataset: `dataset: {<name>: ...}` in the workflow's config and
    `mtt split --<name with dashes>`."""
    name: str
    help: str
    schema: dict = field(default_factory=lambda: PATH)
    tracked: bool = False  # a file or folder `mtt split` reads: a new one reruns the split
    default: object = None  # of the `mtt split` flag (the config leaves it out when not given)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class OfficialSplit:
    """A dataset's own split: `reader(folder, **options, tags=, top_tags=)` -> (TrackTable, set
    name per track), given of the format's options those in `reads` (it needs them all)."""
    reader: str
    folder: str  # what the folder holds, for the help of --official-split
    reads: tuple = ()


@dataclass(frozen=True)
class DatasetFormat:
    """A metadata layout: `loader(**options, tags=, top_tags=)` -> TrackTable, given the
    options the call names and always the `required` ones. A format without a loader (the demo)
    is made by the workflow and split as another format."""
    name: str
    options: tuple = ()
    required: tuple = ()
    loader: str | None = None
    official_split: OfficialSplit | None = None

    def reads(self, official: bool) -> tuple:
        """The options `mtt split` passes on: to the official-split reader, or to the loader."""
        if official:
            return tuple(o for o in self.options if o.name in self.official_split.reads)
        return self.options

    def needs(self, official: bool) -> tuple:
        return self.official_split.reads if official else self.required


def _function(name: str):
    module, function = name.split(":")
    return getattr(import_module(module), function)


def _metadata(help):
    return Option("metadata", help, tracked=True)


DEMO_OPTIONS = (
    Option("demo_size", "small | default (demo_songs, demo_seconds override it)",
           {"enum": ["small", "default"]}),
    Option("demo_seed", "seed of the synthetic catalogue", {"type": "integer", "minimum": 0}),
    Option("demo_songs", "songs in the catalogue (overrides demo_size)", POSITIVE_INT),
    Option("demo_seconds", "seconds of audio per song (overrides demo_size)",
           {"type": "number", "minimum": 1}),
)

FORMATS = {f.name: f for f in (
    DatasetFormat("demo", DEMO_OPTIONS),
    DatasetFormat("msd", (
        Option("track_metadata", "MSD track_metadata.db", tracked=True),
        Option("lastfm_tags", "MSD lastfm_tags.db", tracked=True),
        Option("min_tag_weight", "ignore Last.fm tags weighted below W (0-100)",
               {"type": "number", "minimum": 0}),
        Option("audio_ext", "audio file extension (also of a --published split's paths)",
               {"type": "string", "pattern": "^[A-Za-z0-9]+$"}, default="mp3"),
    ), ("track_metadata", "lastfm_tags"), "mtt.datasets.msd:load_msd"),
    DatasetFormat("mtg-jamendo", (_metadata("autotagging*.tsv"),), ("metadata",),
                  "mtt.datasets.mtg_jamendo:load_mtg_jamendo",
                  OfficialSplit("mtt.datasets.mtg_jamendo:load_official_split",
                                "split-N/autotagging*-{train,validation,test}.tsv")),
    DatasetFormat("mtat", (_metadata("annotations_final.csv"),), ("metadata",),
                  "mtt.datasets.mtat:load_mtat",
                  OfficialSplit("mtt.datasets.mtat:load_official_split",
                                "{train,valid,test}.npy (sota-music-tagging-models split/mtat/, "
                                "with metadata annotations_final.csv)", ("metadata",))),
    DatasetFormat("tsv", (_metadata("the catalogue: track_id, artist_id, path, tags"),),
                  ("metadata",), "mtt.datasets.tsv:load_tsv"),
)}

# The demo's folder (`mtt demo-data`) holds the MSD layout: it is split as these options.
DEMO_SPLIT = {"format": "msd", "audio_ext": "flac", "track_metadata": "track_metadata.db",
              "lastfm_tags": "lastfm_tags.db", "tag_list": "tags.txt"}

# Options of every format (`dataset:` keys and `mtt split` flags).
SPLIT_OPTIONS = (
    Option("tag_list", "vocabulary file, one tag per line (model output order); default: the "
           "MSD top 50 for msd, every tag for the others", tracked=True),
    Option("top_tags", "keep only the N most frequent tags", POSITIVE_INT),
    Option("min_positives", "before splitting, drop the tags fewer than N tracks have (a tag "
           "needs about N x the test share of them to have one in the test set); tracks left "
           "with no tag become unlabeled", POSITIVE_INT),
    Option("official_split", "use the dataset's official split in this folder instead of "
           "splitting: " + "; ".join(f"{f.name} {f.official_split.folder}"
                                     for f in FORMATS.values() if f.official_split),
           tracked=True),
)
AUDIO_ROOT = Option("audio_root", "the folder the tracks' paths are relative to (not for demo)")


def split_formats() -> list:
    """The formats `mtt split --format` reads (every one with a loader)."""
    return [name for name, f in FORMATS.items() if f.loader]


def format_options(formats) -> dict:
    """The options of `formats` (names), one per name, its help prefixed by the format: formats
    that share one (metadata) declare the same value, and its help gives each one's meaning."""
    declared = {}
    for name in formats:
        for option in FORMATS[name].options:
            declared.setdefault(option.name, []).append((name, option))
    merged = {}
    for name, pairs in declared.items():
        first = pairs[0][1]
        if any((o.schema, o.tracked) != (first.schema, first.tracked) for _, o in pairs):
            raise ValueError(f"dataset option {name}: formats "
                             f"{', '.join(f for f, _ in pairs)} declare different values")
        merged[name] = replace(first, help="; ".join(f"{f}: {o.help}" for f, o in pairs))
    return merged


def load_tracks(format: str, tags=None, top_tags=None, **options):
    """Read one dataset's metadata into a `TrackTable` (see each adapter for the format);
    `options`: the format's own (None: not given)."""
    dataset = FORMATS[format]
    own = {o.name for o in dataset.options}
    given = {k: v for k, v in options.items() if v is not None and k in own}
    check_needs(dataset, given, official=False)
    return _function(dataset.loader)(**given, tags=tags, top_tags=top_tags)


def load_official_split(format: str, folder, tags=None, top_tags=None, **options):
    """(TrackTable, set name per track) of the dataset's own split in `folder`."""
    dataset = FORMATS.get(format)
    if dataset is None or dataset.official_split is None:
        raise ValueError(f"--official-split is for --format {' or '.join(official_formats())}, "
                         f"not {format}")
    given = {k: v for k, v in options.items()
             if v is not None and k in dataset.official_split.reads}
    check_needs(dataset, given, official=True)
    return _function(dataset.official_split.reader)(folder, **given, tags=tags,
                                                     top_tags=top_tags)


def official_formats() -> list:
    return [name for name, f in FORMATS.items() if f.official_split]


def check_needs(dataset: DatasetFormat, given, official: bool) -> None:
    missing = [name for name in dataset.needs(official) if name not in given]
    if missing:
        flags = " and ".join("--" + name.replace("_", "-") for name in missing)
        with_split = " --official-split" if official else ""
        raise ValueError(f"--format {dataset.name}{with_split} needs {flags}")


def config_problem(dataset: dict):
    """(key, reason) of what the schema cannot say about a `dataset:` section; None if fine."""
    if dataset["format"] == "demo" and "audio_ext" in dataset:
        return ("audio_ext", f"the demo writes its own audio ({DEMO_SPLIT['audio_ext']}); "
                             "audio_ext is for format msd")
    if "official_split" not in dataset:
        return None
    if not FORMATS[dataset["format"]].official_split:
        return ("official_split", f"it is for format {' or '.join(official_formats())}, "
                                  f"not {dataset['format']}")
    if "min_positives" in dataset:
        return "min_positives", "it is for our split, not an official_split"
    return None


def config_schema() -> dict:
    """The JSON schema of the workflow's `dataset:` section: every format's options (a key
    unknown to all of them is an error), and the ones the format in use needs."""
    options = [AUDIO_ROOT, *SPLIT_OPTIONS, *format_options(FORMATS).values()]
    properties = {"format": {"enum": list(FORMATS)}}
    for option in options:
        properties[option.name] = {**option.schema, "description": option.help}
    rules = []
    for name, dataset in FORMATS.items():
        if not dataset.loader:
            continue
        ours = {"properties": {"format": {"const": name}}, "not": {"required": ["official_split"]}}
        rules.append({"if": ours, "then": {"required": ["audio_root", *dataset.required]}})
        if dataset.official_split:
            theirs = {"properties": {"format": {"const": name}}, "required": ["official_split"]}
            rules.append({"if": theirs, "then": {
                "required": ["audio_root", *dataset.official_split.reads]}})
    return {"type": "object", "additionalProperties": False, "required": ["format"],
            "properties": properties, "allOf": rules}

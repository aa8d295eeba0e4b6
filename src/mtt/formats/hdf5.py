"""Checks every reader of our HDF5 files (mel shards, pseudo-label shards, predictions) makes
before it reads a dataset: the data must be stored in the file itself, and must be as large
on disk as it claims to be.

- **In the file**: a plain contiguous or chunked dataset. Refused: an external link (the name
  points into another file), a virtual dataset (its data are mapped from other files), external
  raw storage (its bytes live in another file, e.g. /etc/passwd), and compact or other layouts
  our writers never make. HDF5 follows each of these silently, so a shard could make a reader
  read any file the user can read.
- **No filters**: our writers store datasets uncompressed; a compressed or otherwise filtered
  dataset is refused (a few KB of gzip can declare gigabytes).
- **As large as it claims**: a dataset of fixed-size elements must have at least
  `size x itemsize` bytes of storage (a chunked dataset whose chunks were never written stores
  nothing, whatever shape it declares), a variable-length one at least its 16-byte references;
  and no dataset may declare more elements than `max_elements`. So a small file cannot make a
  reader allocate much more than its own size.

`DatasetRefused` is a ValueError whose message names the file and the dataset.
"""
import h5py
import numpy as np

VLEN_REFERENCE_BYTES = 16  # a variable-length element's in-dataset reference (global heap ID)
_LAYOUT_NAMES = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous",
                 h5py.h5d.CHUNKED: "chunked", getattr(h5py.h5d, "VIRTUAL", 3): "virtual"}


class DatasetRefused(ValueError):
    """A dataset a reader will not read, with one line naming the file and the dataset."""


def checked_dataset(f: h5py.File, name: str, path, max_elements: int | None = None):
    """`f[name]` after the checks above, or None when there is no such name; raises
    `DatasetRefused` naming `path` and `name`."""
    link = f.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise DatasetRefused(f"{path}: {name!r} is an external link to {link.filename}:"
                             f"{link.path}; only data stored in the file itself is read")
    if isinstance(link, h5py.SoftLink):
        raise DatasetRefused(f"{path}: {name!r} is a soft link to {link.path}; our files hold "
                             "plain datasets")
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise DatasetRefused(f"{path}: {name!r} is not a dataset")
    refuse_indirect_storage(obj, path, name)
    if max_elements is not None and obj.size > max_elements:
        raise DatasetRefused(f"{path}: {name!r} declares {obj.size:,} elements, more than the "
                             f"{max_elements:,} this reader accepts")
    refuse_missing_storage(obj, path, name)
    return obj


def refuse_indirect_storage(dataset: h5py.Dataset, path, name) -> None:
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if dataset.is_virtual or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        kind = "virtual" if dataset.is_virtual else _LAYOUT_NAMES.get(layout, f"layout {layout}")
        raise DatasetRefused(f"{path}: {name!r} is a {kind} dataset; only plain contiguous or "
                             "chunked datasets stored in the file itself are read")
    if plist.get_external_count() > 0:
        target = plist.get_external(0)[0]
        target = target.decode(errors="replace") if isinstance(target, bytes) else target
        raise DatasetRefused(f"{path}: {name!r} keeps its data in an external file "
                             f"({target}); only data stored in the file itself is read")
    if plist.get_nfilters() > 0:
        filters = ", ".join(str(plist.get_filter(i)[3].decode(errors="replace") or
                                plist.get_filter(i)[0]) for i in range(plist.get_nfilters()))
        raise DatasetRefused(f"{path}: {name!r} is filtered ({filters}); our files store "
                             "datasets uncompressed")


def refuse_missing_storage(dataset: h5py.Dataset, path, name) -> None:
    """A dataset must store at least the bytes its shape and type declare."""
    stored = dataset.id.get_storage_size()
    vlen = h5py.check_vlen_dtype(dataset.dtype) is not None or \
        h5py.check_string_dtype(dataset.dtype) is not None and \
        h5py.check_string_dtype(dataset.dtype).length is None
    itemsize = VLEN_REFERENCE_BYTES if vlen else np.dtype(dataset.dtype).itemsize
    declared = int(dataset.size) * itemsize
    if stored < declared:
        raise DatasetRefused(f"{path}: {name!r} declares {tuple(dataset.shape)} "
                             f"({declared:,} bytes) but stores {stored:,} bytes")

"""HDF5 files' lifetime, and what every writer shares (docs/architecture.md, "files").

A file is written under a temporary name beside its output (temp_path) and renamed
when complete (AtomicPath; AtomicFile, its HDF5 form), so a killed run never leaves a
file at the output name; temporary files of killed runs are removed (remove_stale_partials)
by check_output, the one rule every writer follows before any work. Also the root
attributes every result file carries (provenance) and the HDF5 chunk shape of a streamed
dataset (chunk_shape). The grid result's layout is in grid_file.py, Monte Carlo's in mc_io.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .validation import ConfigError

_TARGET_CHUNK_ELEMS = 1 << 16


def chunk_shape(shape: tuple[int, ...], target: int = _TARGET_CHUNK_ELEMS) -> tuple[int, ...]:
    """HDF5 chunk: whole trailing dimensions, then a part of the next, about `target` elements."""
    out = [1] * len(shape)
    size = 1
    for k in range(len(shape) - 1, -1, -1):
        if size * shape[k] <= target:
            out[k] = shape[k]
            size *= shape[k]
        else:
            out[k] = max(1, target // size)
            break
    return tuple(out)


def provenance(pf, scenario_name: str, config: str, sha: str, backend: str, device: str, dtype,
               **extra) -> dict:
    """The root attributes every result file carries (MODEL.md, "Result file"), plus extra."""
    import datetime as _dt

    from .version import __version__

    return {
        "model_version": pf.model_version, "stresstest_version": __version__, "config": config,
        "config_sha256": sha, "backend": backend, "device": device, "dtype": np.dtype(dtype).name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "portfolio": pf.name, "scenario": scenario_name, "currency": pf.currency,
        "horizon_months": pf.horizon_months, "discount_rate": pf.discount_rate, **extra,
    }


def temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.partial"


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the temporary files of runs writing `path` whose process no longer exists
    (a run killed with SIGKILL cannot clean up after itself)."""
    removed = []
    for p in Path(path).parent.glob(f".{Path(path).name}.*.partial"):
        try:
            pid = int(p.name[len(Path(path).name) + 2:-len(".partial")])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: another run is writing it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def check_output(path: Path, overwrite: bool = True) -> None:
    """Refuse, before any work, an output that cannot or may not be written: the one
    rule for every writer (run, the API, merge, breakeven's curve).

    The folder must exist and take a new file (a probe file is made and removed: this
    catches read-only file systems, which permission bits do not show to root). An
    existing file is kept unless overwrite (callers pass it explicitly: the default,
    True, is kept for callers written before the rule). Temporary files of killed runs
    (whose process is gone) next to the output are removed.
    """
    import tempfile

    if path.is_dir():
        raise ConfigError([f"{path}: the output is a directory"])
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError([f"{path}: the output folder {parent} does not exist"])
    if path.exists() and not overwrite:
        raise ConfigError([f"{path}: exists; give --overwrite to replace it"])
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".stresstest-probe-"):
            pass
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write in {parent} ({exc.strerror or exc})"]) from None
    remove_stale_partials(path)


class AtomicPath:
    """A file written under a temporary name beside `path` (temp_path): commit() renames it
    into place, abort() removes it; as a context manager it aborts when the block raises
    (anything, KeyboardInterrupt included). The one temporary-name-and-rename of the
    project: every writer (HDF5 results, shards, the statement's CSV and Excel) goes
    through it, so a file at the output name is always whole."""

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = temp_path(self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def close(self) -> None:
        """Finish writing self.tmp (subclasses: flush and close their file)."""

    def commit(self) -> Path:
        self.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


class AtomicFile(AtomicPath):
    """An HDF5 file, self.f, written under a temporary name."""

    def __init__(self, path):
        import h5py

        super().__init__(path)
        self.f = h5py.File(self.tmp, "w")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.f.id.valid:  # an HDF5 file closed already (abort after a failed commit)
            self.flush()
            self.f.close()

    def abort(self) -> None:
        try:
            self.f.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)

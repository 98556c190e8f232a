"""Fitted draws reused across processes (like brms's ``file=`` with refit on change).

:func:`bayes_koa.inference.sampling.sample_spec` looks here before it samples: an entry is keyed by
:func:`fit_key`, a sha256 of everything that determines the draws it returns:

- the compiled model's key (kind, structure, prior families; data shapes and coordinate labels;
  sampler), the resolved priors (text), the values of every data container (observations, prior
  parameters; dtype, shape and bytes);
- the seed and the sampler settings (draws, tune, chains, target_accept, the adaptive refit, the
  extra groups and the number of prior draws);
- the versions of bayes_koa, Python, NumPy, PyMC, PyTensor, nutpie, numba and llvmlite, the
  ``PYTENSOR_FLAGS`` environment variable and PyTensor's config files (``PYTENSORRC``), and a sha256 of
  the source files that build and sample the models (``kinds/``, ``spec/``, ``inference/sampling.py``,
  ``inference/compile_cache.py``), so an edited model is refitted even when the package version did not
  change.

The key is computed without importing PyMC: a run whose fits are all served from here imports
neither PyMC nor nutpie. Entries are written with :func:`bayes_koa.inference.store.save_arrays`
(temporary file, fsync, ``os.replace``: atomic; sha256 of the bytes and of the draws) only after the
sampler returned every draw (an interrupted or failed fit raises before that and never lands here). A
fit with sampling problems is stored as it is: its sample stats (divergences, tree depth) travel with
it and the diagnostics report them again. An entry that cannot be read or fails a checksum is refused
(``STATS["rejected"]``), deleted and refitted.

Where: ``$BAYES_KOA_CACHE/fits`` (else ``$XDG_CACHE_HOME/bayes_koa/fits``, else
``~/.cache/bayes_koa/fits``), beside the compile cache. Off: ``BAYES_KOA_CACHE=off`` (both caches),
``BAYES_KOA_FIT_CACHE=off`` (this one only), ``fit(..., cache=False)``, or :func:`mode` in a ``with``
block (the CLI's ``--refit`` uses ``mode("refit")``: sample again and replace the entries).

A hit returns the stored DataTree with ``attrs[RECORD_ATTR]`` (JSON): ``reused`` True, the entry's
``path``, when it was ``fitted`` and its ``key``; a fresh fit carries the same record with ``reused``
False.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["fit_key", "lookup", "store", "cache_dir", "results_dir", "clear", "mode", "current_mode", "STATS", "RECORD_ATTR",
           "FORMAT"]

log = logging.getLogger(__name__)

FORMAT = 1  # bump when what sample_spec returns changes in a way the key does not see
RECORD_ATTR = "bayes_koa_fit_cache"  # DataTree attr: JSON record (reused, path, fitted, key)
_SUFFIX = ".bka"
_OFF = ("off", "0", "none", "false", "no")

# counters for tests and benchmarks: hits, misses, stored, rejected, store_failed
STATS: dict[str, int] = {}

_MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar("bayes_koa_fit_cache_mode", default=None)


def _count(what: str) -> None:
    STATS[what] = STATS.get(what, 0) + 1


def cache_dir() -> Path | None:
    """Folder of the fit cache, or None when it is switched off by the environment."""
    from .compile_cache import cache_root

    if os.environ.get("BAYES_KOA_FIT_CACHE", "").strip().lower() in _OFF:
        return None
    root = cache_root()
    return None if root is None else root / "fits"


def results_dir() -> Path | None:
    """Folder of verified result files (``MetaAnalysis.save`` links an identical one instead of writing
    it again: :func:`bayes_koa.inference.store.save_datatree`'s ``reuse``); None when the cache is off."""
    folder = cache_dir()
    return None if folder is None or current_mode() == "off" else folder.parent / "results"


@contextlib.contextmanager
def mode(value: str | bool) -> Iterator[None]:
    """Within the block, fits use the cache as ``value`` says: "use" (True; read and write), "refit"
    (sample again, replace the entry) or "off" (False; neither read nor write)."""
    v = {True: "use", False: "off"}.get(value, value) if isinstance(value, bool) else str(value)
    if v not in ("use", "refit", "off"):
        raise ValueError(f"fit-cache mode must be 'use', 'refit' or 'off', got {value!r}")
    token = _MODE.set(v)
    try:
        yield
    finally:
        _MODE.reset(token)


def current_mode(cache: bool | str | None = None) -> str:
    """The mode a fit runs in: "off" for ``cache`` False/"off", "refit" for "refit", else (None, True,
    "use") the enclosing :func:`mode` block's or "use"; always "off" when :func:`cache_dir` is None."""
    if cache is not None and not isinstance(cache, bool) and str(cache) not in ("use", "refit", "off"):
        raise ValueError(f"cache must be True, False, 'use', 'refit' or 'off', got {cache!r}")
    if cache is False or cache == "off":
        m = "off"
    elif cache == "refit":
        m = "refit"
    else:
        m = _MODE.get() or "use"
    return "off" if cache_dir() is None else m


def clear() -> int:
    """Delete every entry of the fit cache and the kept result files (:func:`results_dir`); returns how
    many fit entries were deleted. Entries are never pruned otherwise (each is a few MB at most)."""
    folder = cache_dir()
    n = 0
    if folder is not None and folder.is_dir():
        for f in folder.glob(f"*{_SUFFIX}"):
            f.unlink(missing_ok=True)
            n += 1
        results = folder.parent / "results"
        for f in [*results.glob("*.nc"), *results.glob("*.sha256")] if results.is_dir() else []:
            f.unlink(missing_ok=True)
    return n


# -- the key -----------------------------------------------------------------------------------

_CODE_HASH: str | None = None


def _code_hash() -> str:
    """sha256 of the source files that build and sample models (kinds/, spec/, inference/sampling.py,
    inference/compile_cache.py): an edited model is refitted even under an unchanged version."""
    global _CODE_HASH
    if _CODE_HASH is None:
        root = Path(__file__).resolve().parent.parent
        files = sorted([*(root / "kinds").glob("*.py"), *(root / "spec").glob("*.py"),
                        root / "inference" / "sampling.py", root / "inference" / "compile_cache.py"])
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
        _CODE_HASH = h.hexdigest()
    return _CODE_HASH


def _versions() -> tuple:
    import importlib.metadata as md

    out: list[tuple[str, str]] = [("python", platform.python_version()), ("machine", platform.machine())]
    for pkg in ("bayes_koa", "numpy", "pymc", "pytensor", "nutpie", "numba", "llvmlite"):
        try:
            out.append((pkg, md.version(pkg)))
        except md.PackageNotFoundError:
            out.append((pkg, "not installed"))
    out.append(("PYTENSOR_FLAGS", os.environ.get("PYTENSOR_FLAGS", "")))
    # PyTensor's config files (what PyTensor reads besides PYTENSOR_FLAGS; e.g. numba fastmath changes draws)
    for name in os.environ.get("PYTENSORRC", "~/.pytensorrc" + os.pathsep + "~/.pytensorrc.txt").split(os.pathsep):
        f = Path(name).expanduser()
        try:
            out.append((f"pytensorrc {f}", hashlib.sha256(f.read_bytes()).hexdigest()))
        except OSError:
            pass
    return tuple(out)


def _array_bytes(name: str, value: Any) -> bytes:
    a = np.asarray(value)
    if a.dtype.kind == "O":
        return f"{name}|object|{a.shape}|{a.tolist()!r}".encode()
    a = np.array(a, order="C", copy=None)
    return f"{name}|{a.dtype.str}|{a.shape}|".encode() + a.tobytes()


def fit_key(spec, design, values: dict, *, seed: int, draws: int, tune: int, chains: int, sampler: str,
            target_accept: float, adapt: bool, groups: tuple, prior_draws: int) -> str:
    """The sha256 (hex) that names the entry of one call of ``sample_spec`` (see the module text)."""
    h = hashlib.sha256(f"bayes_koa fit cache v{FORMAT}\n".encode())
    parts = {
        "structure": repr(spec.structure_key()),
        "priors": repr([(p, str(pr)) for p, pr in spec.priors]),
        "shape": repr(design.shape_key()),
        "coords": repr([(k, [str(x) for x in v]) for k, v in design.coords.items()]),
        "unused": repr(sorted(getattr(design, "unused_parameters", ()) or ())),
        "sampler": str(sampler),
        "settings": repr((int(seed), int(draws), int(tune), int(chains), float(target_accept), bool(adapt),
                          tuple(groups), int(prior_draws) if "prior" in groups else 0)),
        "versions": repr(_versions()),
        "code": _code_hash(),
    }
    for k, v in parts.items():
        h.update(f"{k}={v}\n".encode())
    for name in sorted(values):
        h.update(_array_bytes(name, values[name]))
        h.update(b"\n")
    return h.hexdigest()


def _path(key: str) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / f"{key[:40]}{_SUFFIX}"


# -- lookup and store --------------------------------------------------------------------------


def lookup(key: str):
    """The stored DataTree of ``key`` with its record saying it was reused, or None (a miss)."""
    from .store import CHECKSUM_ATTR, FORMAT_ATTR, StoreError, load_arrays

    path = _path(key)
    if path is None or not path.exists():
        _count("misses")
        return None
    try:
        dt = load_arrays(path)
        if dt.attrs.get("bayes_koa_fit_key") != key:
            raise StoreError(path, "entry was written for another key")
    except Exception as e:  # noqa: BLE001 - an unreadable or changed entry is refitted, never used
        _count("rejected")
        log.warning("fit cache: refusing entry %s (%s); refitting", path.name, e)
        path.unlink(missing_ok=True)
        return None
    _count("hits")
    fitted = str(dt.attrs.pop("bayes_koa_fitted", ""))
    for k in ("bayes_koa_fit_key", CHECKSUM_ATTR, FORMAT_ATTR):
        dt.attrs.pop(k, None)
    dt.attrs[RECORD_ATTR] = json.dumps({"reused": True, "path": str(path), "fitted": fitted, "key": key})
    return dt


def store(key: str, dt) -> None:
    """Write ``dt`` (a complete fit) under ``key`` and add the record (``reused`` False) to its attrs.

    A failed write (read-only folder, full disk, content the format cannot hold) is logged and
    counted; the fit goes on without its entry."""
    from .store import save_arrays

    path = _path(key)
    fitted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if path is not None:
        try:
            save_arrays(dt, path, {"bayes_koa_fit_key": key, "bayes_koa_fitted": fitted})
            _count("stored")
        except Exception as e:  # noqa: BLE001 - the cache must never stop a fit
            _count("store_failed")
            log.warning("fit cache: could not write %s (%s: %s)", path, type(e).__name__, e)
            path = None
    dt.attrs[RECORD_ATTR] = json.dumps({"reused": False, "path": "" if path is None else str(path),
                                        "fitted": fitted, "key": key})

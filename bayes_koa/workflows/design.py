"""Simulation-based design and power studies, run in parallel on Dask distributed.

A study is a set of *scenarios* (each a stated truth, and the design to simulate on) times
``n_sims`` simulated data sets per scenario. For every (scenario, sim) the engine calls

* ``simulate_one(scenario, rng_seed)`` -> one data set (any object; it never leaves the worker), then
* ``fit_one(data)`` -> the fit's metrics: an :class:`xarray.Dataset`, or a dict of name -> number or
  :class:`xarray.DataArray` (numbers only; booleans and integers are stored as float64, so a metric
  that does not apply can be NaN). If ``fit_one`` takes a ``seed`` argument it is called as
  ``fit_one(data, seed=fit_seed)``, so the sampler is seeded too.

Both functions are handed in: this module knows nothing about the application (the knee-OA front
end is :mod:`bayes_koa.koa.design`). The result is one :class:`xarray.Dataset` with dims
``scenario`` and ``sim`` (plus any dims of the metrics), and ``done``, ``failed`` and ``seconds``
per fit.

Seeds. The seeds of (scenario ``i``, sim ``j``) come from ``numpy.random.SeedSequence(seed,
spawn_key=(i, j))``, which is exactly ``SeedSequence(seed).spawn(...)[i].spawn(...)[j]``: they
depend on the study seed and the indices only, never on which worker runs the fit or when, so a
study gives identical results on 1 or 20 workers, and adding sims later keeps the earlier ones.
With ``paired=True`` the key is ``(j,)``: every scenario sees the same random numbers in sim ``j``
(common random numbers; differences between scenarios are then estimated far more precisely).

Parallelism. By default a :class:`distributed.LocalCluster` with one single-threaded worker
process per core; ``client=`` takes a :class:`distributed.Client` or a scheduler address (a real
cluster). Each task runs ``simulate_one`` and ``fit_one`` on a worker, so a worker process keeps
whatever it caches between tasks (the package's compile cache: a model is compiled once per worker
and re-sampled for every later data set of the same shape). The two functions are sent to each
worker once (scattered), not once per task.

Store. With ``store=DIR`` every finished fit is written at once, atomically (written to a temporary
file in the same folder, then renamed), as ``DIR/fits/<scenario index>/<sim>.nc`` (netCDF-3); the
worker writes it, and the client writes it where the worker could not (no shared file system). A
study that is killed or interrupted resumes from the store: a (scenario, sim) whose file exists is
loaded, never fitted again. ``DIR/study.json`` records the seed, the scenarios (name and a hash of
their content) and the ``settings``; a store made for a different study is refused. A fit that
raised is stored as failed with its error (``retry_failed=True`` fits it again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["run_study", "study_seeds", "load_study", "StudyStoreError", "token", "RESERVED"]

STORE_VERSION = 1
MANIFEST = "study.json"
RESERVED = ("scenario", "sim", "done", "failed", "seconds")
# netCDF-3 through scipy: a record of a few dozen numbers writes in ~3 ms and reads in ~4 ms, ten
# times faster than netCDF-4 through h5netcdf (measured here), and every xarray reads it
NETCDF_ENGINE = "scipy"


class StudyStoreError(ValueError):
    """The store belongs to another study (other seed, scenarios or settings)."""


# --------------------------------------------------------------------------- seeds and tokens


def study_seeds(seed: int, scenario_index: int, sim: int, paired: bool = False) -> tuple[int, int]:
    """``(simulation seed, fit seed)`` of one (scenario, sim): see the module docstring.

    The simulation seed is a 64-bit integer and the fit seed a 31-bit one, both drawn from
    ``SeedSequence(seed, spawn_key=(scenario_index, sim))`` (``(sim,)`` when ``paired``).
    """
    key = (int(sim),) if paired else (int(scenario_index), int(sim))
    words = np.random.SeedSequence(int(seed), spawn_key=key).generate_state(3, np.uint32)
    return int(words[0]) | (int(words[1]) << 32), int(words[2]) >> 1


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **{f.name: _jsonable(getattr(obj, f.name))
                                                   for f in dataclasses.fields(obj)}}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, pd.DataFrame):
        return {"__frame__": hashlib.sha256(obj.to_csv(index=False).encode()).hexdigest()}
    return repr(obj)


def token(obj) -> str:
    """A short hash of ``obj``'s content (dataclasses, dicts, lists, numbers, text, DataFrames)."""
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _scenario_items(scenarios) -> list[tuple[str, Any]]:
    if isinstance(scenarios, Mapping):
        items = [(str(k), v) for k, v in scenarios.items()]
    else:
        items = []
        for i, s in enumerate(list(scenarios)):
            name = s.get("name") if isinstance(s, Mapping) else getattr(s, "name", None)
            items.append((str(name) if name is not None else str(i), s))
    if not items:
        raise ValueError("a study needs at least one scenario")
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"scenario names must be unique; repeated: {', '.join(dup)}")
    return items


# --------------------------------------------------------------------------- records and store


def _as_dataset(out) -> xr.Dataset:
    """The metrics returned by ``fit_one`` as a Dataset of float64 variables."""
    if isinstance(out, xr.Dataset):
        ds = out.copy()
    elif isinstance(out, Mapping):
        vars_ = {}
        for k, v in out.items():
            if isinstance(v, xr.DataArray):
                vars_[str(k)] = v.drop_vars([c for c in v.coords if c not in v.dims])
            else:
                a = np.asarray(v)
                if a.ndim:
                    raise TypeError(f"fit_one: metric {k!r} has shape {a.shape} but no dims; "
                                    "return it as an xarray.DataArray with named dims")
                vars_[str(k)] = xr.DataArray(a)
        ds = xr.Dataset(vars_)
    else:
        raise TypeError(f"fit_one must return an xarray.Dataset or a dict of metrics, got "
                        f"{type(out).__name__}")
    clash = [n for n in list(ds.data_vars) + list(ds.dims) if n in RESERVED]
    if clash:
        raise ValueError(f"fit_one: the names {clash} are reserved by the study "
                         f"({', '.join(RESERVED)})")
    for name, v in ds.data_vars.items():
        if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            raise TypeError(f"fit_one: metric {name!r} has dtype {v.dtype}; metrics must be numbers")
        ds[name] = v.astype("float64")
    ds.attrs = {}
    return ds


def _fit_path(store: Path, i: int, j: int) -> Path:
    return store / "fits" / f"{i:03d}" / f"{j:06d}.nc"


def _write_atomic(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` so that a reader sees either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp"
    try:
        ds = ds.copy()
        ds.attrs = {k: _ascii(v) for k, v in ds.attrs.items()}
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _ascii(v):
    return v.encode("ascii", "backslashreplace").decode("ascii") if isinstance(v, str) else v


def _read_record(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
        return ds.load()


def _manifest(seed, paired, items, settings) -> dict:
    return {"store_version": STORE_VERSION, "seed": int(seed), "paired": bool(paired),
            "scenarios": [{"name": n, "token": token(s)} for n, s in items],
            "settings": _jsonable(settings or {})}


def _check_store(store: Path, manifest: dict) -> None:
    path = store / MANIFEST
    if not path.exists():
        store.mkdir(parents=True, exist_ok=True)
        tmp = store / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, path)
        return
    old = json.loads(path.read_text())
    for key in ("store_version", "seed", "paired"):
        if old.get(key) != manifest[key]:
            raise StudyStoreError(f"store {store}: it holds a study with {key} = {old.get(key)!r}, "
                                  f"this one has {manifest[key]!r}; use another store folder")
    if json.dumps(old.get("settings"), sort_keys=True) != json.dumps(manifest["settings"], sort_keys=True):
        raise StudyStoreError(f"store {store}: its fits were made with other settings "
                              f"({old.get('settings')!r}, now {manifest['settings']!r}); use another "
                              "store folder")
    have, now = old.get("scenarios", []), manifest["scenarios"]
    for k, (a, b) in enumerate(zip(have, now)):
        if a != b:
            what = "name" if a["name"] != b["name"] else "content"
            raise StudyStoreError(f"store {store}: scenario {k} differs in {what} ({a['name']!r} in "
                                  f"the store, {b['name']!r} now); scenarios may only be appended")
    if len(now) > len(have):  # appended scenarios: record them
        old["scenarios"] = have + now[len(have):]
        tmp = store / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(old, indent=1) + "\n")
        os.replace(tmp, path)


# --------------------------------------------------------------------------- the task


def _wants_seed(fit_one: Callable) -> bool:
    try:
        params = inspect.signature(fit_one).parameters
    except (TypeError, ValueError):
        return False
    return "seed" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _run_one(simulate_one, fit_one, scenario, name: str, i: int, j: int, sim_seed: int,
             fit_seed: int, path: str | None, pass_seed: bool) -> xr.Dataset:
    """One (scenario, sim) on a worker: simulate, fit, write the record; return it."""
    t0 = time.perf_counter()
    status, error = "ok", ""
    try:
        data = simulate_one(scenario, sim_seed)
        out = fit_one(data, seed=fit_seed) if pass_seed else fit_one(data)
        ds = _as_dataset(out)
    except Exception as e:  # a failing fit is a result (stored with its error), not a crash
        ds, status, error = xr.Dataset(), "failed", f"{type(e).__name__}: {e}"
    ds["seconds"] = xr.DataArray(time.perf_counter() - t0)
    ds.attrs.update(scenario=name, scenario_index=int(i), sim=int(j), sim_seed=str(sim_seed),
                    fit_seed=int(fit_seed), status=status, error=error,
                    worker=f"{socket.gethostname()}:{os.getpid()}")
    written = 0
    if path is not None:
        try:
            _write_atomic(ds, Path(path))
            written = 1
        except OSError:  # no shared file system: the client writes it
            written = 0
    ds.attrs["written"] = written
    return ds


# --------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, progress, total: int, reused: int):
        self.fn = progress if callable(progress) else None
        self.show = progress is True
        # a terminal or a notebook redraws one line; a log file gets a line every 10 s
        self.redraw = sys.stderr.isatty() or "ipykernel" in sys.modules
        self.total, self.reused = total, reused
        self.done = self.failed = 0
        self.last_done = -1
        self.t0 = time.perf_counter()
        self.last = 0.0
        if self.show and total:
            self._line(force=True)

    def _line(self, force=False, end=""):
        now = time.perf_counter()
        if not force and now - self.last < (0.5 if self.redraw else 10.0):
            return
        self.last = now
        el = now - self.t0
        new = self.done - self.reused
        rate = new / el if el > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f", about {left:.0f} s left" if math.isfinite(left) and self.done < self.total else ""
        text = (f"design study: {self.done}/{self.total} fits ({self.reused} from the store, "
                f"{self.failed} failed), {el:.0f} s, {rate:.2f} fits/s{eta}")
        if self.redraw:
            sys.stderr.write(f"\r{text}   {end}")
        elif not end or self.done != self.last_done:
            sys.stderr.write(text + "\n")
        self.last_done = self.done
        sys.stderr.flush()

    def start(self):
        self.done = self.reused

    def update(self, record: xr.Dataset):
        self.done += 1
        self.failed += record.attrs.get("status") == "failed"
        if self.fn is not None:
            self.fn(self.done, self.total, record)
        if self.show:
            self._line(force=self.done == self.total)

    def close(self):
        if self.show and self.total:
            self._line(force=True, end="\n")


# --------------------------------------------------------------------------- cluster


@contextlib.contextmanager
def _client(workers: int | None, client):
    from distributed import Client, LocalCluster

    if client is not None:
        if workers is not None:
            raise ValueError("give workers= (a local cluster) or client= (an existing one), not both")
        if isinstance(client, str):
            c = Client(client)
            try:
                yield c
            finally:
                c.close()
        else:
            yield client
        return
    n = int(workers) if workers is not None else (len(os.sched_getaffinity(0))
                                                  if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _running(dask_worker, keys) -> list:
    """Keys of ``keys`` whose function still runs on this worker (a cancelled task keeps running
    to its end, in the worker state ``cancelled``)."""
    tasks = dask_worker.state.tasks
    return [k for k in keys if k in tasks and tasks[k].state in ("executing", "long-running", "cancelled",
                                                                 "resumed")]


def _wait_idle(cl, keys: set, timeout: float = 120.0) -> None:
    """Wait until no worker of a caller's cluster still runs one of ``keys`` (a cancelled task that
    had started runs to its end and writes its record), so that nothing writes into the store after
    :func:`run_study` returns. A cluster the study made itself is closed instead, which stops them."""
    t0 = time.perf_counter()
    keys = sorted(keys)
    while time.perf_counter() - t0 < timeout:
        try:
            busy = cl.run(_running, keys=keys)
        except Exception:  # the scheduler or the workers are gone: nothing runs any more
            return
        if not any(busy.values()):
            return
        time.sleep(0.05)


# --------------------------------------------------------------------------- assembly


def _assemble(items, n_sims: int, have: dict) -> xr.Dataset:
    ok = [ds for ds in have.values() if ds.attrs.get("status") == "ok"]
    template = None
    if ok:
        template = xr.full_like(ok[0].drop_vars("seconds"), np.nan)
    per_scenario = []
    for i, (name, _) in enumerate(items):
        recs = []
        for j in range(n_sims):
            ds = have.get((i, j))
            done = ds is not None
            failed = bool(done and ds.attrs.get("status") == "failed")
            seconds = float(ds["seconds"]) if done else np.nan
            if done and not failed:
                body = ds.drop_vars("seconds")
            else:
                body = template.copy() if template is not None else xr.Dataset()
            body = body.copy()
            body.attrs = {}
            body["done"] = xr.DataArray(done)
            body["failed"] = xr.DataArray(failed)
            body["seconds"] = xr.DataArray(seconds)
            recs.append(body)
        per_scenario.append(xr.concat(recs, dim=pd.Index(np.arange(n_sims), name="sim"),
                                      join="outer", coords="minimal", compat="override"))
    out = xr.concat(per_scenario, dim=pd.Index(np.array([n for n, _ in items], dtype=object), name="scenario"),
                    join="outer", coords="minimal", compat="override")
    return out


def _errors(have: dict, limit: int = 20) -> list[str]:
    errs = [f"{ds.attrs.get('scenario')} / sim {ds.attrs.get('sim')}: {ds.attrs.get('error')}"
            for _, ds in sorted(have.items()) if ds.attrs.get("status") == "failed"]
    return errs[:limit]


# --------------------------------------------------------------------------- public


def run_study(simulate_one: Callable[[Any, int], Any], fit_one: Callable[..., Any], scenarios,
              n_sims: int, seed: int, workers: int | None = None, client=None, store=None,
              progress=True, *, paired: bool = False, settings: Mapping | None = None,
              retry_failed: bool = False) -> xr.Dataset:
    """Simulate and fit ``n_sims`` data sets per scenario, in parallel; see the module docstring.

    Parameters
    ----------
    simulate_one, fit_one : the two steps (picklable: module-level functions, or objects with
        ``__call__``; closures work too, as Dask pickles with cloudpickle).
    scenarios : a dict name -> scenario, or a list (names from a ``name`` key or attribute, else
        the position). A scenario is passed to ``simulate_one`` as given.
    n_sims : simulated data sets per scenario.
    seed : the study seed (see "Seeds").
    workers : worker processes of the local cluster (default: one per core); not with ``client``.
    client : a :class:`distributed.Client` (left open) or a scheduler address (connected, then closed).
    store : folder; every finished fit is saved there, and a rerun resumes from it.
    progress : True (a line on stderr), False, or ``callable(done, total, record)`` called after
        every fit (an exception raised by it stops the study; what is stored stays).
    paired : common random numbers across scenarios (seed depends on the sim only).
    settings : anything else that determines the results (model, sampler settings): recorded in
        the store, whose fits are refused for other settings.
    retry_failed : fit again the (scenario, sim)s stored as failed.

    Returns
    -------
    xarray.Dataset with dims ``scenario`` and ``sim`` (and the metrics' own dims): the metrics,
    ``done`` (the fit is finished), ``failed`` (it raised; its metrics are NaN) and ``seconds``
    (simulate + fit time on the worker). ``attrs``: ``seed``, ``paired``, ``n_sims``, ``store``,
    ``new_fits`` (run by this call), ``reused_fits`` (loaded from the store), ``failed_fits``,
    ``lost_fits`` (tasks lost with their worker), ``elapsed_seconds``, ``workers``, ``settings``
    (JSON) and ``errors`` (JSON list of the first failures).
    """
    t_start = time.perf_counter()
    n_sims = int(n_sims)
    if n_sims < 1:
        raise ValueError(f"n_sims must be >= 1, got {n_sims}")
    items = _scenario_items(scenarios)
    store = Path(store) if store is not None else None
    if store is not None:
        _check_store(store, _manifest(seed, paired, items, settings))

    have: dict[tuple[int, int], xr.Dataset] = {}
    todo: list[tuple[int, int]] = []
    for i in range(len(items)):
        for j in range(n_sims):
            path = _fit_path(store, i, j) if store is not None else None
            if path is not None and path.exists():
                rec = _read_record(path)
                if not (retry_failed and rec.attrs.get("status") == "failed"):
                    have[(i, j)] = rec
                    continue
            todo.append((i, j))
    reused = len(have)
    total = len(items) * n_sims
    bar = _Progress(progress, total, reused)
    bar.start()
    lost: list[tuple[int, int]] = []
    n_workers = 0
    if todo:
        from distributed import as_completed

        pass_seed = _wants_seed(fit_one)
        with _client(workers, client) as cl:
            n_workers = len(cl.scheduler_info().get("workers", {}))
            run = uuid.uuid4().hex[:8]
            sim_f, fit_f = cl.scatter([simulate_one, fit_one], broadcast=True, hash=False)
            scen_f = cl.scatter([s for _, s in items], broadcast=True, hash=False)
            futures = {}
            for i, j in todo:
                s_seed, f_seed = study_seeds(seed, i, j, paired)
                path = str(_fit_path(store, i, j)) if store is not None else None
                fut = cl.submit(_run_one, sim_f, fit_f, scen_f[i], items[i][0], i, j, s_seed, f_seed,
                                path, pass_seed, key=f"bayes-koa-fit-{run}-{i}-{j}", pure=False)
                futures[fut.key] = (fut, i, j)
            try:
                for fut in as_completed([f for f, _, _ in futures.values()]):
                    _, i, j = futures[fut.key]
                    try:
                        rec = fut.result()
                    except Exception:  # the task was lost (its worker died too often): not stored
                        lost.append((i, j))
                        continue
                    if store is not None and not rec.attrs.get("written"):
                        _write_atomic(rec, _fit_path(store, i, j))
                    rec.attrs.pop("written", None)
                    have[(i, j)] = rec
                    bar.update(rec)
            finally:
                bar.close()
                pending = [f for f, _, _ in futures.values() if not f.done()]
                cl.cancel(pending)
                if pending and client is not None:
                    _wait_idle(cl, {f.key for f in pending})
    else:
        bar.close()
    out = _assemble(items, n_sims, have)
    failed = sum(ds.attrs.get("status") == "failed" for ds in have.values())
    out.attrs.update(seed=int(seed), paired=int(paired), n_sims=n_sims,
                     store="" if store is None else str(store), new_fits=len(have) - reused,
                     reused_fits=reused, failed_fits=int(failed), lost_fits=len(lost),
                     elapsed_seconds=round(time.perf_counter() - t_start, 3), workers=n_workers,
                     settings=json.dumps(_jsonable(settings or {})), errors=json.dumps(_errors(have)))
    return out


def load_study(store) -> xr.Dataset:
    """The fits in a store, without running anything: dims ``scenario`` (from ``study.json``) and
    ``sim`` (0 .. the largest sim stored); fits not in the store have ``done = False``."""
    store = Path(store)
    path = store / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{store} is not a study store (no {MANIFEST})")
    man = json.loads(path.read_text())
    items = [(s["name"], None) for s in man["scenarios"]]
    have = {}
    n_sims = 0
    for i in range(len(items)):
        folder = store / "fits" / f"{i:03d}"
        for f in sorted(folder.glob("*.nc")) if folder.exists() else []:
            j = int(f.stem)
            have[(i, j)] = _read_record(f)
            n_sims = max(n_sims, j + 1)
    out = _assemble(items, max(n_sims, 1), have)
    out.attrs.update(seed=man["seed"], paired=int(man["paired"]), n_sims=max(n_sims, 1), store=str(store),
                     new_fits=0, reused_fits=len(have), settings=json.dumps(man.get("settings", {})),
                     failed_fits=sum(ds.attrs.get("status") == "failed" for ds in have.values()),
                     errors=json.dumps(_errors(have)))
    return out

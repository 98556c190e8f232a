"""Compile a PyMC model for nutpie once per machine: in memory first, then on disk.

``compiled_model(key, build)`` returns ``(pm.Model, nutpie compiled model)``. Lookup order:

1. this process (a dict keyed by ``key`` and the compiler versions);
2. the disk cache (``$BAYES_KOA_CACHE``, else ``$XDG_CACHE_HOME/bayes_koa``, else
   ``~/.cache/bayes_koa``; subfolder ``compiled/``), one file per entry, keyed by ``key``, the versions
   of bayes_koa, Python, PyMC, PyTensor, nutpie, numba, llvmlite and NumPy, the PyTensor settings
   that change generated code, the CPU (numba's codegen "magic tuple") and a fingerprint of the
   model's log-density graph (so a model that changed under an unchanged ``key`` is never served
   stale code);
3. a fresh compile, which is then written to disk (temporary file + ``os.replace``: atomic).

An entry that cannot be read, fails its checksum, or was written for another key or other versions
is ignored (counted in ``STATS["rejected"]``), deleted and rebuilt: it is never used.
``BAYES_KOA_CACHE=off`` turns the disk cache off.

Why a compile of our own and not ``nutpie.compile_pymc_model``: measured on the shipped
source_hierarchical model (benchmarks/bench_compile_options.py), nutpie's numba C callbacks take
~16 s to compile in every fresh process and cannot be cached (``numba.cfunc(cache=True)`` misses
every time: nutpie names its shared variables with random ``uuid4`` keys, which enter numba's cache
index through the closure). This module builds the same two C callbacks (log density + gradient,
and the "expand" function that computes deterministics) from the same PyTensor functions, with

- shared-variable keys ``s0, s1, ...`` (deterministic) and the same user-data record layout, so
  ``CompiledPyMCModel.with_data`` works unchanged;
- the shared arrays read by generated straight-line code instead of nutpie's ``literal_unroll``
  over ``@overload`` functions, cast to read-only arrays so the PyTensor function's cached
  specialisation is reused (same machine code, so the draws equal nutpie's for the same seed);
- element loops instead of ``out[...] = grad`` (whose shape-mismatch error path alone costs numba
  ~4 s of compiling string formatting);

which compiles in ~3 s instead of ~16 s, and stores numba's compile results (object code) on disk,
so a second process loads them in a fraction of a second. Sampling is untouched: nutpie's
``CompiledPyMCModel`` and sampler are used as they are.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import platform
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["compiled_model", "cache_dir", "clear", "STATS", "versions", "fingerprint", "entry_path"]

log = logging.getLogger(__name__)

FASTMATH = False  # numba fastmath for the generated code: off, see compiled_model
FORMAT = 1  # bump when the entry layout or the generated wrappers change
_MAGIC = b"bayes_koa compiled model v%d\n" % FORMAT

# counters for tests and benchmarks: memory_hits, disk_hits, compiles, rejected, saved, save_failed
STATS: dict[str, int] = {}
_MEMORY: dict[tuple, tuple[Any, Any]] = {}
_LOCK = threading.RLock()


def _count(what: str) -> None:
    STATS[what] = STATS.get(what, 0) + 1


def cache_root() -> Path | None:
    """Root of bayes_koa's disk caches (``$BAYES_KOA_CACHE``, else ``$XDG_CACHE_HOME/bayes_koa``, else
    ``~/.cache/bayes_koa``), or None when ``BAYES_KOA_CACHE`` is ``off``/``0``/``none``/``false``/``no``."""
    env = os.environ.get("BAYES_KOA_CACHE")
    if env is not None and env.strip().lower() in ("off", "0", "none", "false", "no"):
        return None
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bayes_koa"


def cache_dir() -> Path | None:
    """Folder of the compiled-model cache (``compiled/`` under :func:`cache_root`), or None when off."""
    root = cache_root()
    return None if root is None else root / "compiled"


def clear(memory: bool = True, disk: bool = False) -> None:
    """Forget compiled models in this process and (``disk=True``) delete the disk entries."""
    with _LOCK:
        if memory:
            _MEMORY.clear()
        folder = cache_dir()
        if disk and folder is not None and folder.is_dir():
            for f in folder.glob("*.bkc"):
                f.unlink(missing_ok=True)


def versions() -> tuple:
    """What compiled code depends on besides the model: package versions, settings, CPU."""
    import importlib.metadata as md

    import pytensor
    from numba.core.registry import cpu_target

    out = [("format", FORMAT), ("python", platform.python_version()), ("machine", platform.machine())]
    for pkg in ("bayes_koa", "pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy"):
        try:
            out.append((pkg, md.version(pkg)))
        except md.PackageNotFoundError:
            out.append((pkg, "not installed"))
    cfg = pytensor.config
    for name in ("floatX", "numba__vectorize_target", "cast_policy", "optimizer",
                 "optimizer_excluding", "optimizer_including"):
        out.append((name, str(getattr(cfg, name, None))))
    out.append(("numba__fastmath", str(FASTMATH)))  # what compiled_model compiles with, whatever the config
    out.append(("codegen", repr(cpu_target.target_context.codegen().magic_tuple())))
    out.append(("wrapper_sha256", _this_source_hash()))
    return tuple(out)


_SRC_HASH: str | None = None


def _this_source_hash() -> str:
    global _SRC_HASH
    if _SRC_HASH is None:
        _SRC_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return _SRC_HASH


def _graph_outputs(model) -> list:
    return [model.logp(), *model.unobserved_value_vars]


def fingerprint(model) -> tuple[str, dict]:
    """sha256 of the model's log-density and deterministic graphs (structure, types, constants).

    Returns the hex digest and the model's shared variables by name (which the compiled code reads
    at run time; their values are not part of the fingerprint).
    """
    import numpy as np
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import ancestors

    outs = _graph_outputs(model)
    h = hashlib.sha256(pytensor.printing.debugprint(outs, file="str", print_type=True).encode())
    # nutpie's functions are specialised to the sizes at compile time (flat-vector slices)
    for dim, length in model.dim_lengths.items():
        value = length.get_value() if isinstance(length, SharedVariable) else getattr(length, "data", None)
        h.update(f"dim {dim}={None if value is None else int(value)};".encode())
    shared: dict[str, Any] = {}
    for v in ancestors(outs):
        if isinstance(v, Constant):  # debugprint abbreviates large constants: hash their bytes
            data = np.asarray(v.data)
            h.update(f"{data.dtype.str}{data.shape}".encode())
            h.update(np.ascontiguousarray(data).tobytes())
        elif isinstance(v, SharedVariable) and v.name is not None:
            value = v.get_value(borrow=True)
            h.update(f"shared {v.name} {getattr(value, 'shape', None)};".encode())
            if v.name in shared and shared[v.name] is not v:
                shared[v.name] = None  # ambiguous name: the entry cannot be mapped onto this model
            else:
                shared[v.name] = v
    return h.hexdigest(), shared


def entry_path(key: tuple, digest: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    name = hashlib.sha256(repr((key, versions(), digest)).encode()).hexdigest()[:40]
    return folder / f"{name}.bkc"


def compiled_model(key: tuple, build: Callable[[], Any], labels: tuple = ()):
    """``(model, compiled)`` for ``key``: from this process, else from disk, else compiled now.

    ``key`` must identify the model's structure and shapes (not data values or prior parameters,
    which live in ``pm.Data`` containers and are set per fit with ``compiled.with_data``);
    ``build()`` returns the ``pm.Model``. Versions of the compilers are added to the key here.
    ``labels`` (e.g. the coordinate values) distinguish models in memory only: the returned model
    carries them, while a disk entry serves any labels of the same structure and shapes.
    """
    import pytensor

    # IEEE arithmetic in the generated code (numba fastmath off): with fastmath, LLVM may reassociate
    # sums differently when a callee comes from numba's cache than when it was compiled in the same
    # session, so the first process on a machine (cold caches) drew different chains from later ones for
    # the same seed (multi_outcome model, 4 x 100 draws: mu mean -7.72 / -8.26 cold vs -8.45 warm).
    # Off, cold and warm draws are equal; measured refit time unchanged within noise (3.4-5.5 s vs
    # 3.3-5.0 s, source_hierarchical, load 5). The flag is part of versions(), so old entries are not used.
    with pytensor.config.change_flags(numba__fastmath=FASTMATH):
        mkey = (key, labels, versions())
        with _LOCK:
            hit = _MEMORY.get(mkey)
            if hit is not None:
                _count("memory_hits")
                return hit
            model = build()
            compiled = _from_disk_or_compile(key, model)
            _MEMORY[mkey] = (model, compiled)
            return model, compiled


def _from_disk_or_compile(key: tuple, model):
    digest, shared = fingerprint(model)
    path = entry_path(key, digest)
    expected = repr((key, versions(), digest))
    if path is not None and path.exists():
        t0 = time.perf_counter()
        try:
            compiled = _load(path, expected, model, shared)
        except Exception as e:  # noqa: BLE001 - any unreadable/mismatched entry is rebuilt, never used
            _count("rejected")
            log.warning("compile cache: ignoring entry %s (%s: %s); recompiling", path.name, type(e).__name__, e)
            path.unlink(missing_ok=True)
        else:
            _count("disk_hits")
            log.info("compile cache: loaded %s in %.2f s", path.name, time.perf_counter() - t0)
            return compiled
    t0 = time.perf_counter()
    compiled, entry = _compile(model)
    _count("compiles")
    log.info("compile cache: compiled model in %.2f s", time.perf_counter() - t0)
    if path is not None and entry is not None:
        try:
            _save(path, expected, entry)
            _count("saved")
        except Exception as e:  # noqa: BLE001 - a read-only cache folder must not stop a fit
            _count("save_failed")
            log.warning("compile cache: could not write %s (%s: %s)", path, type(e).__name__, e)
    return compiled


# -- disk entries ------------------------------------------------------------------------------


def _save(path: Path, expected: str, entry: dict) -> None:
    from numba.core.serialize import dumps

    from .store import write_bytes_atomic

    payload = dumps({"key": expected, **entry})
    blob = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    write_bytes_atomic(path, [blob])


def _read(path: Path, expected: str) -> dict:
    blob = path.read_bytes()
    if not blob.startswith(_MAGIC):
        raise ValueError("not a bayes_koa compiled-model entry of this format")
    head, _, payload = blob[len(_MAGIC):].partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != head:
        raise ValueError("checksum mismatch (truncated or corrupt file)")
    entry = pickle.loads(payload)
    if entry.get("key") != expected:
        raise ValueError("entry was written for another key or other versions")
    return entry


def _load(path: Path, expected: str, model, shared: dict):
    import numpy as np
    from numba.core.compiler import CompileResult
    from numba.core.registry import cpu_target

    entry = _read(path, expected)
    shared_vars = []
    for name, ndim, dtype in entry["shared"]:
        var = shared.get(name)
        if var is None or var.ndim != ndim or np.dtype(var.dtype).str != dtype:
            raise ValueError(f"shared variable {name!r} is missing from the model or has another type")
        shared_vars.append(var)
    ctx = cpu_target.target_context
    ctx.refresh()
    funcs = {}
    for which in ("logp", "expand"):
        cres = CompileResult._rebuild(ctx, *entry[which])
        funcs[which] = _cfunc_from_cres(cres, _SIGS[which](), entry[f"{which}_name"])
    return _assemble(model, shared_vars, entry["n_dim"], entry["n_expanded"], entry["shape_info"],
                     entry["reparameterized_names"], funcs["logp"], funcs["expand"], None, None)


# -- compiling ---------------------------------------------------------------------------------


def _sig_logp():
    from numba import types

    return types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                       types.CPointer(types.double), types.voidptr)


def _sig_expand():
    from numba import types

    return types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                       types.voidptr)


_SIGS = {"logp": _sig_logp, "expand": _sig_expand}


def _initial_point_fn(model):
    """nutpie's default: support points, jittered for every free variable (compile_pymc_model)."""
    from nutpie.compile_pymc import _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    return _wrap_with_lock(make_initial_point_fn(model=model, overrides=None, default_strategy="support_point",
                                                 jitter_rvs=set(model.free_RVs), return_transformed=True))


def _assemble(model, shared_vars, n_dim, n_expanded, shape_info, reparameterized_names, logp_cf, expand_cf,
              logp_pt, expand_pt):
    import numpy as np
    from nutpie.compile_pymc import (CompiledPyMCModel, _prepare_dims_and_coords, _rv_dict_to_flat_array_wrapper,
                                     make_user_data)

    shared_var_keys = {var: f"s{i}" for i, var in enumerate(shared_vars)}
    shared_data = {}
    for var, k in shared_var_keys.items():
        arr = np.array(var.get_value(), order="C", copy=True)
        arr.flags.writeable = False
        shared_data[k] = arr
    user_data = make_user_data(shared_var_keys, shared_data)
    names, _, shapes = shape_info
    n_free = len(model.free_RVs)  # nutpie puts the free variables first, in model.free_RVs order
    initial = _rv_dict_to_flat_array_wrapper(_initial_point_fn(model), names=list(names[:n_free]),
                                             shapes=list(shapes[:n_free]))
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized_names)
    return CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_cf, compiled_expand_func=expand_cf, initial_point_func=initial,
        shared_data=shared_data, shared_var_keys=shared_var_keys, user_data=user_data,
        n_expanded=n_expanded, shape_info=shape_info, logp_func=logp_pt, expand_func=expand_pt,
        reparameterized_names=reparameterized_names)


def _compile(model):
    """Compile ``model`` as nutpie does (same PyTensor functions, same C signatures, same return codes).

    Returns the compiled model and the disk entry (None when numba says the code cannot be cached).
    """
    import numpy as np
    from nutpie.compile_pymc import _make_functions

    initial = _initial_point_fn(model)
    n_dim, n_expanded, logp_pt, expand_pt, _, shape_info, reparameterized_names = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=initial)
    shared_vars: list = []
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var not in shared_vars:
            shared_vars.append(var)
    index = {var: i for i, var in enumerate(shared_vars)}
    shared_data = [np.array(v.get_value(), order="C") for v in shared_vars]
    record = _user_data_dtype(shared_vars)
    logp_ids = [index[v] for v in logp_pt.get_shared()]
    expand_ids = [index[v] for v in expand_pt.get_shared()]
    logp_extract = _extractor("extract_logp", logp_pt.vm.jit_fn, record, logp_ids, shared_data)
    expand_extract = _extractor("extract_expand", expand_pt.vm.jit_fn, record, expand_ids, shared_data)
    logp_raw = _logp_wrapper(n_dim, logp_extract)
    expand_raw = _expand_wrapper(n_dim, n_expanded, expand_extract)
    logp_cf, logp_cres = _compile_cfunc(logp_raw, _sig_logp())
    expand_cf, expand_cres = _compile_cfunc(expand_raw, _sig_expand())
    compiled = _assemble(model, shared_vars, n_dim, n_expanded, shape_info, reparameterized_names,
                         logp_cf, expand_cf, logp_pt, expand_pt)
    assert compiled.user_data.dtype == record, "user-data layout differs from nutpie's"
    entry = None
    if not (logp_cres.library.has_dynamic_globals or expand_cres.library.has_dynamic_globals
            or logp_cres.lifted or expand_cres.lifted):
        entry = {"shared": [(v.name, v.ndim, np.dtype(v.dtype).str) for v in shared_vars],
                 "n_dim": n_dim, "n_expanded": n_expanded, "shape_info": shape_info,
                 "reparameterized_names": list(reparameterized_names),
                 "logp": logp_cres._reduce(), "expand": expand_cres._reduce(),
                 "logp_name": logp_raw.__qualname__, "expand_name": expand_raw.__qualname__}
    else:
        log.warning("compile cache: numba cannot cache this model's code (dynamic globals); not saved")
    return compiled, entry


def _user_data_dtype(shared_vars):
    """nutpie's record layout (make_user_data) with keys s0, s1, ...: pointers, sizes, shapes."""
    import numpy as np

    keys = [f"s{i}" for i in range(len(shared_vars))]
    return np.dtype([("shared", [("data", [(k, np.uintp) for k in keys]),
                                 ("size", [(k, np.uintp) for k in keys]),
                                 ("shape", [(k, np.uint, (v.ndim,)) for k, v in zip(keys, shared_vars)])])])


def _address_as_void_pointer():
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def address_as_void_pointer(typingctx, src):
        def codegen(cgctx, builder, sig, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(src), codegen

    return address_as_void_pointer


def _readonly_cast():
    from numba.core.imputils import impl_ret_borrowed
    from numba.extending import intrinsic

    @intrinsic
    def readonly(typingctx, arr):
        """The same array typed read-only (nutpie passes read-only arrays: reuse that specialisation)."""
        def codegen(context, builder, sig, args):
            return impl_ret_borrowed(context, builder, sig.return_type, args[0])

        return arr.copy(readonly=True)(arr), codegen

    return readonly


_INTRINSICS: dict[str, Any] = {}


def _intrinsics():
    if not _INTRINSICS:
        _INTRINSICS.update(addr=_address_as_void_pointer(), ro=_readonly_cast())
    return _INTRINSICS


def _all_uint64(dt) -> bool:
    """True when every leaf field of the structured dtype is an 8-byte unsigned integer."""
    if dt.fields is None:
        base = dt.base if dt.subdtype is not None else dt
        return base.kind == "u" and base.itemsize == 8
    return all(_all_uint64(f[0]) for f in dt.fields.values())


def _extractor(name: str, inner, record, ids: list[int], shared_data: list):
    """``name(x, user_data_) -> inner(x, *shared arrays)``, reading pointers and shapes from the record.

    Generated straight-line code: one ``numba.carray`` per shared array at the offsets of nutpie's
    user-data record (all fields are 8-byte unsigned integers).
    """
    import numba
    import numpy as np

    if not _all_uint64(record):
        raise TypeError(f"unexpected user-data layout {record}")
    sub = record["shared"]
    base = record.fields["shared"][1]
    env = {"numba": numba, "np": np, "inner": inner, **_intrinsics()}
    lines = [f"def {name}(x, user_data_):", f"    u = numba.carray(user_data_, ({record.itemsize // 8},), np.uint64)"]
    args = []
    for j, i in enumerate(ids):
        k, arr = f"s{i}", shared_data[i]
        d = (base + sub.fields["data"][1] + sub["data"].fields[k][1]) // 8
        sh = (base + sub.fields["shape"][1] + sub["shape"].fields[k][1]) // 8
        env[f"dt{j}"] = arr.dtype
        shape = "".join(f"u[{sh + a}], " for a in range(arr.ndim))
        lines.append(f"    a{j} = ro(numba.carray(addr(u[{d}]), ({shape}), dt{j}))")
        args.append(f"a{j}")
    lines.append(f"    return inner(x{''.join(', ' + a for a in args)})")
    src = "\n".join(lines) + "\n"
    local: dict[str, Any] = {}
    exec(compile(src, f"<bayes_koa {name}>", "exec"), env, local)
    return numba.njit(inline="always")(local[name])


def _logp_wrapper(n_dim: int, extract):
    """nutpie's ``logp_numba`` (same return codes) with an element loop for the gradient copy."""
    import numba
    import numpy as np

    def logp_numba(dim, x_, out_, logp_, user_data_):
        if dim != n_dim:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            out = numba.carray(out_, (n_dim,))
            logp = numba.carray(logp_, ())
            logp_val, grad = extract(x, user_data_)
            logp[()] = logp_val
            finite = True
            for i in range(n_dim):
                out[i] = grad[i]
                if not np.isfinite(grad[i]):
                    finite = False
            if not finite:
                return 3
            if not np.isfinite(logp_val):
                return 4
        except Exception:  # noqa: BLE001
            return 1
        return 0

    return logp_numba


def _expand_wrapper(n_dim: int, n_expanded: int, extract):
    """nutpie's ``expand_numba`` (same return codes) with an element loop for the copy."""
    import numba

    def expand_numba(dim, expanded, x_, out_, user_data_):
        if dim != n_dim:
            return -1
        if expanded != n_expanded:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            out = numba.carray(out_, (n_expanded,))
            (values,) = extract(x, user_data_)
            for i in range(n_expanded):
                out[i] = values[i]
        except Exception:  # noqa: BLE001
            return -2
        return 0

    return expand_numba


class _Capture:
    """Stands in for numba's cache in ``CFunc.compile``: never loads, keeps the compile result."""

    cres = None

    def load_overload(self, sig, target_context):
        return None

    def save_overload(self, sig, cres):
        self.cres = cres


def _compile_cfunc(pyfunc, sig):
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    cf = CFunc(pyfunc, sigutils.normalize_signature(sig), locals={}, options={})
    cf._cache = cap = _Capture()
    cf.compile()
    return cf, cap.cres


def _cfunc_from_cres(cres, sig, qualname: str):
    """A ``numba.cfunc`` object around a compile result loaded from disk (what ``CFunc.compile`` sets)."""
    from numba.core.caching import NullCache
    from numba.core.ccallback import CFunc
    from numba.core.typing import signature

    cf = CFunc.__new__(CFunc)
    cf.__name__ = cf.__qualname__ = qualname
    cf.__wrapped__ = cf._pyfunc = None
    cf._sig = signature(sig.return_type, *sig.args)
    cf._compiler = None
    cf._cache = NullCache()
    cf._cache_hits = 1
    cf._library = cres.library
    cf._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
    cf._wrapper_address = cf._library.get_pointer_to_function(cf._wrapper_name)
    if not cf._wrapper_address:
        raise ValueError("compiled entry lacks its C callback symbol")
    return cf

"""Atomic, verified saving and loading of results (``xarray.DataTree`` in netCDF).

:func:`save_datatree` writes to a temporary file in the target's folder, flushes it to disk
(``fsync``), reads it back and checks it, and only then moves it onto the final name with
``os.replace`` (atomic on POSIX and Windows): a crash or kill at any point leaves either the old
file or the new one under the final name, never half a file. The root attribute
:data:`CHECKSUM_ATTR` holds a sha256 of the draws (:func:`draws_checksum`: every data variable and
coordinate of every group, in a canonical byte order).

:func:`load_datatree` reads the whole file into memory and closes it (so the same path can be
written again at once), refuses a file that cannot be read (truncated, half-written, not netCDF),
that lacks a required group, or whose draws no longer match the checksum, each with a one-line
:class:`StoreError`.

:func:`table_to_attr` / :func:`table_from_attr` carry a DataFrame in a string attribute exactly:
dtypes, missing values, ``'NA'`` strings, index and ``attrs`` (CSV with pandas' default NA parsing
turns a trial called ``NA`` into a missing value).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "StoreError",
    "save_datatree",
    "load_datatree",
    "draws_checksum",
    "table_to_attr",
    "table_from_attr",
    "save_arrays",
    "load_arrays",
    "CHECKSUM_ATTR",
    "FORMAT_ATTR",
]

CHECKSUM_ATTR = "bayes_koa_draws_sha256"
FORMAT_ATTR = "bayes_koa_store_format"
STORE_FORMAT = "bayes_koa.store/1"
TABLE_FORMAT = "bayes_koa.table/1"
_ENGINE = "h5netcdf"


class StoreError(ValueError):
    """A result file that cannot be saved or loaded as asked; the message is one line."""

    def __init__(self, path, message: str):
        self.path = None if path is None else Path(path)
        text = " ".join(str(message).split())  # one line, whatever the cause said
        super().__init__(f"{path}: {text}" if path is not None else text)


# --------------------------------------------------------------------------- checksum


def _missing_text(v) -> bool:
    """None, or the NaN that xarray puts for None in an object array."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _canonical(values: np.ndarray) -> tuple[str, bytes]:
    """(kind, bytes) of an array in a byte order and width that do not depend on how it was
    stored: little-endian, integers as 64 bit, floats as float64 with one NaN, text as UTF-8."""
    a = np.asarray(values)
    k = a.dtype.kind
    if k == "b":
        return "bool", np.ascontiguousarray(a, dtype="u1").tobytes()
    if k == "i":
        return "int", np.ascontiguousarray(a, dtype="<i8").tobytes()
    if k == "u":
        return "uint", np.ascontiguousarray(a, dtype="<u8").tobytes()
    if k == "f":
        f = np.array(a, dtype="<f8", order="C")
        f[np.isnan(f)] = np.nan  # one NaN bit pattern
        return "float", f.tobytes()
    if k == "c":
        c = np.array(a, dtype="<c16", order="C")
        return "complex", c.tobytes()
    if k in "Mm":
        ns = np.ascontiguousarray(a.astype(f"{k}8[ns]")).view("<i8")
        return ("datetime" if k == "M" else "timedelta"), ns.tobytes()
    if k in "USO":
        parts = []
        for v in a.ravel(order="C").tolist():
            if isinstance(v, bytes):
                v = v.decode("utf-8", "surrogateescape")
            if _missing_text(v):
                v = ""  # a missing text value is stored as "" (see _storable)
            if not isinstance(v, str):
                raise TypeError(f"cannot checksum a {type(v).__name__} in a text variable")
            b = v.encode("utf-8", "surrogatepass")
            parts.append(b"\x01" + len(b).to_bytes(8, "little") + b)
        return "text", b"".join(parts)
    raise TypeError(f"cannot checksum values of dtype {a.dtype}")


def draws_checksum(dt) -> str:
    """sha256 over every data variable and coordinate of every group of a DataTree.

    Groups in path order, variables by name; each enters with its group, name, dimensions and
    shape, then its values in canonical bytes (:func:`_canonical`), so the checksum does not change
    with the file format's encoding but does with any changed draw, label, shape or order.
    Attributes are not included (they are checked separately after a write).
    """
    h = hashlib.sha256(b"bayes_koa draws v1\n")
    for node in sorted(dt.subtree, key=lambda n: n.path):
        ds = node.to_dataset(inherit=False)
        for role, names in (("var", sorted(map(str, ds.data_vars))), ("coord", sorted(map(str, ds.coords)))):
            for name in names:
                var = ds[name].variable
                kind, data = _canonical(var.values)
                head = f"{node.path}\x00{role}\x00{name}\x00{','.join(map(str, var.dims))}\x00" \
                       f"{','.join(map(str, var.shape))}\x00{kind}\x00{len(data)}\n"
                h.update(head.encode("utf-8"))
                h.update(data)
    return h.hexdigest()


# --------------------------------------------------------------------------- save


def _storable(dt):
    """``dt`` with every text variable held as NumPy strings: netCDF writes an object array of
    ``str``/``None`` as text, but one of only ``None`` (e.g. nutpie's ``divergence_message``) as
    float NaN; as text, ``None`` (or the NaN xarray may put for it) is ``""``, which reads back as
    written (and checksums the same)."""
    import xarray as xr

    def text(v):
        if v.dtype.kind != "O":
            return v
        vals = v.values.ravel().tolist()
        if not all(_missing_text(x) or isinstance(x, str) for x in vals):
            return v  # anything else is written as xarray does; the read-back check judges it
        arr = np.array(["" if _missing_text(x) else x for x in vals], dtype=str).reshape(v.shape)
        return xr.Variable(v.dims, arr if arr.size else arr.astype("U1"), v.attrs, v.encoding)

    nodes = {}
    for node in dt.subtree:
        ds = node.to_dataset(inherit=False)
        nodes[node.path] = ds.copy(data={k: text(ds[k].variable).values for k in ds.data_vars}) \
            .assign_coords({k: text(ds[k].variable) for k in ds.coords if ds[k].dtype.kind == "O"})
    return xr.DataTree.from_dict(nodes)


def _write_netcdf(dt, path: Path) -> None:
    """The one place that writes file bytes (tests replace it to simulate a crash mid-write)."""
    dt.to_netcdf(path, engine=_ENGINE)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; os.replace is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _same_attr(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _attr_differences(written, read) -> list[str]:
    out = []
    got = {n.path: n for n in read.subtree}
    for node in written.subtree:
        other = got.get(node.path)
        if other is None:
            out.append(f"group {node.path} missing")
            continue
        for k, v in node.attrs.items():
            if k not in other.attrs:
                out.append(f"attribute {k!r} of {node.path} missing")
            elif not _same_attr(v, other.attrs[k]):
                out.append(f"attribute {k!r} of {node.path} changed ({_short(v)} -> {_short(other.attrs[k])})")
    return out


def _value_differences(written, read) -> list[str]:
    out = []
    got = {n.path: n for n in read.subtree}
    for node in written.subtree:
        ds = node.to_dataset(inherit=False)
        other = got[node.path].to_dataset(inherit=False) if node.path in got else None
        for k in ds.variables:
            try:
                same = other is not None and k in other.variables and \
                    _canonical(ds[k].values) == _canonical(other[k].values)
            except TypeError:
                same = False
            if not same:
                out.append(f"{node.path.rstrip('/')}/{k}")
    return out


def _short(v) -> str:
    t = repr(v)
    return t if len(t) <= 40 else t[:37] + "..."


def _content_digest(out) -> str:
    """sha256 of everything that decides the bytes :func:`_write_netcdf` writes for ``out``: the draws
    (:func:`draws_checksum`), every group's and variable's attributes, dtypes and encodings."""
    h = hashlib.sha256(b"bayes_koa netcdf content v1\n")
    h.update(draws_checksum(out).encode())
    for node in sorted(out.subtree, key=lambda n: n.path):
        ds = node.to_dataset(inherit=False)
        h.update(json.dumps([node.path, _attr_out(dict(node.attrs))], sort_keys=True).encode())
        for name in sorted(map(str, ds.variables)):
            v = ds[name].variable
            h.update(json.dumps([name, str(v.dtype), _attr_out(dict(v.attrs)),
                                 repr(sorted(v.encoding.items()))], sort_keys=True).encode())
    h.update(f"{_ENGINE}|{xr_version()}".encode())
    return h.hexdigest()


def xr_version() -> str:
    import importlib.metadata as md

    parts = []
    for pkg in ("xarray", "h5netcdf", "h5py"):
        try:
            parts.append(f"{pkg}={md.version(pkg)}")
        except md.PackageNotFoundError:
            parts.append(f"{pkg}=?")
    return ",".join(parts)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _place_copy(src: Path, dst: Path) -> None:
    """``dst`` (which must not exist) becomes a hard link to ``src``, or a copy across file systems."""
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _reused_file(folder: Path, digest: str, tmp: Path) -> bool:
    """Put the verified file of ``digest`` from ``folder`` at ``tmp``; False when there is none (or it
    fails its byte checksum, written when it was verified: then it is deleted)."""
    entry, sidecar = folder / f"{digest[:40]}.nc", folder / f"{digest[:40]}.sha256"
    try:
        want = sidecar.read_text().strip()
    except OSError:
        return False
    try:
        tmp.unlink(missing_ok=True)
        _place_copy(entry, tmp)
        if _file_sha256(tmp) == want:
            return True
    except OSError:
        pass
    tmp.unlink(missing_ok=True)
    for f in (entry, sidecar):
        f.unlink(missing_ok=True)
    return False


def _keep_file(folder: Path, digest: str, path: Path) -> None:
    """Keep the just-verified file ``path`` in ``folder`` under ``digest`` (a link or copy, then its byte
    checksum), each moved into place atomically; any failure leaves no usable entry."""
    entry, sidecar = folder / f"{digest[:40]}.nc", folder / f"{digest[:40]}.sha256"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".keep-", suffix=".nc")
        os.close(fd)
        os.unlink(tmp)
        _place_copy(path, Path(tmp))
        os.replace(tmp, entry)
        fd, tmp2 = tempfile.mkstemp(dir=folder, prefix=".keep-", suffix=".sha256")
        with os.fdopen(fd, "w") as fh:
            fh.write(_file_sha256(entry) + "\n")
        os.replace(tmp2, sidecar)
    except OSError:
        for f in (entry, sidecar):
            Path(f).unlink(missing_ok=True)


def save_datatree(dt, path, extra_attrs: dict | None = None, *, reuse: str | Path | None = None) -> Path:
    """Write ``dt`` (an ``xarray.DataTree``) to ``path`` atomically, with a checksum of its draws.

    ``extra_attrs`` (str keys; str, int or float values) are added to the root attributes, with
    :data:`CHECKSUM_ATTR` (:func:`draws_checksum`) and :data:`FORMAT_ATTR`. The file is written
    to a temporary file in the same folder, fsync'ed, read back and compared (draws by checksum,
    every attribute exactly, so a string that the format cannot hold is refused, not altered),
    then moved onto ``path`` with ``os.replace``. On any failure the temporary file is removed and
    an existing file at ``path`` is left untouched. ``dt`` itself is not changed. Returns ``path``.

    ``reuse``: a folder of files already written and verified this way, keyed by a digest of the
    content (draws checksum, attributes, dtypes, encodings; :func:`_content_digest`). When it holds
    this content, that file is hard-linked (or copied) into place instead of written and read back
    again, after its bytes are checked against the sha256 recorded when it was verified; otherwise
    the file is written and verified as above and then kept there for the next identical save.
    Raises :class:`StoreError` (one line) when the file would not read back as written.
    """
    import xarray as xr

    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"save_datatree needs an xarray.DataTree, got {type(dt).__name__}")
    path = Path(path)
    if path.is_dir():
        raise StoreError(path, "is a folder; give a file name such as fit.nc")
    extra = dict(extra_attrs or {})
    for k, v in extra.items():
        if not isinstance(k, str):
            raise TypeError(f"extra_attrs keys must be str, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (str, int, float, np.integer, np.floating)):
            raise TypeError(f"extra_attrs[{k!r}] must be a str, int or float, got {type(v).__name__}")
    out = _storable(dt)
    out.attrs = {**dt.attrs, **extra, FORMAT_ATTR: STORE_FORMAT, CHECKSUM_ATTR: draws_checksum(dt)}

    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:  # an attribute type the digest cannot hash: no reuse, the plain write below
        digest = _content_digest(out) if reuse is not None else None
    except TypeError:
        digest = None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if digest is not None and _reused_file(Path(reuse), digest, tmp):
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
        return path
    try:
        try:
            _write_netcdf(out, tmp)
        except Exception as exc:  # e.g. a NUL byte in a string attribute: say so in one line
            raise StoreError(path, f"not saved: {_first_line(exc)}") from exc
        _fsync_file(tmp)
        back = load_datatree(tmp, required_groups=(), require_checksum=False)
        diff = _attr_differences(out, back)
        if draws_checksum(back) != out.attrs[CHECKSUM_ATTR]:
            diff.insert(0, "values of " + (", ".join(_value_differences(out, back)[:3]) or "the draws"))
        if diff:
            raise StoreError(path, "not saved: the file would not read back as written: " + "; ".join(diff[:3]))
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)
    if digest is not None:
        _keep_file(Path(reuse), digest, path)
    return path


# --------------------------------------------------------------------------- load


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def load_datatree(path, required_groups=("posterior", "sample_stats"), *, require_checksum: bool = True):
    """Read a file written by :func:`save_datatree` fully into memory, closing the file.

    Refused with a one-line :class:`StoreError`: no such file, a folder, a file that cannot be
    read as netCDF (truncated, half-written, another format), a missing group of
    ``required_groups``, no checksum (unless ``require_checksum=False``, for files written
    otherwise), and draws that no longer match the stored checksum. Attributes come back exactly
    as stored (strings unchanged).
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise StoreError(path, "no such file")
    if path.is_dir():
        raise StoreError(path, "is a folder, not a result file")
    try:
        with xr.open_datatree(path, engine=_ENGINE) as opened:
            dt = opened.load().copy(deep=True)  # every value in memory before the file closes
    except Exception as exc:  # h5py / h5netcdf / xarray raise many types for a damaged file
        raise StoreError(path, "cannot be read as a result file (truncated, half-written or not "
                               f"netCDF): {_first_line(exc)}") from None
    have = {n.path.strip("/") for n in dt.subtree}
    missing = [g for g in required_groups if g.strip("/") not in have]
    if missing:
        raise StoreError(path, f"has no group {', '.join(missing)} (groups: "
                               f"{', '.join(sorted(h for h in have if h)) or 'none'})")
    stored = dt.attrs.get(CHECKSUM_ATTR)
    if stored is None:
        if require_checksum:
            raise StoreError(path, f"has no draws checksum ({CHECKSUM_ATTR}): not written by "
                                   "save_datatree; load_datatree(..., require_checksum=False) reads it unchecked")
        return dt
    actual = draws_checksum(dt)
    if str(stored) != actual:
        raise StoreError(path, f"draws do not match their checksum (stored {str(stored)[:12]}, "
                               f"found {actual[:12]}): the file was changed after it was saved")
    return dt


# --------------------------------------------------------------------------- tables in attributes


def _float_out(v: float):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v  # json writes repr(float): exact


def _float_in(v) -> float:
    return float(v)  # "nan", "inf", "-inf" or a JSON number


def _encode_object(v):
    if isinstance(v, str):
        return v
    if v is None:
        return {"t": "None"}
    if v is pd.NA:
        return {"t": "NA"}
    if v is pd.NaT:
        return {"t": "NaT"}
    if isinstance(v, (bool, np.bool_)):
        return {"t": "bool", "v": bool(v)}
    if isinstance(v, (int, np.integer)):
        return {"t": "int", "v": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"t": "float", "v": _float_out(float(v))}
    raise TypeError(f"cannot store a {type(v).__name__} ({v!r}) of an object column exactly")


def _decode_object(v):
    if isinstance(v, str):
        return v
    t = v["t"]
    return {"None": None, "NA": pd.NA, "NaT": pd.NaT}.get(t) if t in ("None", "NA", "NaT") else \
        {"bool": bool, "int": int, "float": _float_in}[t](v["v"])


def _encode_values(s: pd.Series) -> dict:
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cats = pd.Series(dt.categories)
        return {"kind": "category", "ordered": bool(dt.ordered), "categories": _encode_values(cats),
                "codes": s.cat.codes.astype(int).tolist()}
    if isinstance(dt, pd.StringDtype):
        return {"kind": "string", "storage": dt.storage, "na": "NA" if dt.na_value is pd.NA else "nan",
                "values": [None if pd.isna(v) else str(v) for v in s.tolist()]}
    if isinstance(dt, pd.BooleanDtype):
        return {"kind": "masked", "dtype": str(dt), "values": [None if v is pd.NA else bool(v) for v in s.tolist()]}
    if isinstance(dt, pd.api.extensions.ExtensionDtype) and dt.kind in "iuf" and hasattr(s.array, "_mask"):
        arr = s.array
        mask = np.asarray(arr._mask)
        data = np.asarray(arr._data)
        vals = [None if m else (_float_out(float(x)) if dt.kind == "f" else int(x)) for x, m in zip(data.tolist(), mask)]
        return {"kind": "masked", "dtype": str(dt), "values": vals}
    if isinstance(dt, np.dtype):
        k = dt.kind
        if k == "b":
            return {"kind": "numpy", "dtype": dt.str, "values": [bool(v) for v in s.tolist()]}
        if k in "iu":
            return {"kind": "numpy", "dtype": dt.str, "values": [int(v) for v in s.tolist()]}
        if k == "f":
            return {"kind": "numpy", "dtype": dt.str, "values": [_float_out(float(v)) for v in s.tolist()]}
        if k == "O":
            return {"kind": "object", "values": [_encode_object(v) for v in s.tolist()]}
    raise TypeError(f"cannot store column {s.name!r} of dtype {dt} exactly")


def _decode_values(e: dict, name) -> pd.Series:
    kind = e["kind"]
    if kind == "category":
        cats = _decode_values(e["categories"], None)
        dtype = pd.CategoricalDtype(pd.Index(cats), ordered=e["ordered"])
        return pd.Series(pd.Categorical.from_codes(e["codes"], dtype=dtype), name=name)
    if kind == "string":
        dtype = pd.StringDtype(storage=e["storage"], na_value=pd.NA if e["na"] == "NA" else np.nan)
        return pd.Series(e["values"], dtype=dtype, name=name)
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(e["dtype"])
        vals = e["values"]
        if dtype.kind == "f":
            data = np.array([0.0 if v is None else _float_in(v) for v in vals], dtype=dtype.numpy_dtype)
        elif dtype.kind == "b":
            data = np.array([False if v is None else v for v in vals], dtype=bool)
        else:
            data = np.array([0 if v is None else v for v in vals], dtype=dtype.numpy_dtype)
        mask = np.array([v is None for v in vals], dtype=bool)
        arr = (pd.arrays.BooleanArray(data, mask) if dtype.kind == "b"
               else pd.arrays.FloatingArray(data, mask) if dtype.kind == "f"
               else pd.arrays.IntegerArray(data, mask))
        return pd.Series(arr, name=name)
    if kind == "numpy":
        dtype = np.dtype(e["dtype"])
        vals = e["values"]
        data = np.array([_float_in(v) for v in vals] if dtype.kind == "f" else vals, dtype=dtype)
        return pd.Series(data, name=name, dtype=dtype)
    if kind == "object":
        return pd.Series([_decode_object(v) for v in e["values"]], name=name, dtype=object)
    raise ValueError(f"unknown column encoding {kind!r}")


def _json_safe(name: str, v):
    """attrs values: JSON types as they are; NumPy scalars as their Python value."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, dict):
        return {str(k): _json_safe(name, x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(name, x) for x in v]
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TypeError(f"attrs[{name!r}]: a non-finite float cannot be stored")
        return v
    raise TypeError(f"attrs[{name!r}]: a {type(v).__name__} cannot be stored")


def table_to_attr(df: pd.DataFrame) -> str:
    """A DataFrame as text for a netCDF attribute, read back exactly by :func:`table_from_attr`.

    JSON with each column's name, dtype and values (missing values marked by type, never guessed
    from text: a trial called ``'NA'`` stays the string ``'NA'``), the index (a RangeIndex or one
    level of values) and ``df.attrs`` (JSON values; NumPy scalars become Python numbers).
    Supported dtypes: NumPy bool/int/uint/float, object columns of str/None/NaN/NA/bool/int/float,
    pandas string (``str``/``string``), nullable integer/float/boolean, categoricals of these.
    Others (and a MultiIndex) raise ``TypeError``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"table_to_attr needs a DataFrame, got {type(df).__name__}")
    if isinstance(df.index, pd.MultiIndex) or isinstance(df.columns, pd.MultiIndex):
        raise TypeError("table_to_attr: a MultiIndex cannot be stored; reset_index() first")
    for c in df.columns:
        if not isinstance(c, (str, int)) or isinstance(c, bool):
            raise TypeError(f"table_to_attr: column names must be str or int, got {c!r}")
    columns = [{"name": c, "values": _encode_values(df.iloc[:, i])} for i, c in enumerate(df.columns)]
    idx = df.index
    if isinstance(idx, pd.RangeIndex):
        index = {"range": [idx.start, idx.stop, idx.step], "name": idx.name}
    else:
        index = {"values": _encode_values(pd.Series(idx)), "name": idx.name}
    doc = {"format": TABLE_FORMAT, "columns": columns, "index": index,
           "columns_dtype": str(df.columns.dtype), "attrs": _json_safe("attrs", dict(df.attrs))}
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def table_from_attr(text: str) -> pd.DataFrame:
    """The DataFrame written by :func:`table_to_attr` (same columns, dtypes, values, index, attrs).

    Raises ``ValueError`` (one line) for text that is not such a table (e.g. the CSV of an older
    result file: read that with ``pd.read_csv(..., keep_default_na=False)`` and accept its dtypes).
    """
    try:
        doc = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
        raise ValueError(f"not a table written by table_to_attr (no {TABLE_FORMAT!r} header)")
    series = [_decode_values(c["values"], c["name"]) for c in doc["columns"]]
    ix = doc["index"]
    if "range" in ix:
        index = pd.RangeIndex(*ix["range"], name=ix["name"])
    else:
        index = pd.Index(_decode_values(ix["values"], ix["name"]), name=ix["name"])
    df = pd.DataFrame({i: s.reset_index(drop=True) for i, s in enumerate(series)}, index=pd.RangeIndex(len(index)))
    if not series:
        df = pd.DataFrame(index=pd.RangeIndex(len(index)))
    df.columns = pd.Index([c["name"] for c in doc["columns"]], dtype=doc.get("columns_dtype"))
    df.index = index
    df.attrs = doc["attrs"]
    return df


# --------------------------------------------------------------------------- fast binary format (caches)

_ARRAYS_MAGIC = b"bayes_koa arrays v1\n"


def _attr_out(v):
    """An attribute value as typed JSON (read back by :func:`_attr_in` to the same type and value)."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biufU":
            raise TypeError(f"cannot store an attribute array of dtype {v.dtype}")
        return {"__nd__": v.dtype.str, "shape": list(v.shape), "v": [_attr_out(x) for x in v.ravel().tolist()]}
    if isinstance(v, np.generic):
        return {"__np__": v.dtype.str, "v": _attr_out(v.item())}
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}
    if isinstance(v, tuple):
        return {"__tuple__": [_attr_out(x) for x in v]}
    if isinstance(v, list):
        return [_attr_out(x) for x in v]
    if isinstance(v, dict):
        if any(k.startswith("__") for k in v if isinstance(k, str)) or not all(isinstance(k, str) for k in v):
            raise TypeError("cannot store a dict attribute with non-str or '__' keys")
        return {k: _attr_out(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    raise TypeError(f"cannot store an attribute of type {type(v).__name__}")


def _attr_in(v):
    if isinstance(v, list):
        return [_attr_in(x) for x in v]
    if isinstance(v, dict):
        if "__nd__" in v:
            return np.array([_attr_in(x) for x in v["v"]], dtype=np.dtype(v["__nd__"])).reshape(tuple(v["shape"]))
        if "__np__" in v:
            return np.dtype(v["__np__"]).type(_attr_in(v["v"]))
        if "__float__" in v:
            return float(v["__float__"])
        if "__tuple__" in v:
            return tuple(_attr_in(x) for x in v["__tuple__"])
        return {k: _attr_in(x) for k, x in v.items()}
    return v


def _plain_array(var) -> np.ndarray:
    """The values of a variable as a NumPy array of a fixed-width dtype (text: ``str``, missing -> "")."""
    a = np.asarray(var.values)
    if a.dtype.kind == "O":
        vals = a.ravel().tolist()
        if not all(_missing_text(x) or isinstance(x, str) for x in vals):
            raise TypeError("cannot store an object variable that is not text")
        a = np.array(["" if _missing_text(x) else x for x in vals], dtype=str).reshape(a.shape)
        if not a.size:
            a = a.astype("U1")
    if a.dtype.kind not in "biufcUMm":
        raise TypeError(f"cannot store values of dtype {a.dtype}")
    return np.array(a, order="C", copy=None)  # (np.ascontiguousarray would make a 0-d array 1-d)


def save_arrays(dt, path, extra_attrs: dict | None = None) -> Path:
    """Write ``dt`` to ``path`` in a fast uncompressed binary format, atomically, checksummed.

    For caches (:mod:`bayes_koa.inference.fit_cache`), where netCDF's write + verified read-back
    (about a second per file here) would cost more than the fit it saves. Layout: a magic line, the
    sha256 of everything after it, the length of a JSON header (groups, variables with dims, dtype,
    shape and byte offsets, typed attributes), the header, the raw arrays. The root attribute
    :data:`CHECKSUM_ATTR` holds :func:`draws_checksum` (as :func:`save_datatree`), verified by
    :func:`load_arrays` besides the file's own sha256. Written to a temporary file in the same
    folder, fsync'ed, then moved onto ``path`` with ``os.replace``: never half a file under the final
    name. Raises ``TypeError`` for content the format cannot hold exactly (nothing is written).
    """
    import xarray as xr

    if not isinstance(dt, xr.DataTree):
        raise TypeError(f"save_arrays needs an xarray.DataTree, got {type(dt).__name__}")
    path = Path(path)
    groups, chunks, offset = [], [], 0
    for node in sorted(dt.subtree, key=lambda n: n.path):
        ds = node.to_dataset(inherit=False)
        attrs = dict(node.attrs)
        if node.path == "/":
            attrs = {**attrs, **dict(extra_attrs or {}), FORMAT_ATTR: "bayes_koa.arrays/1",
                     CHECKSUM_ATTR: draws_checksum(dt)}
        entry = {"path": node.path, "attrs": _attr_out(attrs), "vars": []}
        for role, names in (("coord", list(map(str, ds.coords))), ("var", list(map(str, ds.data_vars)))):
            for name in names:
                var = ds[name].variable
                a = _plain_array(var)
                b = a.tobytes()
                entry["vars"].append({"name": name, "role": role, "dims": list(map(str, var.dims)),
                                      "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                                      "nbytes": len(b), "attrs": _attr_out(dict(var.attrs))})
                chunks.append(b)
                offset += len(b)
        groups.append(entry)
    header = json.dumps({"groups": groups}, ensure_ascii=False, allow_nan=False).encode("utf-8")
    body = len(header).to_bytes(8, "little") + header
    h = hashlib.sha256(body)
    for c in chunks:
        h.update(c)
    return write_bytes_atomic(path, [_ARRAYS_MAGIC + h.hexdigest().encode() + b"\n" + body, *chunks])


def write_bytes_atomic(path, chunks) -> Path:
    """Write the byte strings ``chunks`` to ``path`` atomically: a temporary file in the same folder,
    flushed and fsynced, then ``os.replace`` and an fsync of the folder. A crash leaves the old file (or
    none) and no temporary file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            for c in chunks:
                fh.write(c)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return path


def load_arrays(path):
    """Read a file written by :func:`save_arrays` into memory (a new ``xarray.DataTree``).

    Refused with a one-line :class:`StoreError`: no such file, not this format, a file whose bytes do
    not match their sha256 (truncated, changed), or draws that do not match :data:`CHECKSUM_ATTR`.
    """
    import xarray as xr

    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise StoreError(path, f"cannot be read: {_first_line(exc)}") from None
    if not blob.startswith(_ARRAYS_MAGIC):
        raise StoreError(path, "not a bayes_koa arrays file")
    head, sep, rest = blob[len(_ARRAYS_MAGIC):].partition(b"\n")
    if not sep or hashlib.sha256(rest).hexdigest().encode() != head:
        raise StoreError(path, "bytes do not match their sha256 (truncated or changed after it was written)")
    n = int.from_bytes(rest[:8], "little")
    doc = json.loads(rest[8:8 + n].decode("utf-8"))
    data = memoryview(rest)[8 + n:]
    nodes = {}
    for g in doc["groups"]:
        coords, data_vars = {}, {}
        for v in g["vars"]:
            a = np.frombuffer(data[v["offset"]:v["offset"] + v["nbytes"]], dtype=np.dtype(v["dtype"]))
            a = a.reshape(tuple(v["shape"])).copy()
            (coords if v["role"] == "coord" else data_vars)[v["name"]] = xr.Variable(v["dims"], a, _attr_in(v["attrs"]))
        nodes[g["path"]] = xr.Dataset(data_vars, coords=coords, attrs=_attr_in(g["attrs"]))
    dt = xr.DataTree.from_dict(nodes)
    stored = dt.attrs.get(CHECKSUM_ATTR)
    actual = draws_checksum(dt)
    if str(stored) != actual:
        raise StoreError(path, f"draws do not match their checksum (stored {str(stored)[:12]}, found {actual[:12]})")
    return dt

"""Issue 10 (C): atomic, verified saves (``bayes_koa.inference.store``).

The DataTrees here are built by hand in the layout PyMC writes (posterior, sample_stats with
bool / unsigned / object statistics, observed_data), so no sampler is needed; the references are
the arrays and strings put in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_koa.data import DataValidationWarning
from bayes_koa.effects.table import effect_sizes
from bayes_koa.inference import store
from bayes_koa.inference.store import (
    CHECKSUM_ATTR,
    StoreError,
    draws_checksum,
    load_datatree,
    save_datatree,
    table_from_attr,
    table_to_attr,
)

ROOT = Path(__file__).resolve().parents[2]

STRINGS = {  # attribute values that must come back exactly
    "na": "NA", "empty": "", "padded": "  NA  ", "lines": "a\nb\r\nc", "unicode": "µ ± → ≤ 日本",
    "json": '{"tau": "HalfNormal(sigma=0.3)", "from": "call"}', "number_text": "1e-3",
    "long": "x" * 200_000,
}


def tree(seed=1, groups=("posterior", "sample_stats", "observed_data")):
    rng = np.random.default_rng(seed)
    trials = ["NA", "Vega_2015", "Lamo Espinosa"]
    nodes = {"/": xr.Dataset(attrs={"created_at": "2026-11-01T00:00:00", "inference_library": "pymc"})}
    if "posterior" in groups:
        nodes["posterior"] = xr.Dataset(
            {"mu": (("chain", "draw"), rng.normal(size=(2, 50))),
             "theta": (("chain", "draw", "trial"), rng.normal(size=(2, 50, 3)).astype("float32"))},
            coords={"chain": [0, 1], "draw": np.arange(50), "trial": np.array(trials, dtype=object)},
            attrs={"sampling_time": 0.25})
    if "sample_stats" in groups:
        msg = np.full((2, 50), None, dtype=object)
        msg[1, 7] = "Energy change in leapfrog step is too large: 1532.2"
        nodes["sample_stats"] = xr.Dataset(
            {"diverging": (("chain", "draw"), rng.random((2, 50)) < 0.02),
             "depth": (("chain", "draw"), rng.integers(1, 6, (2, 50)).astype("uint64")),
             "divergence_message": (("chain", "draw"), msg)},
            coords={"chain": [0, 1], "draw": np.arange(50)})
    if "observed_data" in groups:
        nodes["observed_data"] = xr.Dataset({"y": (("trial",), np.array([-1.5, np.nan, 2.0]))},
                                            coords={"trial": trials})
    return xr.DataTree.from_dict(nodes)


def _same_values(a: xr.DataTree, b: xr.DataTree) -> None:
    assert [n.path for n in a.subtree] == [n.path for n in b.subtree]
    for node in a.subtree:
        x, y = node.to_dataset(inherit=False), b[node.path].to_dataset(inherit=False)
        assert sorted(x.variables) == sorted(y.variables)
        for k in x.variables:
            u, v = x[k].values, y[k].values
            if k == "divergence_message":  # text: None (NaN once in xarray) is stored as ""
                u = np.array(["" if x is None or x != x else x for x in u.ravel()]).reshape(u.shape)
            if u.dtype.kind in "OU":
                assert u.astype(str).tolist() == v.astype(str).tolist(), k
            else:
                assert u.dtype == v.dtype, k
                np.testing.assert_array_equal(u, v, err_msg=k)


def test_round_trip_keeps_draws_labels_and_strings_exactly(tmp_path):
    dt = tree()
    before = draws_checksum(dt)
    path = save_datatree(dt, tmp_path / "fit.nc", STRINGS)
    assert path == tmp_path / "fit.nc" and sorted(os.listdir(tmp_path)) == ["fit.nc"]
    back = load_datatree(path)
    _same_values(dt, back)
    for k, v in STRINGS.items():
        assert back.attrs[k] == v and type(back.attrs[k]) is str, k
    assert back.attrs["created_at"] == "2026-11-01T00:00:00"
    assert back["posterior"].attrs["sampling_time"] == 0.25
    assert back.attrs[CHECKSUM_ATTR] == before == draws_checksum(back)
    assert list(back["posterior"]["trial"].values) == ["NA", "Vega_2015", "Lamo Espinosa"]
    assert CHECKSUM_ATTR not in dt.attrs  # the tree given is not changed


def test_checksum_sees_any_changed_draw_label_or_order():
    dt = tree()
    ref = draws_checksum(dt)
    assert draws_checksum(tree()) == ref  # deterministic
    changed = dt.copy(deep=True)
    changed["posterior"]["mu"].values[1, 49] += 1e-12
    assert draws_checksum(changed) != ref
    relabelled = dt.copy(deep=True)
    relabelled["posterior"] = relabelled["posterior"].to_dataset().assign_coords(trial=["NA", "Vega_2015", "X"])
    assert draws_checksum(relabelled) != ref
    transposed = dt.copy(deep=True)
    transposed["posterior"] = transposed["posterior"].to_dataset().transpose("draw", "chain", "trial")
    assert draws_checksum(transposed) != ref


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are listed from /proc (Linux)")
def test_load_closes_the_file_so_the_same_path_can_be_written(tmp_path):
    path = save_datatree(tree(), tmp_path / "fit.nc", {"run": "1"})
    dt = load_datatree(path)
    open_paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    assert str(path) not in open_paths
    dt.to_netcdf(path, engine="h5netcdf")  # in place: HDF5 refuses this while the file is open
    back = load_datatree(path)  # the checksum attribute travelled with the tree
    save_datatree(back, path, {"run": "2"})
    assert load_datatree(path).attrs["run"] == "2"
    # the values of a loaded tree stay usable after the file is gone
    os.remove(path)
    assert float(back["posterior"]["mu"].values.sum()) == pytest.approx(float(tree()["posterior"]["mu"].values.sum()))


def test_altered_draws_are_refused(tmp_path):
    path = save_datatree(tree(), tmp_path / "fit.nc", {})
    with h5py.File(path, "r+") as f:
        f["posterior/mu"][0, 3] = f["posterior/mu"][0, 3] + 0.5
    with pytest.raises(StoreError) as info:
        load_datatree(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: draws do not match their checksum")
    assert msg.endswith("the file was changed after it was saved")


def test_missing_groups_half_files_and_foreign_files_are_refused(tmp_path):
    path = save_datatree(tree(groups=("posterior",)), tmp_path / "post_only.nc", {})
    with pytest.raises(StoreError, match=r"post_only\.nc: has no group sample_stats \(groups: posterior\)$"):
        load_datatree(path)
    assert list(load_datatree(path, required_groups=("posterior",)).children) == ["posterior"]
    full = save_datatree(tree(), tmp_path / "fit.nc", {})
    raw = full.read_bytes()
    half = tmp_path / "half.nc"
    half.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StoreError) as info:
        load_datatree(half)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{half}: cannot be read as a result file (truncated, half-written")
    csv = tmp_path / "effects.csv"
    csv.write_text("trial_id,yi\nA,1\n")
    with pytest.raises(StoreError, match="cannot be read as a result file"):
        load_datatree(csv)
    with pytest.raises(StoreError, match="no such file"):
        load_datatree(tmp_path / "nothing.nc")
    with pytest.raises(StoreError, match="is a folder"):
        load_datatree(tmp_path)
    plain = tmp_path / "plain.nc"
    tree().to_netcdf(plain, engine="h5netcdf")
    with pytest.raises(StoreError, match="has no draws checksum"):
        load_datatree(plain)
    assert "posterior" in load_datatree(plain, require_checksum=False).children


def test_a_crash_mid_write_leaves_the_old_file_and_no_half_file(tmp_path, monkeypatch):
    path = save_datatree(tree(seed=1), tmp_path / "fit.nc", {"run": "old"})
    old_bytes = path.read_bytes()

    def crash(dt, target):  # write half of a real file, then fail as a killed process would
        full = tmp_path / "scratch" / "full.nc"
        full.parent.mkdir(exist_ok=True)
        dt.to_netcdf(full, engine="h5netcdf")
        data = full.read_bytes()
        Path(target).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt("simulated kill in the middle of writing")

    monkeypatch.setattr(store, "_write_netcdf", crash)
    with pytest.raises(KeyboardInterrupt):
        save_datatree(tree(seed=2), path, {"run": "new"})
    assert path.read_bytes() == old_bytes  # untouched
    assert load_datatree(path).attrs["run"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc", "scratch"]  # no .part left
    # a first save that crashes leaves nothing under the final name
    with pytest.raises(KeyboardInterrupt):
        save_datatree(tree(), tmp_path / "new.nc", {})
    assert not (tmp_path / "new.nc").exists()
    # a writer error is one line and also leaves the old file
    monkeypatch.setattr(store, "_write_netcdf", lambda dt, target: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(StoreError, match=r"fit\.nc: not saved: OSError: disk full$"):
        save_datatree(tree(seed=3), path, {})
    assert path.read_bytes() == old_bytes


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_real_kill_mid_write_leaves_the_old_file(tmp_path):
    """SIGKILL a process that is half-way through writing: no cleanup code runs at all."""
    path = save_datatree(tree(seed=1), tmp_path / "fit.nc", {"run": "old"})
    old_bytes = path.read_bytes()
    flag = tmp_path / "half_written"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from bayes_koa.inference import store
        from test_validation_store import tree
        def slow(dt, target):
            dt.to_netcdf(Path({str(tmp_path)!r}) / "scratch.nc", engine="h5netcdf")
            data = (Path({str(tmp_path)!r}) / "scratch.nc").read_bytes()
            with open(target, "wb") as fh:
                fh.write(data[: len(data) // 2]); fh.flush()
                Path({str(flag)!r}).touch()
                time.sleep(60)
        store._write_netcdf = slow
        store.save_datatree(tree(seed=2), {str(path)!r}, {{"run": "new"}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never reached the middle of the write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == old_bytes
    assert load_datatree(path).attrs["run"] == "old"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".fit.nc.")  # hidden, never the final name


def test_strings_the_format_cannot_hold_are_refused_not_altered(tmp_path):
    path = save_datatree(tree(), tmp_path / "fit.nc", {"run": "old"})
    with pytest.raises(StoreError) as info:
        save_datatree(tree(), path, {"note": "a\x00b"})
    assert "\n" not in str(info.value) and "not saved" in str(info.value)
    assert load_datatree(path).attrs["run"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]
    with pytest.raises(TypeError):
        save_datatree(tree(), path, {"flag": True})


# --------------------------------------------------------------------------- tables in attributes


def _effects_with_na_trial():
    t = pd.DataFrame([{"trial_id": "NA", "arm_id": a, "arm_role": a, "n_randomized": 20, "cell_source": "BM",
                       "origin": "autologous", "in_scope": "yes", "control_type": "placebo" if a == "control" else "",
                       "cells_per_injection": 4e7 if a == "msc" else None, "n_injections": 1}
                      for a in ("msc", "control")])
    o = pd.DataFrame([{"trial_id": "NA", "arm_id": a, "outcome": "VAS", "scale_min": 0, "scale_max": 100,
                       "time_months": 6, "value_type": "final", "mean": m, "sd": 10.0, "stat_reported": "mean_sd"}
                      for a, m in (("msc", 40.0), ("control", 50.0))])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataValidationWarning)
        return effect_sizes((t, o), measure="MD")


def test_a_trial_called_na_survives_save_and_load(tmp_path):
    eff = _effects_with_na_trial()
    assert eff["trial_id"].tolist() == ["NA"] and eff["yi"].tolist() == [-10.0]
    # what result files did until now: CSV in an attribute, read back with default NA parsing
    import io
    assert pd.read_csv(io.StringIO(eff.to_csv(index=False)))["trial_id"].isna().all()
    # table_to_attr / table_from_attr through a saved file
    path = save_datatree(tree(), tmp_path / "fit.nc", {"bayes_koa_effects": table_to_attr(eff)})
    back = table_from_attr(load_datatree(path).attrs["bayes_koa_effects"])
    pd.testing.assert_frame_equal(back, eff, check_exact=True)
    assert back["trial_id"].tolist() == ["NA"] and back.attrs == eff.attrs
    assert dict(back.dtypes) == dict(eff.dtypes)


def test_table_round_trip_of_every_supported_dtype():
    df = pd.DataFrame({
        "text": pd.Series(["NA", "", None, " x "], dtype="str"),
        "string": pd.Series(["NA", None, "N/A", "nan"], dtype="string"),
        "obj": pd.Series(["NA", None, np.nan, True], dtype=object),
        "f": [1.0, np.nan, -0.0, np.inf],
        "f32": np.array([0.1, 2.5, -1.0, 3.0], dtype="float32"),
        "i": np.array([1, -2, 2**62, 0], dtype="int64"),
        "u": np.array([1, 2, 3, 2**63], dtype="uint64"),
        "b": [True, False, True, False],
        "I": pd.array([1, None, 3, 4], dtype="Int64"),
        "F": pd.array([0.5, None, 1.5, 2.0], dtype="Float64"),
        "B": pd.array([True, None, False, True], dtype="boolean"),
        "cat": pd.Categorical(["BM", "UC", "BM", None], categories=["UC", "BM", "AD"], ordered=True),
        7: [1, 2, 3, 4],
    }, index=pd.Index(["a", "b", "NA", "d"], name="row"))
    df.attrs = {"source": "NA", "n": 3, "nested": {"x": [1, 2.5, None]}}
    back = table_from_attr(table_to_attr(df))
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back.attrs == df.attrs and np.signbit(back["f"].iloc[2])
    empty = pd.DataFrame({"trial_id": pd.Series([], dtype="str"), "yi": pd.Series([], dtype="float64")})
    pd.testing.assert_frame_equal(table_from_attr(table_to_attr(empty)), empty)


def test_tables_that_cannot_be_kept_exactly_are_refused():
    with pytest.raises(TypeError, match="dtype datetime64"):
        table_to_attr(pd.DataFrame({"when": pd.to_datetime(["2026-01-01"])}))
    with pytest.raises(TypeError, match="MultiIndex"):
        table_to_attr(pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([(1, 2)])))
    with pytest.raises(ValueError, match="not a table written by table_to_attr"):
        table_from_attr("trial_id,yi\nNA,1\n")

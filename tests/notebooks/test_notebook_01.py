import pytest

from .run import run_notebook


@pytest.mark.notebook
def test_notebook_runs(tmp_path):
    run_notebook("01_msc_koa_meta_analysis.ipynb", tmp_path)

import pytest

from .run import run_notebook


@pytest.mark.notebook
def test_notebook_runs(tmp_path):
    run_notebook("03_real_thin_data.ipynb", tmp_path)

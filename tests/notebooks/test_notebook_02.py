import pytest

from .run import run_notebook


@pytest.mark.notebook
def test_notebook_runs(tmp_path):
    run_notebook("02_prior_sensitivity.ipynb", tmp_path)

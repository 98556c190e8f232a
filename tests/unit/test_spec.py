import shutil

import pytest

from bayes_koa.spec.priors import PriorError
from bayes_koa.kinds.univariate import DEFAULT_PRIORS
from bayes_koa.spec import SpecError, list_models
from bayes_koa.kinds import load_spec


def test_shipped_models():
    assert {"fixed_effect", "random_effects", "source_hierarchical", "source_origin"} <= set(list_models())


def test_precedence_argument_over_file_over_default():
    spec = load_spec("source_origin", priors={"tau": "HalfCauchy(beta=0.3)"}, measure="SMD")
    pri = spec.prior_dict
    assert str(pri["tau"]) == "HalfCauchy(beta=0.3)" and pri["tau"].origin == "argument"
    assert str(pri["sigma_origin"]) == "HalfNormal(sigma=0.25)"
    assert pri["sigma_origin"].origin == "model file source_origin.toml"
    # random_effects.toml has no priors: they come from the package defaults
    re = load_spec("random_effects", measure="MD").prior_dict
    assert str(re["tau"]) == DEFAULT_PRIORS["MD"]["tau"] and re["tau"].origin == "package default (MD)"


def test_priors_table_lists_every_parameter_with_its_origin():
    t = load_spec("source_hierarchical").priors_table()
    assert list(t["parameter"]) == ["mu", "tau", "sigma_source"]
    assert set(t.columns) == {"parameter", "prior", "from"}


def test_unknown_model_and_parameter_errors():
    with pytest.raises(SpecError, match="unknown model 'nope'; known models: .*source_hierarchical"):
        load_spec("nope")
    with pytest.raises(PriorError, match="has no parameter 'sigma_origin'"):
        load_spec("source_hierarchical", priors={"sigma_origin": "HalfNormal(sigma=1)"})
    with pytest.raises(PriorError, match="must be on positive values"):
        load_spec("random_effects", priors={"tau": "Normal(mu=0, sigma=1)"})


def test_unknown_measure_without_priors_is_an_error_not_a_guess():
    with pytest.raises(PriorError, match="no prior for 'mu' on the 'default' scale"):
        load_spec("random_effects", measure=None)


def test_user_can_copy_and_edit_a_model_file(tmp_path):
    from bayes_koa.spec import models_dir

    mine = tmp_path / "my_model.toml"
    shutil.copy(models_dir() / "source_hierarchical.toml", mine)
    mine.write_text(mine.read_text().replace('between_trial_sd = "shared"', 'between_trial_sd = "per_source"')
                    .replace('tau = "HalfNormal(sigma=0.5)"', 'tau = "HalfNormal(sigma=0.2)"'))
    spec = load_spec(mine)
    assert spec.get("between_trial_sd") == "per_source" and str(spec.prior_dict["tau"]) == "HalfNormal(sigma=0.2)"
    assert spec.file_hash != load_spec("source_hierarchical").file_hash


def test_structure_key_ignores_prior_values_but_not_families():
    a = load_spec("random_effects", priors={"tau": "HalfNormal(sigma=1)"})
    b = load_spec("random_effects", priors={"tau": "HalfNormal(sigma=3)"})
    c = load_spec("random_effects", priors={"tau": "HalfCauchy(beta=1)"})
    assert a.structure_key() == b.structure_key() != c.structure_key()


def test_bad_model_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('schema_version = 1\n[structure]\nkind = "hierarchical"\nlevels = ["origin"]\n')
    with pytest.raises(SpecError, match="levels must be"):
        load_spec(f)
    f.write_text('schema_version = 2\n')
    with pytest.raises(SpecError, match="schema_version must be 1"):
        load_spec(f)


def test_unknown_structure_key_is_an_error(tmp_path):
    f = tmp_path / "typo.toml"
    f.write_text('schema_version = 1\n[structure]\nkind = "random"\nbetween_trail_sd = "shared"\n')
    with pytest.raises(SpecError, match=r"unknown structure key 'between_trail_sd'.*did you mean 'between_trial_sd'"):
        load_spec(f)


def test_unknown_kind_lists_the_known_ones(tmp_path):
    f = tmp_path / "k.toml"
    f.write_text('schema_version = 1\n[structure]\nkind = "survival"\n')  # ("network" is a kind now)
    with pytest.raises(SpecError, match="structure.kind must be one of .*'network'"):
        load_spec(f)

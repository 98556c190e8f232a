"""Where model files live: the one place the package looks for ``models/``.

``models/`` sits at the top of a checkout (one declarative TOML file per model, ``models/priors/``
for the named prior sets) and is shipped inside the wheel as ``bayes_koa/models``. An installed
wheel has the shipped copy; an editable checkout has only the top-level folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["models_dir", "list_models", "model_path", "MEASURES", "SpecError"]


class SpecError(ValueError):
    """A model file or a model name that cannot be used."""

# Effect measures the package knows (priors tables in model files are keyed by these, or "default")
MEASURES = ("MD", "SMD", "logOR", "logRR", "default")


def models_dir() -> Path:
    """The folder holding the model files: ``bayes_koa/models`` in a wheel, ``models/`` in a checkout."""
    shipped = Path(str(resources.files("bayes_koa"))) / "models"
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("model files not found: neither bayes_koa/models nor the checkout's models/ exists")


def list_models() -> list[str]:
    """Names of the shipped model files (``bk.fit(..., model=name)``)."""
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def model_path(model: str | Path) -> Path:
    """The file of a model name from :func:`list_models`, or ``model`` itself when it is a .toml path."""
    path = Path(model)
    if path.suffix == ".toml":
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist")
        return path
    path = models_dir() / f"{model}.toml"
    if not path.exists():
        raise SpecError(f"unknown model {str(model)!r}; known models: {', '.join(list_models())} "
                        f"(or pass the path of a .toml model file)")
    return path

"""Example configs shipped with meanfield (``meanfield example`` lists and copies them).

    import meanfield
    meanfield.run(meanfield.example("linear"), "linear.h5")
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ConfigError

def names() -> list[str]:
    """Names of the shipped example configs (without .toml), sorted."""
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))


def sweep_names() -> list[str]:
    """Names of the shipped example sweep files (``meanfield sweep``), sorted."""
    return sorted(p.name[:-5] for p in (resources.files(__package__) / "sweeps").iterdir() if p.name.endswith(".toml"))


def control_names() -> list[str]:
    """Names of the shipped example control files (``meanfield control``), sorted."""
    return sorted(p.name[:-5] for p in (resources.files(__package__) / "control").iterdir() if p.name.endswith(".toml"))


def example(name: str) -> Path:
    """The path of a shipped example config, sweep file or control file, to read or run as is.

    Parameters
    ----------
    name : str
        An example's name (``"linear"``, ``"clustering"``, ...; ``meanfield example`` lists them).

    Returns
    -------
    pathlib.Path
        The TOML file inside the installed package.

    Raises
    ------
    meanfield.errors.ConfigError
        For a name that is not shipped (the line lists those that are).
    """
    stem = name[:-5] if name.endswith(".toml") else name
    if stem in names():
        return Path(str(resources.files(__package__) / f"{stem}.toml"))
    if stem in sweep_names():
        return Path(str(resources.files(__package__) / "sweeps" / f"{stem}.toml"))
    if stem in control_names():
        return Path(str(resources.files(__package__) / "control" / f"{stem}.toml"))
    raise ConfigError(f"example: got {name!r}, allowed: " + " | ".join(names() + sweep_names() + control_names())
                      + " (or 'all')")


def summary(name: str) -> str:
    """The first line of the example's leading comment."""
    for line in example(name).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""

"""What `pip install toolkit` (a wheel, not this editable checkout) holds: every Python package of the repository."""

import tomllib
from conftest import ROOT

FOLDERS = {"toolkit": "toolkit", "apps": "toolkit.apps", "recipes": "toolkit.recipes"}


def test_every_package_folder_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"

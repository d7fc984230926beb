"""``py.typed`` ships with the package (PEP 561), so type checkers read snagkg's annotations (issue 35)."""
from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path


def test_py_typed_is_installed():
    marker = resources.files("snagkg").joinpath("py.typed")
    assert marker.is_file()


def test_py_typed_is_package_data_of_the_wheel():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["snagkg"]

"""The hand-written package list in pyproject.toml must cover every package directory."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def test_every_package_directory_is_declared():
    packages, package_dir = _declared()
    found = set()
    for prefix, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    # a mapped sub-package is found twice (under hfrisk/ and under its own folder): same name
    assert found <= packages, f"add to [tool.setuptools] packages: {sorted(found - packages)}"
    for name in packages:
        assert any(name == p or name.startswith(p + ".") for p in package_dir), name


def test_layout_the_user_asked_for_exists():
    for path in ["pyproject.toml", "model", "training", "stream", "triton_models", "tests", "dashboards",
                 "docker-compose.yml", "README.md", ".ci/run"]:
        assert (ROOT / path).exists(), path


def test_installed_packages_resolve_to_the_repo():
    import hfrisk.model
    import hfrisk.stream
    import hfrisk.training

    assert Path(hfrisk.model.__file__).parent == ROOT / "model"
    assert Path(hfrisk.training.__file__).parent == ROOT / "training"
    assert Path(hfrisk.stream.__file__).parent == ROOT / "stream"

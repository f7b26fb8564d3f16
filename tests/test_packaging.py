"""pyproject.toml and environment.yml describe the same environment.

pip users get `pip install -e '.[dev]'` (what `make` does); conda and Binder
users get environment.yml. These tests fail, naming the package, as soon as
the two lists drift apart: a package in one but not the other, or a different
lower bound. They also check the nbval sanitize file, whose format nbval reads
silently: a malformed line is simply ignored.
"""

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from rattler import MatchSpec

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
BINDER = ROOT / "binder" / "environment.yml"
SANITIZE = ROOT / "tests" / "nbval-sanitize.cfg"          # a link to the package's file
PACKAGE_SANITIZE = ROOT / "mailkit" / "labs" / "nbval-sanitize.cfg"

# Conda packages that the environment needs but pip does not list as extras.
CONDA_ONLY = {"python", "pip"}
PROJECT = "mailkit"


def normalize(name: str) -> str:
    """PEP 503 name: case and runs of - _ . do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lower_bound(spec: str, where: str) -> Version:
    """The version after `>=` in a spec such as ">=8.1" or ">=8.1,<9".

    Exactly one `>=` is expected: the project states lower bounds only.
    """
    bounds = [part.strip()[2:] for part in spec.split(",") if part.strip().startswith(">=")]
    assert len(bounds) == 1, f"{where}: expected exactly one '>=' lower bound, got {spec!r}"
    return Version(bounds[0])


def load_pyproject() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def load_environment(path: Path = ENVIRONMENT) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


def pip_requirements(extra: str) -> dict[str, Requirement]:
    """The requirements of one extra, by normalized name, with a reference
    to mailkit's own extras (``mailkit[notebooks,labs]``) expanded as pip
    expands it."""
    extras = load_pyproject()["project"]["optional-dependencies"]
    assert extra in extras, f"pyproject.toml has no [project.optional-dependencies] {extra!r}"
    reqs: dict[str, Requirement] = {}
    listed: set[str] = set()
    for line in extras[extra]:
        req = Requirement(line)
        if normalize(req.name) == PROJECT:
            assert req.extras and extra not in req.extras, (
                f"pyproject.toml extra {extra!r}: {line!r} must name other extras, not itself"
            )
            parts = [pip_requirements(sub) for sub in sorted(req.extras)]
        else:
            name = normalize(req.name)
            assert name not in listed, f"pyproject.toml extra {extra!r} lists {req.name!r} twice"
            listed.add(name)
            parts = [{name: req}]
        for part in parts:
            for name, r in part.items():
                assert str(reqs.setdefault(name, r)) == str(r), (
                    f"pyproject.toml extra {extra!r}: {name!r} is {str(reqs[name])!r} in one place "
                    f"and {str(r)!r} in another"
                )
    return reqs


def conda_specs(path: Path = ENVIRONMENT) -> dict[str, MatchSpec]:
    """The conda dependencies of environment.yml (not the pip: section), by normalized name."""
    specs: dict[str, MatchSpec] = {}
    for dep in load_environment(path)["dependencies"]:
        if isinstance(dep, dict):  # the pip: section
            continue
        spec = MatchSpec(dep, strict=True)
        name = normalize(spec.name.normalized)
        assert name not in specs, f"{path.name} lists {name!r} twice"
        specs[name] = spec
    return specs


def test_core_has_no_runtime_dependencies():
    deps = load_pyproject()["project"].get("dependencies", [])
    assert deps == [], f"mailkit's core is stdlib only, but [project] dependencies lists {deps}"


def test_dev_extra_is_notebooks_plus_labs_plus_test_named_once():
    """dev names the other extras instead of copying them, so it cannot drift."""
    extras = load_pyproject()["project"]["optional-dependencies"]
    assert [Requirement(line).name for line in extras["dev"]] == [PROJECT], (
        f"the dev extra should be one reference to mailkit's other extras, got {extras['dev']}"
    )
    named = set().union(*(Requirement(line).extras for line in extras["dev"]))
    assert named == set(extras) - {"dev"}, f"dev names {sorted(named)}, the other extras are {sorted(set(extras) - {'dev'})}"
    dev = pip_requirements("dev")
    parts = pip_requirements("notebooks") | pip_requirements("labs") | pip_requirements("test")
    assert dev == parts


def test_a_self_reference_is_expanded(tmp_path, monkeypatch):
    """pip_requirements reads a reference to mailkit's own extras as pip does:
    the union of those extras, a package listed in two of them once."""
    monkeypatch.setattr(sys.modules[__name__], "load_pyproject", lambda: {"project": {"optional-dependencies": {
        "a": ["pytest>=8", "tqdm>=4.66"], "b": ["pytest>=8", "pyyaml>=6"], "all": ["mailkit[a,b]"],
        "clash": ["mailkit[a]", "pytest>=7"], "loop": ["mailkit[loop]"],
    }}})
    assert {n: str(r) for n, r in pip_requirements("all").items()} == {
        "pytest": "pytest>=8", "tqdm": "tqdm>=4.66", "pyyaml": "pyyaml>=6"}
    with pytest.raises(AssertionError, match="'pytest' is 'pytest>=8' in one place"):
        pip_requirements("clash")
    with pytest.raises(AssertionError, match="must name other extras"):
        pip_requirements("loop")


def test_environment_is_conda_forge_and_installs_mailkit():
    env = load_environment()
    assert env["name"] == "mailkit"
    assert env["channels"] == ["conda-forge"], f"channels should be conda-forge only, got {env['channels']}"
    pip_sections = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert pip_sections == [["-e ."]], (
        f"environment.yml should have one pip: section that is just '-e .', got {pip_sections}"
    )
    assert "pip" in conda_specs(), "environment.yml has a pip: section but does not install pip"


def test_same_packages_in_dev_extra_and_environment():
    pip_names = set(pip_requirements("dev"))
    conda_names = set(conda_specs()) - CONDA_ONLY
    missing = sorted(pip_names - conda_names)
    extra = sorted(conda_names - pip_names)
    assert not missing and not extra, (
        f"in pyproject.toml's dev extra but not in environment.yml: {missing}; "
        f"in environment.yml but not in pyproject.toml's dev extra: {extra}"
    )


def test_same_lower_bounds_in_dev_extra_and_environment():
    conda = conda_specs()
    wrong = []
    for name, req in sorted(pip_requirements("dev").items()):
        if name not in conda:
            continue  # reported by test_same_packages_in_dev_extra_and_environment
        assert not req.marker and not req.extras and not req.url, (
            f"{name!r}: keep pyproject's dev extra to plain 'name>=version' (got {str(req)!r})"
        )
        pip_bound = lower_bound(str(req.specifier), f"pyproject.toml {name!r}")
        conda_version = conda[name].version
        assert conda_version, f"environment.yml {name!r}: no version bound, pyproject says {str(req.specifier)!r}"
        conda_bound = lower_bound(conda_version, f"environment.yml {name!r}")
        if pip_bound != conda_bound:
            wrong.append(f"{name}: pyproject.toml >={pip_bound}, environment.yml >={conda_bound}")
    assert not wrong, "lower bounds differ:\n" + "\n".join(wrong)


def test_python_bound_matches_requires_python():
    requires = load_pyproject()["project"]["requires-python"]
    pip_bound = lower_bound(str(SpecifierSet(requires)), "pyproject.toml requires-python")
    python = conda_specs().get("python")
    assert python is not None and python.version, "environment.yml should list python with a lower bound"
    conda_bound = lower_bound(python.version, "environment.yml python")
    assert pip_bound == conda_bound, (
        f"python: pyproject.toml requires-python >={pip_bound}, environment.yml python >={conda_bound}"
    )


# Binder: the students' environment, the notebooks and labs extras without the test tools.

def test_binder_environment_is_notebooks_plus_labs_without_test_tools():
    student = pip_requirements("notebooks") | pip_requirements("labs")
    binder = conda_specs(BINDER)
    names = set(binder) - CONDA_ONLY
    assert names == set(student), (
        f"binder/environment.yml lacks {sorted(set(student) - names)} and should not have "
        f"{sorted(names - set(student))} (it is the notebooks and labs extras of pyproject.toml)"
    )
    test_only = set(pip_requirements("test")) - set(student)
    assert {"playwright", "py-rattler"} <= test_only and not names & test_only
    for name, req in sorted(student.items()):
        assert lower_bound(binder[name].version or "", f"binder/environment.yml {name!r}") == \
            lower_bound(str(req.specifier), f"pyproject.toml {name!r}"), f"{name}: lower bounds differ"
    assert binder["python"].version == conda_specs()["python"].version
    env = load_environment(BINDER)
    assert env["channels"] == ["conda-forge"]
    assert not [dep for dep in env["dependencies"] if isinstance(dep, dict)], \
        "binder/postBuild installs mailkit; a pip: section would install it before the repository is there"
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    assert "pip install --no-deps -e ." in post_build.read_text()


# The sanitize file, read the way nbval reads it.

def sanitize_pairs() -> list[tuple[str, str]]:
    from nbval.plugin import get_sanitize_patterns

    return get_sanitize_patterns(SANITIZE.read_text())


def test_one_sanitize_file_shipped_in_the_package():
    """`make test` (through tests/nbval-sanitize.cfg) and mailkit.labs read
    the same file, and a wheel carries it."""
    from mailkit.labs.sanitize import SANITIZE_CFG

    assert SANITIZE.resolve() == PACKAGE_SANITIZE.resolve()
    assert f"--nbval-sanitize-with {SANITIZE.relative_to(ROOT)}" in (ROOT / "Makefile").read_text()
    assert SANITIZE_CFG == PACKAGE_SANITIZE.read_text()
    package_data = load_pyproject()["tool"]["setuptools"]["package-data"]
    assert PACKAGE_SANITIZE.name in package_data["mailkit.labs"]


def test_sanitize_file_every_line_is_read():
    pattern_lines = [
        line for line in SANITIZE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pairs = sanitize_pairs()
    assert len(pattern_lines) == 2 * len(pairs), (
        "nbval ignores lines that are not 'regex: ...' directly followed by 'replace: ...' "
        f"(one space after each colon); it read {len(pairs)} pairs from {len(pattern_lines)} lines"
    )
    for regex, _ in pairs:
        re.compile(regex)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("listening on 127.0.0.1:54321", "listening on 127.0.0.1:PORT"),
        ("('127.0.0.1', 54321)", "('127.0.0.1', PORT)"),
        ("server on port 43210", "server on port PORT"),
        ("bind to port 0 and the OS picks one", "bind to port 0 and the OS picks one"),
        ("session 4821937560 opened", "session SESSIONID opened"),
        ("at 2024-11-25 12:26:01 UTC", "at TIME"),
        ("at 2024-11-25T12:26:01.123456+00:00", "at TIME"),
        ("at 2024-11-25T12:26:01Z", "at TIME"),
        ("took 12.3 ms, then 7 ms", "took N ms, then N ms"),
        ("OK 3 frames, checksum 0x1f", "OK 3 frames, checksum 0x1f"),
    ],
)
def test_sanitize_masks_only_what_varies(text, expected):
    for regex, replace in sanitize_pairs():
        text = re.sub(regex, replace, text)
    assert text == expected

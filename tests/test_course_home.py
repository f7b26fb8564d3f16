"""What a newcomer meets first: `make lab`'s home page, the README's terminal
commands and the --help texts.

index.ipynb must reach every notebook, every lab (as its student version in
assignments/, never the source in labs/, which holds the solutions) and every
doc; `make lab` must open it with the whole repository visible and pass
LAB_ARGS on to JupyterLab.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "index.ipynb"


def home_links() -> list[str]:
    cells = json.loads(HOME.read_text())["cells"]
    assert all(c["cell_type"] == "markdown" for c in cells), "the home page is text and links only"
    text = "\n".join("".join(c["source"]) for c in cells)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_home_page_reaches_every_notebook_lab_and_doc():
    links = set(home_links())
    wanted = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    wanted |= {f"assignments/{p.name}" for p in (ROOT / "labs").glob("*.ipynb")}
    wanted |= {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert len(wanted) >= 7 + 5 + 3
    assert not wanted - links, f"not linked from index.ipynb: {sorted(wanted - links)}"
    assert not any(link.startswith("labs/") for link in links), "students get assignments/, not labs/"
    for link in links:
        target = ROOT / link
        if link.startswith("assignments/"):
            target = ROOT / "labs" / Path(link).name        # written by `make lab` from this source
        assert target.exists(), f"index.ipynb links to {link}, which does not exist"


def make_dry_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", "-W", ".venv/.installed", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_lab_opens_the_home_page_with_everything_visible_and_takes_options():
    lab = [line for line in make_dry_run("lab", "LAB_ARGS=--port 8899 --no-browser").splitlines()
           if "jupyter lab" in line]
    assert len(lab) == 1, lab
    assert "--notebook-dir=. " in lab[0] and lab[0].endswith("--port 8899 --no-browser index.ipynb")


def test_the_first_install_says_what_it_is_doing():
    install = make_dry_run("-B", ".venv/.installed")
    assert "first time takes about 2 minutes" in install
    pip = [line for line in install.splitlines() if "pip install" in line]
    assert pip and all(" -q" not in line for line in pip), "pip's progress should show"


def test_the_readme_terminal_commands_name_the_venvs_python():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From a terminal", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in re.findall(r"```\n(.*?)```", section, re.S) for line in block.splitlines()]
    assert commands and all(line.startswith(".venv/bin/python -m mailkit ") for line in commands), commands


@pytest.mark.parametrize("module, commands", [
    ("mailkit.cli", ["serve", "adduser", "client"]),
    ("mailkit.labs.__main__", ["list", "execute", "release", "check", "grade"]),
])
def test_help_texts_are_plain_text(module, commands, capsys):
    import importlib

    main = importlib.import_module(module).main
    for args in ([], *([c] for c in commands)):
        with pytest.raises(SystemExit) as done:
            main([*args, "--help"])
        assert done.value.code == 0
        shown = capsys.readouterr().out
        assert "usage: python -m" in shown
        assert "`" not in shown, f"reST markup in `{module} {' '.join(args)} --help`:\n{shown}"

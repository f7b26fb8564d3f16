"""A lab whose submission is a server in any language (issue 22, item 5),
through the same five stages as a notebook:

    read (reading.read_tree)  ->  plan (planning.plan_server)  ->  run (runner.run_server_job, serverrun, sandbox)
        ->  judge (serverjudge.judge_server)  ->  record (gradebook)

The lab's source is a folder ``labs/NN-name/`` holding ``lab.json`` (the
instructor's: which conformance checks, their points, hidden or not, the
build and start commands, the limits) and what students are handed
(README.md).  This module reads that source (stage 0, like
:mod:`mailkit.labs.notebook`); the plan is :func:`mailkit.labs.planning.plan_server`,
the run :func:`mailkit.labs.runner.run_server_job` (and :mod:`mailkit.labs.serverrun`
in the harness), the judgement :func:`mailkit.labs.serverjudge.judge_server`.  A submission is a folder ``submissions/STUDENT/NN-name/``
with the source code and a ``run`` script, or a Makefile with a ``run``
target: plain data (:class:`~mailkit.labs.reading.SourceTree`).  The files
are copied into the sandbox; nothing of them decides which checks run,
what they are worth, or how they are judged: all of that is the source's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..conform import CHECKS
from .notebook import Check, LabError

__all__ = ["ServerLab", "load_server_lab", "is_server_lab", "LAB_FILE", "DEFAULT_BUILD_S",
           "DEFAULT_SERVER_RUN_LIMIT_S", "FEEDBACK_CHARS"]

LAB_FILE = "lab.json"
# gcc builds a one-file server in about a second; `make` of a few files in
# a few: 60 s is generous, and a build that loops costs only this.
DEFAULT_BUILD_S = 60
# The whole run (build, every start, every probe): conform's full suite takes
# ~10 s against a correct server, but a wrong one makes checks wait out
# their timeouts; the probes stop at the budget, the run at the limit.
DEFAULT_PROBE_BUDGET_S = 90
DEFAULT_SERVER_RUN_LIMIT_S = 150
FEEDBACK_CHARS = 600        # one failed check's message in a student's feedback


@dataclass
class ServerLab:
    """The instructor's definition of a server lab (from ``lab.json``)."""

    path: Path                         # the lab.json
    id: str
    title: str
    checks: list[Check] = field(default_factory=list)
    build: list[str] = field(default_factory=list)
    start: dict[str, list[str]] = field(default_factory=dict)   # the file that must exist -> the command
    build_s: float = DEFAULT_BUILD_S
    budget_s: float = DEFAULT_PROBE_BUDGET_S
    run_limit_s: float = DEFAULT_SERVER_RUN_LIMIT_S
    kind: str = "server"

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)

    def visible_checks(self, hidden: bool = True) -> list[Check]:
        return [c for c in self.checks if hidden or not c.hidden]

    def folder_matches(self, name: str) -> bool:
        """A student's folder for this lab: named like the lab (its id, or
        the lab's number: ``08``, ``08-my-server``)."""
        number = self.id.split("-")[0]
        return name == self.id or name.lower().startswith(self.id.lower()) or \
            (number.isdigit() and name.split("-")[0] == number)


def is_server_lab(path: Path) -> bool:
    return path.is_dir() and (path / LAB_FILE).is_file()


def _words(value, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise LabError(f"{where}: expected a list of words")
    return list(value)


def load_server_lab(folder: str | Path) -> ServerLab:
    """Read ``lab.json`` in *folder*; raise :class:`LabError` if it is wrong."""
    path = Path(folder) / LAB_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: {exc}") from None
    lab = ServerLab(path, str(spec.get("lab") or Path(folder).name), str(spec.get("title") or Path(folder).name))
    lab.build = _words(spec.get("build", ["make"]), f"{path}: build")
    start = spec.get("start")
    if not isinstance(start, dict) or not start:
        raise LabError(f"{path}: start: expected {{\"run\": [...], \"Makefile\": [...]}}")
    lab.start = {str(k): _words(v, f"{path}: start.{k}") for k, v in start.items()}
    limits = spec.get("limits", {})
    lab.build_s = float(limits.get("build_s", DEFAULT_BUILD_S))
    lab.budget_s = float(limits.get("probe_budget_s", DEFAULT_PROBE_BUDGET_S))
    lab.run_limit_s = float(limits.get("run_limit_s", DEFAULT_SERVER_RUN_LIMIT_S))
    if lab.run_limit_s < lab.build_s + lab.budget_s:
        raise LabError(f"{path}: run_limit_s must leave room for build_s + probe_budget_s")
    seen = set()
    for item in spec.get("checks", []):
        name = str(item.get("check", ""))
        base, _, mode = name.partition("@")
        if base not in CHECKS or mode not in ("", "noise") or (mode and not CHECKS[base].noise):
            raise LabError(f"{path}: no conformance check {name!r} (python -m mailkit conform server --help)")
        points = item.get("points", 1)
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
            raise LabError(f"{path}: check {name!r} has points={points!r}; expected a number >= 0")
        if name in seen:
            raise LabError(f"{path}: two checks are named {name!r}")
        seen.add(name)
        lab.checks.append(Check(name, points, bool(item.get("hidden", True)), CHECKS[base].section))
    if not lab.checks:
        raise LabError(f"{path}: no checks")
    return lab

"""Conformance checks for any mail server or client, in any language.

    python -m mailkit conform server -- ./myserver {port} {users}
    python -m mailkit conform client -- ./myclient {host} {port}
    python -m mailkit conform matrix --server HOST:PORT --client "./myclient {host} {port}"

Each check is named by the section of docs/protocol.md it tests
(``login/bad-password`` tests "Handshake"), runs directly and (most) again
through a :class:`~mailkit.noise.NoisyLink` that flips bits, loses requests
silently, delays replies and cuts requests into pieces, with a seed the
report prints.  Standard library only.

For a grader (hidden probes): :func:`probe` runs one named check against
HOST:PORT with a seed (and accounts) and returns a :class:`Result`;
:func:`run_check` does the same against any object with ``address`` and
``users`` (a :class:`CommandTarget` can also restart the server); neither
prints, nor raises for what the server does.  :func:`run_suite` runs them
all, within an optional time budget.
"""

from .clients import CLIENT_CHECKS, run_client_suite
from .context import CHECKS
from .report import gradescope_json, json_report, junit_xml, text_report
from .runner import NOISE, Result, Suite, probe, run_check, run_suite, server_checks
from .target import AddressTarget, CommandTarget, StartFailed

__all__ = ["CHECKS", "CLIENT_CHECKS", "NOISE", "Result", "Suite", "probe", "run_check", "run_suite",
           "run_client_suite", "server_checks", "AddressTarget", "CommandTarget", "StartFailed",
           "text_report", "json_report", "junit_xml", "gradescope_json"]

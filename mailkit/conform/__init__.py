"""Conformance checks for any mail server or client, in any language.

    python -m mailkit conform server -- ./myserver {port} {users}
    python -m mailkit conform client -- ./myclient {host} {port}
    python -m mailkit conform matrix --server HOST:PORT --client "./myclient {host} {port}"

Each check is named by the section of docs/protocol.md it tests
(``login/bad-password`` tests "Handshake"), runs directly and (most) again
through a :class:`~mailkit.noise.NoisyLink` that flips bits, loses requests
silently, delays replies and cuts requests into pieces, with a seed the
report prints.  Standard library only.

For a grader (hidden probes): :func:`run_check` runs one named check
against any object with ``address`` and ``users`` and returns a
:class:`Result`; it prints nothing and raises nothing for what the server
does.  :func:`run_suite` runs them all.
"""

from .clients import CLIENT_CHECKS, run_client_suite
from .context import CHECKS
from .report import gradescope_json, json_report, junit_xml, text_report
from .runner import NOISE, Result, Suite, run_check, run_suite, server_checks
from .target import AddressTarget, CommandTarget, StartFailed

__all__ = ["CHECKS", "CLIENT_CHECKS", "NOISE", "Result", "Suite", "run_check", "run_suite",
           "run_client_suite", "server_checks", "AddressTarget", "CommandTarget", "StartFailed",
           "text_report", "json_report", "junit_xml", "gradescope_json"]

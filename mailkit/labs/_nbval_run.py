"""One checking run, in its own process: ``python -m mailkit.labs._nbval_run
REPORT PYTEST_ARGS...``.

It runs pytest with nbval (plugins from entry points off, for speed and so
that nothing else in the environment joins in) and a small plugin that
writes one JSON line per notebook cell to REPORT as soon as the cell is
done: whether it passed and, if not, why.  Lines already written survive
if the run is killed.
"""

import json
import re
import sys

# jsonschema (which nbformat imports) imports rfc3987_syntax when it is
# installed, and that builds a grammar for about two seconds, in every run.
# nbformat never checks IRIs: refusing the import saves those seconds.
sys.modules.setdefault("rfc3987_syntax", None)

import pytest  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text or "")


def _outputs_text(item, outputs) -> str:
    """The outputs of a cell as the text a student reads, sanitized as nbval compares them."""
    parts = []
    for out in outputs or ():
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            parts.append(str(out.get("data", {}).get("text/plain", "")) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return item.sanitize("".join(parts))


class Reporter:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        yield
        cell = getattr(item, "cell_num", None)
        if cell is None or call.when == "teardown" or (call.when == "setup" and call.excinfo is None):
            return
        record = {"cell": cell, "passed": call.excinfo is None}
        if call.excinfo is not None:
            exc = call.excinfo.value
            record["message"] = strip_ansi(str(exc)) or type(exc).__name__
            record["traceback"] = strip_ansi(getattr(exc, "inner_traceback", None) or "")
            if call.when == "setup":
                record["message"] = f"the kernel did not start: {record['message']}"
            elif record["message"] == "Cell outputs differ":
                reference = getattr(item.cell, "outputs", [])
                record["expected"] = _outputs_text(item, reference)
                record["got"] = _outputs_text(item, item.test_outputs)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def main(argv: list[str]) -> int:
    report, args = argv[0], argv[1:]
    return int(pytest.main(args, plugins=[Reporter(report)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

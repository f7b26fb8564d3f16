"""A suite's results for people (text) and machines (JSON, JUnit XML,
Gradescope's results.json).

Text: one line per check; for each failure, the exchange up to the failing
step (what was sent, what came back, how the reply ended), then what was
expected and which section says so.  JUnit: one ``<testcase>`` per check
(``classname`` its area, ``name`` the rest), ``<failure>`` with the same
text, ``<skipped>`` for a check that could not run there.  Gradescope: one
test per check, ``score``/``max_score`` (1 per required check, 0 for a
SHOULD), the same text as ``output``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from .runner import Result, Suite

__all__ = ["text_report", "exchange_text", "json_report", "junit_xml", "gradescope_json"]

SHOW_BYTES = 300      # of each request and reply in a failure's exchange


def _show(data: bytes) -> str:
    shown = repr(data[:SHOW_BYTES])
    return shown + (f" ... ({len(data):,} bytes in all)" if len(data) > SHOW_BYTES else "")


_ENDINGS = {
    "closed": "then the server closed",
    "quiet": "then nothing more (the connection stayed open)",
    "silent": "nothing came back (no reply, no close)",
    "reset": "the connection was reset",
    "too long": "more than the suite reads (8 MiB): it stopped reading",
    "": "",
}


def exchange_text(result: Result) -> str:
    """The exchange of one check, step by step, and its verdict."""
    lines = []
    for i, step in enumerate(result.steps, 1):
        lines.append(f"  step {i}: {step.note}")
        if step.sent:
            tail = ", then half-closed" if step.half_closed else ""
            lines.append(f"    >>> sent {len(step.sent):,} bytes{tail}: {_show(step.sent)}")
        if step.received or step.ending:
            lines.append(f"    <<< got  {len(step.received):,} bytes: {_show(step.received)}"
                         f"  [{_ENDINGS.get(step.ending, step.ending)}]")
    if result.status != "pass":
        lines.append(f"  FOUND:    {result.message}")
        if result.expected:
            lines.append(f"  EXPECTED: {result.expected}")
        if result.section:
            lines.append(f"  SEE:      {_where(result.section)}")
    return "\n".join(lines)


def _where(section: str) -> str:
    if section.startswith("PROTOCOL.md: "):
        return f'PROTOCOL.md, "{section.removeprefix("PROTOCOL.md: ")}"'
    return f'docs/protocol.md, "{section}"'


_MARK = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP", "error": "ERROR"}


def text_report(suite: Suite, *, verbose: bool = False) -> str:
    lines = [f"mailkit conform {suite.kind} {suite.target}",
             f"seed {suite.seed} (run again with --seed {suite.seed} for the same faults)"
             f"{'; strict: SHOULDs count' if suite.strict else ''}", ""]
    for r in suite.results:
        level = "" if r.required else " (SHOULD)"
        lines.append(f"{_MARK[r.status]:5} {r.id}{level}  [{r.section}]  {r.seconds * 1000:.0f} ms")
        if r.status == "skip":
            lines.append(f"      {r.message}")
        elif r.status != "pass" or verbose:
            lines.append(exchange_text(r))
    c = suite.counts()
    failed_required = sum(1 for r in suite.results if r.required and r.status in ("fail", "error"))
    lines += ["", f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped, {c['error']} suite errors "
              f"in {suite.seconds:.1f} s; "
              + ("every required check passed" if suite.ok else f"{failed_required} required check(s) failed")]
    return "\n".join(lines)


def json_report(suite: Suite) -> str:
    return json.dumps(suite.as_dict(), indent=2, ensure_ascii=False)


def junit_xml(suite: Suite) -> str:
    """JUnit XML (the format CI servers read): one testsuite per run."""
    c = suite.counts()
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=f"mailkit conform {suite.kind}", tests=str(len(suite.results)),
                       failures=str(c["fail"]), errors=str(c["error"]), skipped=str(c["skip"]),
                       time=f"{suite.seconds:.3f}")
    props = ET.SubElement(ts, "properties")
    for key, value in (("target", suite.target), ("seed", str(suite.seed)), ("strict", str(suite.strict))):
        ET.SubElement(props, "property", name=key, value=value)
    for r in suite.results:
        area, _, rest = r.id.partition("/")
        case = ET.SubElement(ts, "testcase", classname=f"conform.{suite.kind}.{area}", name=rest or area,
                             time=f"{r.seconds:.3f}")
        text = _xml_safe(exchange_text(r))
        if r.status == "fail":
            kind = "required" if r.required else "SHOULD"
            ET.SubElement(case, "failure", message=_xml_safe(r.message[:200]), type=kind).text = text
        elif r.status == "error":
            ET.SubElement(case, "error", message=_xml_safe(r.message[:200])).text = text
        elif r.status == "skip":
            ET.SubElement(case, "skipped", message=_xml_safe(r.message[:200]))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters, even escaped."""
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else f"\\x{ord(ch):02x}" for ch in text)


def gradescope_json(suite: Suite, *, visibility: str = "visible") -> str:
    """Gradescope's autograder results.json: a test per check, 1 point per
    required check (a SHOULD is shown with max_score 0)."""
    tests = []
    for r in suite.results:
        points = 1.0 if r.required else 0.0
        status = "passed" if r.passed or r.status == "skip" else "failed"
        tests.append({
            "name": f"{r.id} [{r.section}]",
            "score": points if status == "passed" else 0.0,
            "max_score": points,
            "status": status,
            "output": (r.doc + "\n" + (r.message if r.status == "skip" else exchange_text(r))).strip(),
            "visibility": visibility,
        })
    return json.dumps({
        "score": sum(t["score"] for t in tests),
        "execution_time": round(suite.seconds, 2),
        "output": f"mailkit conform {suite.kind} {suite.target}, seed {suite.seed}",
        "visibility": visibility,
        "tests": tests,
    }, indent=2, ensure_ascii=False)

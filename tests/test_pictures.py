"""mailkit.pictures: every picture has a deterministic image form and text form."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from mailkit import BitFlipChannel, MailClient, MailServer, NoisyLink, flip_bit, make_frame
from mailkit.noise import flip_bits
from mailkit.pictures import (
    Ladder, Layout, SequenceDiagram, Step, frame_html, hexdump_html, link_diagram, retry_plot, sequence_diagram,
)
from mailkit.trace import Exchange, Transcript, hexdump, hexdump_rows

SID = "0123456789"


def _exchanges() -> Transcript:
    frame = b"0123456789:email:bob:Hi:there#" + b"a" * 40
    return Transcript([
        Exchange("login", 1, b"alice:wonderland", b"alice:wonderland", b"OK:0123456789"),
        Exchange("email", 1, frame, flip_bit(frame, 20, 3), b"KO", flips=((20, 3),)),
        Exchange("email", 2, frame, frame, b"", error="ConnectionResetError"),
        Exchange("email", 3, frame, frame, b"OK: Email Sent"),
        Exchange("getmsg", 1, frame, frame, b"ERROR: unknown user 'zed'"),
    ])


def test_sequence_diagram_text_is_the_transcript_sequence():
    t = _exchanges()
    d = sequence_diagram(t, title="retries")
    assert repr(d).startswith("retries\n" + t.sequence())
    assert "email #1: flipped bit 3 of byte 20" in repr(d)


def test_sequence_diagram_svg_is_well_formed_and_names_every_reply():
    svg = sequence_diagram(_exchanges())._repr_svg_()
    root = ET.fromstring(svg)           # well-formed XML
    assert root.tag.endswith("svg")
    for text in ("OK: Email Sent", "KO", "no reply", "flipped on the way: byte 20 bit 3",
                 "ERROR: unknown user", "client", "server"):
        assert text in svg


def test_sequence_diagram_never_draws_a_password():
    d = sequence_diagram(_exchanges())
    assert "wonderland" not in d.svg and "wonderland" not in d.text


def test_sequence_diagram_is_deterministic_and_accepts_a_plain_list():
    a = sequence_diagram(list(_exchanges()), "t")
    b = sequence_diagram(_exchanges(), "t")
    assert a.svg == b.svg and a.text == b.text


def test_sequence_diagram_of_nothing():
    d = sequence_diagram([])
    assert "(no exchanges yet)" in d.text and "(no exchanges yet)" in d.svg
    ET.fromstring(d.svg)


def test_sequence_diagram_escapes_markup():
    frame = b"0123456789:email:bob:<b>&</b>:x#" + b"a" * 40
    d = sequence_diagram([Exchange("email", 1, frame, frame, b"OK: <i>")])
    ET.fromstring(d.svg)
    assert "&lt;b&gt;&amp;" in d.svg


def test_sequence_diagram_of_a_real_client():
    with MailServer(users={"alice": "wonderland", "bob": "builder"}) as server:
        client = MailClient(*server.address, channel=BitFlipChannel().script((20, 3), None))
        client.login("alice", "wonderland")
        client.send("bob", "Hello", "How are you?")
    d = sequence_diagram(client.transcript)
    assert [e.outcome for e in client.transcript] == ["OK", "KO", "OK"]
    assert d.svg.count("<line") >= 6 and "OK: Email Sent" in d.svg


def test_hexdump_text_is_trace_hexdump_plus_the_bits():
    data = flip_bit(b"0123456789:email:bob:Hello:How are you?", 20, 3)
    view = hexdump_html(data, [(20, 3)])
    assert view.text.startswith(hexdump(data, [(20, 3)]))
    assert "byte 20, bit 3: sent 0x3a 00111010 ':' -> arrived 0x32 00110010 '2'" in view.text
    assert "^^" in repr(view)


def test_hexdump_html_colours_the_flipped_byte_only():
    data = flip_bit(b"A" * 40, 17, 0)
    html = hexdump_html(data, [(17, 0)])._repr_html_()
    assert html.count("<span style=\"background:#ffe3ec") == 4  # hex, char, the bit before and after
    assert ">40</span>" in html and "^^" in html


def test_hexdump_context_leaves_rows_out():
    data = bytes(range(256))
    view = hexdump_html(data, [(100, 1)], context=0)
    rows = [line for line in view.text.split("\n") if re.match(r"[0-9a-f]{8}  ", line)]
    assert [r[:8] for r in rows] == ["00000060"]
    assert view.text.startswith("   …")
    assert "00000000" not in view.html


def test_retry_plot_text_and_png():
    plot = retry_plot([0.0, 0.5, 1.0], [1.0, 0.94, 0.0], [1.0, 0.9375, 0.0], attempts=4, sends=100)
    text = repr(plot)
    assert "0.50     0.938      0.940" in text and "100 sends per rate" in text
    png = plot._repr_png_()
    assert png.startswith(b"\x89PNG") and png == plot._repr_png_()


def test_retry_plot_svg_is_deterministic():
    plot = retry_plot([0.0, 1.0], [1.0, 0.0], [1.0, 0.0])
    assert plot.svg() == plot.svg()
    assert "<dc:date>" not in plot.svg()


def test_retry_plot_leaves_no_pyplot_figure():
    import sys
    plot = retry_plot([0.0, 1.0], [1.0, 0.0], [1.0, 0.0])
    plot._repr_png_()
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        assert plt.get_fignums() == []


def test_retry_plot_checks_lengths():
    with pytest.raises(ValueError):
        retry_plot([0.1], [1.0, 2.0], [1.0])


def test_hexdump_two_bits_in_one_byte():
    data = flip_bits(b"0123456789abcdef0123", [(17, 0), (17, 2)])
    view = hexdump_html(data, [(17, 0), (17, 2)])
    assert "byte 17, bits 0 and 2: sent 0x31 00110001 '1' -> arrived 0x34 00110100 '4'" in view.text
    assert "byte 17: bits 0 and 2" in view.html


def test_hexdump_negative_index_counts_from_the_end():
    data = b"abcdef"
    assert "byte 5, bit 0" in hexdump_html(flip_bit(data, 5, 0), [(-1, 0)]).text


def test_ladder_text_svg_and_checks():
    d = Ladder(["a", "b", "c"], [("a", "b", "hello"), ("b", "c", "lost", "lost"),
                                 ("c", "c", "thinks", "note", "a note"), ("c", "a", "ok", "OK")], "t")
    assert d.text.split("\n") == ["t", "a --> b  hello", "b --x c  lost", "c  [thinks]  (a note)", "c --> a  ok"]
    ET.fromstring(d.svg)
    with pytest.raises(ValueError):
        Ladder(["a"], [("a", "z", "x")])
    with pytest.raises(ValueError):
        Ladder(["a", "b"], [("a", "b", "x", "purple")])


def test_link_diagram_of_a_real_link():
    with MailServer(users={"alice": "wonderland", "bob": "builder"}) as server, \
            NoisyLink(server.address, seed=1) as link:
        client = MailClient(*link.address)
        client.login("alice", "wonderland")
        link.plan_next(drop_reply=True)
        client.send("bob", "Hi", "there")
        link.plan_next(reply_flips=[(0, 2), (1, 2)])
        with pytest.raises(OSError):
            client.send("bob", "Hi", "again")
    d = link_diagram(link.events)
    assert "wonderland" not in d.text and "alice:••••••" in d.text
    assert "link --x client  (reply dropped)" in d.text
    assert "link --> client  KO: Email Sent  (flipped bit 2 of byte 0, bit 2 of byte 1)" in d.text
    ET.fromstring(d.svg)


def test_frame_view_names_the_parts():
    v = frame_html(make_frame(SID, "email", "bob", "Re: x", "a:b #c"))
    names = [n for n, _ in v.parts() if n not in (":", "#")]
    assert names == ["session id", "command", "recipient", "subject", "body", "checksum"]
    assert v.verifies and "matches" in v.text and "✓ checksum matches" in v.html
    broken = frame_html(make_frame(SID, "count")[:-1] + b"0")
    assert not broken.verifies and "does NOT match" in broken.text


# -- one renderer per picture -----------------------------------------------------


def test_a_sequence_diagram_is_a_two_actor_ladder():
    d = sequence_diagram(_exchanges(), "t")
    ladder = d.ladder
    assert isinstance(d, SequenceDiagram) and isinstance(ladder, Ladder)
    assert ladder.actors == ["client", "server"] and d.svg == ladder.svg
    # a request step and a reply step per attempt; no reply is a lost arrow
    assert [s.kind for s in ladder.steps] == ["ink", "OK", "flip", "KO", "ink", "lost", "ink", "OK",
                                              "ink", "ERROR"]
    assert ladder.steps[2].note.startswith("⚡ flipped on the way: byte 20 bit 3")
    assert ladder.steps[0].margin == ("connection", "login #1")


def test_ladder_layout_moves_the_lifelines_and_the_lost_arrow():
    steps = [Step("a", "b", "hello", margin=("left",)), ("b", "a", "gone", "lost")]
    spread = Ladder(["a", "b"], steps).svg
    fixed = Ladder(["a", "b"], steps, layout=Layout(width=400, xs=(50, 350), lost="the middle")).svg
    assert '<line x1="90" y1="62" x2="550" y2="72"' in spread
    assert '<line x1="50" y1="62" x2="350" y2="72"' in fixed and 'width="400"' in fixed
    # the lost reply stops two thirds of the way, or just short of the middle with the cross on it
    assert 'x2="243" y2="110"' in spread and '<text x="243" y="116"' in spread     # 550 - 460 * 2 / 3
    assert 'x2="212" y2="107"' in fixed and '<text x="200" y="113"' in fixed
    assert ">left</text>" in spread and ">left</text>" in fixed
    ET.fromstring(fixed)


def test_empty_ladder_shows_its_placeholder_only_when_asked():
    assert "nothing yet" in Ladder(["a", "b"], [], layout=Layout(empty="nothing yet")).svg
    assert "<text x=\"320\"" not in Ladder(["a", "b"], []).svg


def test_hexdump_view_draws_the_rows_of_trace():
    data = flip_bits(bytes(range(64)), [(17, 0), (40, 6)])
    view = hexdump_html(data, [(17, 0), (40, 6)])
    assert view.rows == hexdump_rows(data, [(17, 0), (40, 6)])
    for row in view.rows:
        assert f"{row.offset:08x}" in view.html
        if row.flips:
            assert f'<span style="color:#d6336c">{row.carets}</span>' in view.html


def test_link_diagram_draws_the_flipped_reply_as_it_arrived():
    from mailkit.noise import LinkEvent
    ev = LinkEvent(1, make_frame(SID, "count"), (), b"OK: 1 message", ((0, 1),))
    d = link_diagram([ev])
    assert "link --> client  MK: 1 message  (flipped bit 1 of byte 0)" in d.text

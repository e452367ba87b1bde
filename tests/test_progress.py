"""Progress: plain periodic lines when the stream is not a terminal (Slurm logs, pipes)."""

import io

from stresstest.progress import Progress


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(100, stream=stream, every_s=0.0)
    for _ in range(4):
        bar.advance(25)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("100/100 grid points (100.0 %)")
    assert "\r" not in stream.getvalue()


def test_quiet_prints_nothing():
    stream = io.StringIO()
    bar = Progress(10, stream=stream, every_s=0.0, enabled=False)
    bar.advance(10)
    bar.close()
    assert stream.getvalue() == ""

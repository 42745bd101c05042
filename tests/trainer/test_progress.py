"""Progress bars: a tqdm bar on a terminal, plain periodic lines in a log file or a pipe."""

import io

from trainer.progress import PlainBar, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_output_that_is_not_a_terminal_gets_plain_lines():
    out = io.StringIO()
    bar = progress(range(5), desc="training", unit="step", file=out, every=0.0)
    assert isinstance(bar, PlainBar)
    for _ in bar:
        bar.set_postfix(loss="1.234")
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and "\r" not in out.getvalue()  # one per step and one at the end
    assert lines[-1].startswith("training: 5/5 step") and "loss=1.234" in lines[-1]


def test_lines_are_spaced_in_time_and_a_disabled_bar_is_silent():
    out = io.StringIO()
    bar = progress(total=1000, desc="tokenising", unit="tok", file=out, every=3600.0)
    for _ in range(10):
        bar.update(100)
    assert bar.n == 1000 and out.getvalue() == ""
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().strip()] and "1000/1000 tok" in out.getvalue()
    quiet = io.StringIO()
    assert list(progress(range(3), file=quiet, disable=True)) == [0, 1, 2] and quiet.getvalue() == ""


def test_a_terminal_gets_tqdm():
    from tqdm import tqdm

    bar = progress(range(2), file=Terminal(), desc="x")
    assert isinstance(bar, tqdm) and list(bar) == [0, 1]

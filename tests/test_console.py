"""What the engine shows a person: the sampling bar's arithmetic and its quietness."""

import io

import pytest

from bayesmix.engine import console


def test_bar_counts_iterations_of_every_chain(monkeypatch):
    monkeypatch.setattr(console, "BAR_DELAY", 0.0)
    out = io.StringIO()
    monkeypatch.setattr(console.sys, "stderr", out)
    bar = console.SamplingProgress(show=True, chains=2)
    for line in ("Chain [1] Iteration:   1 / 100 [  1%]  (Warmup)",
                 "Chain [2] Iteration:   1 / 100 [  1%]  (Warmup)",
                 "Chain [1] Iteration:  60 / 100 [ 60%]  (Sampling)",
                 "Chain [2] Iteration:  40 / 100 [ 40%]  (Warmup)",
                 "Gradient evaluation took 1e-05 seconds"):
        bar.update(line)
    assert bar._bar.total == 200 and bar._bar.n == 100   # 60 + 40 of 2 x 100
    bar.update("Chain [2] Iteration:  90 / 100 [ 90%]  (Sampling)")
    assert bar._bar.n == 150
    bar.close()
    assert bar._bar.n == 200 and "200/200" in out.getvalue()


def test_single_chain_lines_have_no_prefix(monkeypatch):
    monkeypatch.setattr(console, "BAR_DELAY", 0.0)
    monkeypatch.setattr(console.sys, "stderr", io.StringIO())
    bar = console.SamplingProgress(show=True)
    bar.update("Iteration: 300 / 2000 [ 15%]  (Warmup)")
    assert (bar._bar.n, bar._bar.total) == (300, 2000)
    bar.close()


def test_quiet_under_pytest_and_before_the_delay(monkeypatch):
    assert console.watched() is False            # pytest is running
    bar = console.SamplingProgress()              # show=None: where a person watches
    bar.update("Iteration: 300 / 2000 [ 15%]  (Warmup)")
    assert bar._bar is None
    shown = console.SamplingProgress(show=True)   # forced, but the run is younger than 2 s
    shown.update("Iteration: 1 / 2000 [  0%]  (Warmup)")
    assert shown._bar is None


def test_build_lines_go_to_stderr_unless_quiet(monkeypatch, capsys):
    monkeypatch.delenv("BAYESMIX_QUIET", raising=False)
    with console.timed("compiling X"):
        pass
    err = capsys.readouterr().err
    assert "bayesmix: compiling X ..." in err and "compiling X: done in 0 s" in err
    monkeypatch.setenv("BAYESMIX_QUIET", "1")
    console.say("hidden")
    assert capsys.readouterr().err == ""

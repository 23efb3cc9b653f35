"""The benchmarks' timing helper: peers and lpdsl timed in alternating blocks (timing.py)."""

from __future__ import annotations

import timing


def test_best_times_alternates_blocks_and_keeps_each_minimum(monkeypatch):
    monkeypatch.setattr(timing, "BUDGET_S", 0.0)
    now, calls = [0.0], []

    def step(name: str, durations: list[float]):
        def fn() -> None:
            calls.append(name)
            now[0] += durations.pop(0)

        return fn

    a = step("a", [9.0, 5.0, 3.0, 4.0, 6.0])  # the first call is the warm-up, never counted
    b = step("b", [9.0, 2.0, 6.0, 1.0, 7.0])
    best = timing.best_times([a, b], 3, clock=lambda: now[0], block=2)
    # warm-ups, then rounds of two consecutive calls of each until 3 calls each are timed
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 2
    assert best == [3.0, 1.0]
    # one function: the same as best_time
    c = step("c", [9.0, 7.0, 8.0])
    assert timing.best_time(c, 2, clock=lambda: now[0]) == 7.0


def test_best_times_can_skip_the_warm_up(monkeypatch):
    # the slow peer path has just made its trial call: a second untimed call cost seconds
    monkeypatch.setattr(timing, "BUDGET_S", 0.0)
    now, calls = [0.0], []

    def fn() -> None:
        calls.append(1)
        now[0] += 2.0 + len(calls)

    assert timing.best_times([fn], 1, clock=lambda: now[0], block=1, warmup=False) == [3.0]
    assert len(calls) == 1


def test_peer_solvers_hold_the_peers_to_the_thread_count_asked():
    # one thread, as lpdsl, unless a benchmark asks for diffcp's pool over every core
    for jobs in (1, -1):
        solvers = dict(timing.peer_solvers(jobs))
        assert list(solvers) == ["default", "Clarabel"]
        assert solvers["Clarabel"]["solve_method"] == "Clarabel"
        for args in solvers.values():
            assert args["n_jobs_forward"] == args["n_jobs_backward"] == jobs

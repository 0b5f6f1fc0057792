"""Several sessions (AppTest instances) pressing Extract for the same work share one job (issue 9, item 5).

The model load is wrapped (the real ``load_extractor`` runs; only a gate and a counter are
added) so the first session's job is held in "loading the model" until every session has
pressed Extract: the requests really overlap, as four people pressing at once do.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.app.conftest import charts, new_app, no_exception, texts, wait_for_job


@pytest.fixture
def gated_loads(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``embedviz.models.load_extractor`` counted, and held until ``gate`` is set."""
    from embedviz import models

    real = models.load_extractor
    state = {"loads": 0, "gate": threading.Event(), "entered": threading.Event()}

    def load(*args, **kwargs):
        state["loads"] += 1
        state["entered"].set()
        assert state["gate"].wait(120), "the test never opened the gate"
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load_extractor", load)
    return state


def _extract(params: dict) -> object:
    at = new_app(params)
    at.run()
    no_exception(at)
    next(b for b in at.button if b.label == "Extract").click().run()
    no_exception(at)
    return at


def test_four_sessions_pressing_extract_share_one_job_and_one_model_load(
    env, local_model: Path, gated_loads: dict
) -> None:
    from ui.jobs import REGISTRY

    params = {"model": str(local_model), "words": "yes,no", "n": "3"}
    started = REGISTRY.started
    sessions = [_extract(params)]
    assert gated_loads["entered"].wait(60)  # session 1's job is loading the model
    sessions += [_extract(params) for _ in range(3)]
    handles = [at.session_state["_ev_job"] for at in sessions]
    assert REGISTRY.started == started + 1, "identical requests must not start more jobs"
    assert len({id(h.job) for h in handles}) == 1
    assert handles[-1].snapshot().sessions == 4

    gated_loads["gate"].set()
    for at in sessions:
        wait_for_job(at)
        no_exception(at)
        assert not at.error, texts(at.error)
    assert gated_loads["loads"] == 1
    # Every session reports the one computation and draws the same plots from the store.
    for at in sessions:
        assert any("6 computed, 0 already stored" in s for s in texts(at.success)), texts(at.success)
    specs = [[(chart.proto.spec, [d.data.data for d in chart.proto.datasets]) for chart in charts(at, "echarts_chart")]
             for at in sessions]
    assert specs[0] and all(s == specs[0] for s in specs)
    assert all(next(b for b in at.button if b.label == "Extract").disabled for at in sessions)


def test_a_session_that_cancels_a_shared_job_leaves_it_running_for_the_others(
    env, local_model: Path, gated_loads: dict
) -> None:
    params = {"model": str(local_model), "words": "yes,no", "n": "3"}
    first = _extract(params)
    assert gated_loads["entered"].wait(60)
    second = _extract(params)
    first.run()  # the progress fragment with its Cancel button
    first.button(key="ex_cancel").click().run()
    wait_for_job(first)
    no_exception(first)
    assert "_ev_job" not in first.session_state  # this session is free again at once
    job = second.session_state["_ev_job"].job
    assert not job.cancel_requested

    gated_loads["gate"].set()
    wait_for_job(second)
    no_exception(second)
    assert any("6 computed, 0 already stored" in s for s in texts(second.success)), texts(second.success)
    assert len(charts(second, "echarts_chart")) == 1

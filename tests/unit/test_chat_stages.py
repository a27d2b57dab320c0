"""chat.stages: off costs nothing and says nothing; on, it reports p50/p99 per stage."""

from __future__ import annotations

from structlog.testing import capture_logs

from chat.stages import Stages


def test_off_collects_nothing() -> None:
    stages = Stages(enabled=False)
    with capture_logs() as logs:
        for value in range(1000):
            stages.add("batch", float(value))
        stages.report()
    assert logs == []


def test_on_reports_p50_and_p99_per_stage_then_starts_over() -> None:
    stages = Stages(enabled=True)
    for value in range(1, 101):
        stages.add("batch", float(value))
    stages.add("size", 3.0)
    with capture_logs() as logs:
        stages.report()
        stages.report()  # nothing new since: no line
    assert len(logs) == 1
    assert logs[0]["event"] == "chat stages"
    assert logs[0]["batch_p50_p99"] == "51.0/100.0"
    assert logs[0]["size_p50_p99"] == "3.0/3.0"

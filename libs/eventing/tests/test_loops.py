"""A background loop outlives whatever one of its steps raises."""

from __future__ import annotations

import asyncio

from mfaplane_eventing import loops


async def test_a_failing_step_is_run_again_and_the_failure_logged(caplog, monkeypatch) -> None:
    monkeypatch.setattr(loops, "BACKOFF_SECONDS", (0.01, 0.02))
    failures = [RuntimeError("a bug"), ConnectionRefusedError("the database away")]
    ran_clean = asyncio.Event()

    async def step() -> bool:
        if failures:
            raise failures.pop(0)
        ran_clean.set()
        return False

    task = asyncio.create_task(loops.repeat("a test loop", step, idle_seconds=60))
    try:
        await asyncio.wait_for(ran_clean.wait(), 5)
    finally:
        task.cancel()
    logged = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == loops.log.name]
    assert logged == [("ERROR", "a test loop failed unexpectedly, retrying", True),
                      ("WARNING", "a test loop failed, retrying", False)]


async def test_a_busy_step_runs_again_at_once_and_an_idle_one_after_the_pause() -> None:
    results = [True, True, False]
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        return results.pop(0) if results else False

    task = asyncio.create_task(loops.repeat("a test loop", step, idle_seconds=60))
    await asyncio.sleep(0.1)
    task.cancel()
    assert calls == 3, "two busy steps, then one idle step and its 60 s pause"

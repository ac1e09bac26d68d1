"""One chain of steps per stepped job (``workers.steps.step_chain``), against a real Redis: a step sent from outside
the chain (resume, the sweep, `run` again) takes the job over and the older chain's next step does nothing; no step
runs beside another step of its job."""

from __future__ import annotations

import threading

from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import step_chain
from tests.integration.test_verify_cleanup import ctx as ctx

JOB = 424242


def take(ctx: WorkerContext, chain: str | None) -> tuple[str | None, str | None]:
    """(why the step was not taken or None, the chain it carried on when taken)."""
    with step_chain.one_step(ctx, JOB, chain) as not_taken:
        return not_taken, step_chain.current()


def test_a_step_sent_from_outside_takes_the_job_over_and_the_older_chain_stops(ctx: WorkerContext) -> None:
    ctx.redis.delete(step_chain.chain_key(JOB))
    taken, first = take(ctx, None)
    assert taken is None and first is not None
    assert take(ctx, first) == (None, first)  # the chain's own next step goes on

    taken, second = take(ctx, None)  # `nsmigrate resume`: a new chain
    assert taken is None and second not in (None, first)

    assert take(ctx, first) == (step_chain.SUPERSEDED, None)  # the older chain's poll: nothing done
    assert take(ctx, second) == (None, second)
    assert step_chain.current() is None  # outside a step


def test_no_step_runs_beside_another_step_of_its_job(ctx: WorkerContext) -> None:
    ctx.redis.delete(step_chain.chain_key(JOB))
    running, release = threading.Event(), threading.Event()
    chains: list[str | None] = []

    def long_step() -> None:  # an import step writing its files
        with step_chain.one_step(ctx, JOB, None) as not_taken:
            assert not_taken is None
            chains.append(step_chain.current())
            running.set()
            release.wait(30)

    writer = threading.Thread(target=long_step)
    writer.start()
    try:
        assert running.wait(30)
        assert take(ctx, None) == (step_chain.UNDER_WAY, None)  # a resume meanwhile: it does nothing ...
    finally:
        release.set()
        writer.join()
    assert take(ctx, chains[0]) == (None, chains[0])  # ... and takes nothing over: the writer's chain goes on


def test_a_chain_whose_token_redis_lost_goes_on(ctx: WorkerContext) -> None:
    _, chain = take(ctx, None)
    ctx.redis.delete(step_chain.chain_key(JOB))  # a Redis restart

    assert take(ctx, chain) == (None, chain)
    assert ctx.redis.get(step_chain.chain_key(JOB)) == chain.encode()

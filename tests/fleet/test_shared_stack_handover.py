"""A worker stack a module's tests share (``tests/service_fixtures.py``: ``module_stack``, ``shared_stack``) goes to
the next test only once the tasks of the test before it have ended: a task left running would write into the data
plane the next test has just emptied (a forward run of ``test_sync_rollback`` once ended ``verify_failed`` so). The
two tests run in this order, on the module's one worker."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.models import BatchState
from nsmigrate_sandbox.stack import Stack
from tests.chaos import batch_states, chaos_spec, load_source, wait_for
from tests.chaos import sandbox_indexes as sandbox_indexes
from tests.fleet_jobs import start_job
from tests.service_fixtures import tasks_left


@pytest.fixture(scope="module")
def fleet(module_stack: Stack) -> Stack:
    module_stack.start_worker("list,copy,verify", 2, pool="threads")
    return module_stack


@pytest.fixture
def stack(fleet: Stack, shared_stack: Stack) -> Stack:
    return shared_stack


def test_a_test_may_end_while_its_job_still_copies(stack: Stack) -> None:
    """As a test that fails mid-job does: it returns while its batches run on the module's worker. Their fetches
    wait for the job's read budget (two a second, six batches), which emptying the data plane does not lift."""
    load_source(stack, namespaces=1, per_namespace=120)
    rate = {"read_rps": 2, "list_rps": 1000, "write_rps": 1000}
    db, _, job_id = start_job(stack, chaos_spec(stack, rate=rate))
    wait_for(lambda: batch_states(db, job_id)[BatchState.RUNNING] > 0, "a batch of the job to be running")
    db.dispose()


def test_the_next_test_gets_the_module_worker_with_no_task_of_the_test_before(stack: Stack) -> None:
    assert tasks_left(stack.redis_url) == {}

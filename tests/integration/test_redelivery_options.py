"""What the Redis transport of the app the workers and producers share does with the unacked tasks of a killed
worker: the options reach kombu's channel, against a real Redis."""

from __future__ import annotations

import pytest
from celery import Celery

from nsmigrate.orchestrator.messaging.dispatch import celery_config
from nsmigrate.orchestrator.settings import load_settings


@pytest.mark.parametrize(("visibility_s", "mutex_s"), [(5, 5), (60, 60), (3600, 300)])
def test_a_killed_sweeps_mutex_blocks_redelivery_no_longer_than_the_visibility_timeout(
    redis_url: str, visibility_s: int, mutex_s: int
) -> None:
    # kombu's restore sweep takes a mutex in Redis; a worker SIGKILLed while holding it leaves it until it expires
    # (300 s by default), and no worker restores a killed worker's tasks meanwhile: at a 5 s visibility timeout that
    # was a 5-minute recovery (test_erase's kill test, now and then).
    settings = load_settings(redis_url=redis_url, visibility_timeout_s=visibility_s)
    app = Celery("nsmigrate-options-test")
    app.conf.update(celery_config(settings))
    with app.connection() as connection:
        channel = connection.default_channel
        assert channel.unacked_mutex_expire == mutex_s
        assert channel.visibility_timeout == visibility_s

"""A worker freezes what it loaded right before its pool starts (``workers.app``): a prefork child's garbage
collections then never touch, and so never copy, the pages it shares with the main process."""

from __future__ import annotations

import gc

from celery.signals import celeryd_after_setup

import workers.app  # noqa: F401  (connects the worker's signal receivers)


def test_the_objects_loaded_before_the_pool_starts_are_frozen() -> None:
    gc.unfreeze()
    try:
        celeryd_after_setup.send(sender="w@host", instance=None, conf=None)

        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

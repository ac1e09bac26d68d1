"""One thread keeps a process's lister locks fresh (``workers.transfer.lock_keeper``), against a real Redis: a lock
kept outlives its time to live many times over, a lock let go or lost is no longer refreshed (so a dead lister's lock
expires), and nothing is left running per lock."""

from __future__ import annotations

import threading
import time

import redis

from nsmigrate.workers.transfer.lock_keeper import LockKeeper

TTL_S = 0.3


def test_a_kept_lock_outlives_its_ttl_until_it_is_dropped(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keeper = LockKeeper()
    lock = client.lock("lister:1", timeout=TTL_S, thread_local=False)
    assert lock.acquire(blocking=False)
    kept = keeper.keep(lock, TTL_S / 3, "lister 1")
    threads = threading.active_count()
    other = client.lock("lister:2", timeout=TTL_S, thread_local=False)
    assert other.acquire(blocking=False)
    keeper.keep(other, TTL_S / 3, "lister 2")

    time.sleep(4 * TTL_S)  # unrefreshed, both would have expired three times over
    assert lock.owned() and other.owned() and keeper.held() == 2
    assert not client.lock("lister:1", timeout=TTL_S).acquire(blocking=False)  # another lister finds it taken
    assert threading.active_count() == threads  # the second lock started no thread of its own

    keeper.drop(kept)
    time.sleep(2 * TTL_S)
    assert not lock.owned() and client.get("lister:1") is None  # no longer refreshed: expired
    assert other.owned() and keeper.held() == 1


def test_a_lock_lost_meanwhile_is_not_taken_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keeper = LockKeeper()
    lock = client.lock("lister:3", timeout=TTL_S, thread_local=False)
    assert lock.acquire(blocking=False)
    keeper.keep(lock, TTL_S / 3, "lister 3")
    client.delete("lister:3")  # expired while Redis was away, say
    taken = client.lock("lister:3", timeout=10, thread_local=False)
    assert taken.acquire(blocking=False)  # and another lister took it

    time.sleep(2 * TTL_S)
    assert keeper.held() == 0  # its refresh found the lock not its own, and let it go
    assert taken.owned() and client.pttl("lister:3") > 5_000  # the other lister's lock, untouched

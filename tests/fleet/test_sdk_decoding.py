"""Threads may make their first decode of a Pinecone response at the same moment; that must not crash.

msgspec (which the SDK decodes responses with) builds a type's decoding information on its first decode, and threads
doing that at once crash the process (SIGSEGV). ``workers.fleet.tasks`` primes every SDK response type on import,
before a pool runs any task, and a ``PineconeStore`` primes them when it builds the process's first client, one client
at a time (``workers.stores.pinecone.access.prime_sdk_decoding``): planning reads both stores from threads of the CLI's
process, and its demo crashed that way once in six runs before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

THREADS = 8  # a copy worker's task slots; unprimed, 8 crash more often than 32 here
#: Runs per test. With priming disabled, 20 (worker) and 9 (store) of 48 runs crashed here, and 10 of 72 without
#: importing workers: 48 clean runs by chance would be about a 1-in-1,300 event at the lowest of those rates.
RUNS = 48
#: One interpreter imports what a process has before its threads first decode (``workers.fleet.tasks`` for a worker,
# as a
#: pool process has before it runs a task), then forks each run from there: every child starts with no response type
#: decoded yet, so its threads make their first decodes at once, and the imports are paid once, not once per run.
FIRST_DECODES_AT_ONCE = textwrap.dedent(
    """
    import os, sys, threading, traceback

    mode, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "worker":
        import nsmigrate.workers.fleet.tasks  # noqa: F401 - what a worker process imports before its pool runs a task
    from pinecone._internal.adapters.vectors_adapter import VectorsAdapter as A
    from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
    from nsmigrate.workers.stores.pinecone.store import PineconeStore

    responses = [
        (A.to_list_response, b'{"vectors":[{"id":"a"}],"pagination":{"next":"t"},"namespace":"n","usage":{}}'),
        (A.to_upsert_response, b'{"upsertedCount":3}'),
        (A.to_fetch_response, b'{"vectors":{"a":{"id":"a","values":[0.5]}},"namespace":"n","usage":{}}'),
        (A.to_stats_response, b'{"namespaces":{"n":{"vectorCount":1}},"dimension":1,"totalVectorCount":1}'),
    ]

    def first_decodes(start):
        start.wait()
        if mode == "store":  # as planning does: each thread's store builds its client, then reads
            PineconeStore(PineconeStoreSpec(host="http://127.0.0.1:1")).connect()
        for decode, body in responses:
            decode(body)

    def run():
        sys.setswitchinterval(1e-6)  # hand the interpreter lock from thread to thread as often as possible
        start = threading.Event()
        pool = [threading.Thread(target=first_decodes, args=(start,)) for _ in range(threads)]
        for t in pool:
            t.start()
        start.set()
        for t in pool:
            t.join()

    # Two runs side by side (this machine's cores): more at a time interleave their threads less, and crash less
    # often unprimed.
    crashed = 0
    for _ in range(0, runs, 2):
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                try:
                    run()
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)  # a Python error, not a crash: the test itself is wrong
                os._exit(0)
            children.append(pid)
        for pid in children:
            status = os.waitpid(pid, 0)[1]
            assert not os.WIFEXITED(status) or os.WEXITSTATUS(status) == 0, "a run failed with a Python error"
            crashed += os.WIFSIGNALED(status)
    print(crashed)
    """
)


def _crashes(mode: str, runs: int) -> int:
    """How many of ``runs`` processes died while their threads first decoded at once."""
    result = subprocess.run(
        [sys.executable, "-c", FIRST_DECODES_AT_ONCE, mode, str(THREADS), str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PINECONE_API_KEY": "any"},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_a_worker_process_survives_its_threads_first_decoding_at_once() -> None:
    assert _crashes("worker", RUNS) == 0


def test_threads_whose_stores_build_their_clients_at_once_survive_their_first_decodes() -> None:
    assert _crashes("store", RUNS) == 0

"""A test's setup waiting out the local data plane's lag when it holds only a store spec (``PineconeSandbox.settle``
over ``POST /_sandbox/settle``): what "the application" wrote before a job is visible to reads, as it would long be
by the time a job runs. Never for what the product itself wrote: that wait is the product's to make."""

from __future__ import annotations

import os

import httpx

from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec, StoreSpec


def settle(*specs: StoreSpec) -> None:
    """Let the reads of each Pinecone index named (by host, or by name on its control plane) see every write so far;
    other stores have no lag to wait out."""
    for spec in specs:
        if not isinstance(spec, PineconeStoreSpec):
            continue
        headers = {"Api-Key": os.environ.get(spec.api_key_env) or "settle"}
        host = spec.host
        if host is None:
            assert spec.control_host is not None, "settle() needs a local data plane: a host or a control host"
            hosts = httpx.get(spec.control_host + "/_sandbox/hosts", headers=headers, timeout=10)
            hosts.raise_for_status()
            host = hosts.json()["indexes"][spec.index]
        httpx.post(host + "/_sandbox/settle", headers=headers, timeout=10).raise_for_status()

"""What this nsmigrate is and runs on: its version, the Pinecone API version it speaks, the Pinecone SDK, Celery and
kombu, for `nsmigrate --version` and the ``nsmigrate_build_info`` metric (workers and `nsmigrate metrics`)."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nsmigrate.workers.stores.pinecone.rest import API_VERSION


def _installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:  # a checkout run without being installed
        return "unknown"


def versions() -> dict[str, str]:
    """Each part's version by the label the metric gives it, in the order `--version` prints them."""
    return {
        "version": _installed("nsmigrate"),
        "pinecone_api_version": API_VERSION,
        "pinecone_sdk_version": _installed("pinecone"),
        "celery_version": _installed("celery"),
        "kombu_version": _installed("kombu"),
        "python_version": platform.python_version(),
    }


def version_text() -> str:
    """`nsmigrate --version`: the version on the first line, what it speaks and runs on below."""
    parts = versions()
    return (
        f"nsmigrate {parts['version']}\n"
        f"Pinecone API {parts['pinecone_api_version']} (SDK {parts['pinecone_sdk_version']})\n"
        f"Celery {parts['celery_version']}, kombu {parts['kombu_version']}\n"
        f"Python {parts['python_version']}"
    )


class BuildInfoCollector(Collector):
    """``nsmigrate_build_info``: always 1, its labels the versions: a fleet running two releases at once shows."""

    def collect(self) -> Iterator[Any]:
        parts = versions()
        info = GaugeMetricFamily(
            "nsmigrate_build_info",
            "1, labelled with nsmigrate's version, the Pinecone API version it speaks and the Pinecone SDK, Celery, "
            "kombu and Python versions it runs on.",
            labels=list(parts),
        )
        info.add_metric(list(parts.values()), 1)
        yield info

"""The tenant guard: a caller gets its own creator's namespaces and nothing else, read exactly (never by prefix)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.records.namespaces import Registry, creator_namespace, twin_namespace
from nsmigrate.orchestrator.tenancy.tenant_guard import TenantError, TenantGuard, latency_percentiles

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9.\-]{0,12}\Z")
ids_with_underscores = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._\-]{0,12}\Z")


@given(ids, ids, ids)
def test_the_guard_refuses_every_other_creators_namespace(creator: str, other: str, twin: str) -> None:
    guard = TenantGuard(creator)
    for name in (twin_namespace(other, twin), creator_namespace(other)):
        assert guard.allows(name) is (creator == other)
        if creator != other:
            with pytest.raises(TenantError, match=repr(name)):
                guard.check(name)
        else:
            assert guard.check(name) == name
    for shared in ("public", "review", "", f"{twin}", f"creator_{creator}x_twin_{twin}"):
        assert not guard.allows(shared)


@given(st.lists(st.tuples(ids_with_underscores, ids_with_underscores), min_size=2, max_size=5), st.data())
def test_with_the_registry_ids_with_underscores_are_guarded_too(
    pairs: list[tuple[str, str]], data: st.DataObject
) -> None:
    registry = Registry({t: c for c, t in pairs}, [c for c, _ in pairs])
    if registry.conflicts():
        return
    creator = data.draw(st.sampled_from([c for c, _ in pairs]))
    guard = TenantGuard(creator, registry)
    for c, t in pairs:
        assert guard.allows(twin_namespace(c, t)) is (c == creator)
        assert guard.allows(creator_namespace(c)) is (c == creator)


def test_a_1_is_not_a_10() -> None:
    guard = TenantGuard("a.1")
    names = ["creator_a.1_twin_x", "creator_a.10_twin_x", "creator_a.1", "creator_a.10", "creator_a.1_twin_y"]
    assert guard.twin_namespaces(names) == ["creator_a.1_twin_x", "creator_a.1_twin_y"]
    assert guard.twin_namespaces(names, twin_ids=["y"]) == ["creator_a.1_twin_y"]


def test_latency_percentiles_with_a_given_clock() -> None:
    ticks = iter([0.0, 0.010, 1.0, 1.030, 2.0, 2.020])  # 10, 30, 20 ms
    assert latency_percentiles(lambda: None, 3, clock=lambda: next(ticks)) == {
        "samples": 3,
        "p50_ms": 20.0,
        "p95_ms": 29.0,
        "p99_ms": 29.8,
    }

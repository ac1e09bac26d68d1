"""What `sync --new-namespaces` plans (``orchestrator.late_runs``): the job's spec narrowed to the namespaces made
after its plan, each selected alone whatever characters its name has."""

from __future__ import annotations

from nsmigrate.orchestrator.late_runs import narrowed
from nsmigrate.orchestrator.planning.selection import exact_pattern, matching
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec

NAMES = ["a*b", "a-b", "ab", "q?", "qq", "[x]", "x", ""]


def spec(**fields: object) -> JobSpec:
    store = {"kind": "pinecone", "api_key_env": "KEY"}
    target = {**store, "index": "dst"}
    return parse_spec({"name": "j", "source": {**store, "index": "src"}, "target": target, **fields})


def test_each_late_namespace_is_selected_alone_glob_characters_and_the_default_namespace_too() -> None:
    for name in NAMES:
        only = narrowed(spec(namespaces={"exclude": ["*"]}), [name])
        assert matching(only, NAMES) == [name], (name, exact_pattern(name))


def test_the_narrowed_spec_takes_the_target_index_as_it_is_and_keeps_the_rest() -> None:
    job = spec(target={"kind": "pinecone", "index": "dst", "api_key_env": "KEY", "create": {"cloud": "aws"}})
    late = narrowed(job, ["x"])
    assert job.target.create is not None and late.target.create is None
    assert late.model_copy(update={"namespaces": job.namespaces, "target": job.target}) == job

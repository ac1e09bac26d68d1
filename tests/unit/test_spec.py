"""The job spec: shipped specs parse, bad specs fail with the field path, the README documents every field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from nsmigrate import migrations
from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.records.namespaces import parse_namespace
from nsmigrate.orchestrator.spec import jobspec as spec_module
from nsmigrate.orchestrator.spec import stores as store_specs
from nsmigrate.orchestrator.spec.jobspec import JobSpec, load_spec, parse_spec, spec_to_json
from nsmigrate.orchestrator.tenancy.creator_mapping import load_twins

README = Path(migrations.__file__).parent / "README.md"
SHIPPED = [
    "creator-namespaces",
    "pgvector-legacy",
    "pgvector-to-pinecone",
    "pinecone-to-pgvector",
    "pod-to-documents",
    "pod-to-serverless",
    "seeds-documents",
    "seeds-integrated",
    "test-creator",
]


def base(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "source": {"kind": "pinecone", "index": "src"},
        "target": {"kind": "pinecone", "host": "http://127.0.0.1:5081"},
    }
    data.update(fields)
    return data


def tables(**fields: Any) -> dict[str, Any]:
    """``base`` between two of the application's pgvector tables."""
    documented = {"kind": "pgvector", "schema": "documented"}
    return base(source=documented, target=dict(documented), **fields)


def test_catalogue_lists_every_shipped_spec() -> None:
    assert sorted(migrations.catalogue()) == SHIPPED
    assert all(p.is_file() for p in migrations.catalogue().values())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_parses(name: str) -> None:
    path = migrations.catalogue()[name]
    spec = load_spec(path)
    assert spec.name == name  # the catalogue name is the job name
    assert "api_key" not in str(spec_to_json(spec)).replace("api_key_env", "")


def test_creator_namespaces_spec() -> None:
    path = migrations.catalogue()["creator-namespaces"]
    spec = load_spec(path)
    assert spec.source == spec.target  # in place, one index
    assert spec.routing.mode == "creator" and spec.routing.creators is not None
    assert spec.enrich.creator_fields and spec.enrich.migrated_from
    assert spec.cleanup.mode == "manual"
    # The mapping file is found relative to the spec, wherever the command runs.
    assert isinstance(load_twins(spec.routing.creators, base_dir=path.parent), dict)


def test_test_creator_spec() -> None:
    spec = load_spec(migrations.catalogue()["test-creator"])
    assert spec.routing.override_creator == "sainath.no.1"
    assert parse_namespace(f"creator_{spec.routing.override_creator}_twin_x").creator_id == "sainath.no.1"


def test_pod_to_serverless_and_pgvector_specs() -> None:
    pod = load_spec(migrations.catalogue()["pod-to-serverless"])
    assert (pod.source.label, pod.target.label, pod.routing.mode) == ("seeds-pod", "seeds-serverless", "same")
    pg = load_spec(migrations.catalogue()["pgvector-legacy"])
    assert pg.source.kind == pg.target.kind == "pgvector"
    assert (pg.source.layout, pg.target.layout) == ("single_table", "table_per_namespace")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "target", "given", "batch_size"),
    [
        pytest.param("pgvector", "pgvector", {}, 10_000, id="tables-default"),
        pytest.param("pgvector", "pgvector", {"batch_size": 200}, 200, id="tables-given"),
        pytest.param("pgvector", "pgvector", {"batch_size": 10_000}, 10_000, id="tables-largest"),
        pytest.param("generic", "pgvector", {}, 100, id="generic-table"),  # its rows become records of floats
        pytest.param("pgvector", "pinecone", {}, 100, id="table-to-index"),
        pytest.param("pinecone", "pgvector", {}, 100, id="index-to-table"),
        pytest.param("pinecone", "pinecone", {}, 100, id="indexes"),
    ],
)
def test_a_copy_between_the_applications_tables_takes_the_largest_batch_unless_told(
    source: str, target: str, given: dict[str, Any], batch_size: int
) -> None:
    stores = {
        "pinecone": {"kind": "pinecone", "index": "i"},
        "pgvector": {"kind": "pgvector", "schema": "documented"},
        "generic": {"kind": "pgvector"},
    }
    spec = JobSpec.model_validate(base(source=stores[source], target=stores[target], **given))
    assert spec.batch_size == batch_size
    assert JobSpec.model_validate(spec_to_json(spec)).batch_size == batch_size  # as the job table keeps it


@pytest.mark.parametrize(
    ("source", "given", "in_flight"),
    [
        pytest.param("pgvector", {}, 2, id="tables-default"),  # parallel_upserts' default
        pytest.param("pgvector", {"parallel_upserts": 3}, 3, id="tables-streams-given"),
        pytest.param("pgvector", {"max_batches_in_flight": 8}, 8, id="tables-given"),
        pytest.param("pgvector", {"reembed": {"dimension": 384}}, 32, id="tables-reembedded"),
        pytest.param("generic", {}, 32, id="generic-table"),
        pytest.param("pinecone", {}, 32, id="indexes"),
    ],
)
def test_a_copy_between_the_applications_tables_streams_into_a_table_as_its_only_batch_would(
    source: str, given: dict[str, Any], in_flight: int
) -> None:
    stores = {
        "pinecone": {"kind": "pinecone", "index": "i"},
        "pgvector": {"kind": "pgvector", "schema": "documented"},
        "generic": {"kind": "pgvector"},
    }
    target = stores["pgvector"] if source != "pinecone" else stores["pinecone"]
    spec = JobSpec.model_validate(base(source=stores[source], target=target, **given))
    assert spec.max_batches_in_flight == in_flight
    assert JobSpec.model_validate(spec_to_json(spec)).max_batches_in_flight == in_flight


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(base(batch_sise=10), ["batch_sise: unknown field"], id="typo"),
        pytest.param(
            base(routing={"mode": "creator", "creators": {"source": "file", "pth": "x.csv"}}),
            ["routing.creators.pth: unknown field"],
            id="nested-typo",
        ),
        pytest.param(
            base(target={"kind": "pinecone", "host": "idx-abc.svc.pinecone.io"}),
            ["target.host: 'idx-abc.svc.pinecone.io' needs its scheme"],
            id="host-without-scheme",
        ),
        pytest.param(
            base(source={"kind": "pinecone", "index": "a", "control_host": "localhost:5080"}),
            ["source.control_host:", "needs its scheme"],
            id="control-host-without-scheme",
        ),
        pytest.param(
            base(source={"kind": "pinecone", "index": "a", "api_key_env": "pcsk_2x9Zq_k3y"}),
            ["source.api_key_env: api_key_env must be the NAME of an environment variable"],
            id="api-key-value",
        ),
        pytest.param(base(batch_size=5000), ["batch_size: Input should be less than or equal to 1000"], id="batch"),
        pytest.param(
            base(source={"kind": "pgvector", "schema": "documented"}, batch_size=5000),
            ["batch_size: Input should be less than or equal to 1000 (the ids of one fetch); up to 10000 between two"],
            id="batch-table-to-index",
        ),
        pytest.param(
            tables(batch_size=10_001), ["batch_size: Input should be less than or equal to 10000"], id="batch-tables"
        ),
        pytest.param(base(batch_size=0), ["batch_size: Input should be greater than 0"], id="batch-zero"),
        pytest.param(
            tables(parallel_upserts=0), ["parallel_upserts: Input should be greater than 0"], id="streams-tables"
        ),
        pytest.param(base(routing={"mode": "explicit"}), ["routing: mode `explicit` needs `map:"], id="explicit"),
        pytest.param(base(routing={"mode": "creator"}), ["routing: mode `creator` needs `creators:`"], id="creator"),
        pytest.param(
            base(routing={"mode": "creator", "override_creator": "a b"}),
            ["routing.override_creator: creator_id 'a b' contains ' '"],
            id="bad-override",
        ),
        pytest.param(
            base(source={"index": "a"}), ["source: a store needs `kind: pinecone` or `kind: pgvector`"], id="kind"
        ),
        pytest.param(
            base(source={"kind": "pinecone", "index": "a", "host": "https://x.io"}),
            ["source: give exactly one of `index`"],
            id="index-and-host",
        ),
        pytest.param(
            base(target={"kind": "pgvector", "table": "Embeddings", "database_url_env": "postgresql://u@h/db"}),
            ["target.table: 'Embeddings' must be a lower-case SQL identifier", "target.database_url_env:"],
            id="pgvector",
        ),
        pytest.param(
            base(routing={"mode": "creator", "creators": {"source": "supabase", "key_env": "eyJhbGciOi"}}),
            ["routing.creators.key_env: key_env must be the NAME"],
            id="supabase-key-value",
        ),
        pytest.param(
            base(cleanup={"mode": "auto"}, auto_verify=False), ["cleanup.mode `auto` needs auto_verify"], id="c"
        ),
        pytest.param(base(name="has space"), ["name: String should match pattern"], id="name"),
        pytest.param(base(rate={"write_rps": 0}), ["rate.write_rps: Input should be greater than 0"], id="rate"),
        pytest.param({"name": "t"}, ["source: Field required", "target: Field required"], id="missing-stores"),
    ],
)
def test_bad_spec_names_the_field(data: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(data, origin="bad.yaml")
    text = str(err.value)
    assert text.startswith("invalid job spec bad.yaml:")
    for part in expected:
        assert part in text
    assert "max_batches_in_flight" not in text  # its default between tables follows parallel_upserts, given or not
    # Values that look like secrets are never echoed.
    assert "2x9Zq" not in text and "eyJhbGciOi" not in text and "postgresql://" not in text


def test_every_problem_is_reported_at_once() -> None:
    data = base(batch_size=5000, typo=1, target={"kind": "pinecone", "host": "x.io"})
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert len(str(err.value).splitlines()) == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: [unclosed\n", "is not valid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("name: t\n", "source: Field required"),
    ],
)
def test_load_spec_errors_name_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(content)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


# --- the README documents every field, and only real ones --------------------------------------------------------

SECTIONS: dict[str, list[type[BaseModel]]] = {
    "Top level": [JobSpec],
    "Stores": [store_specs.PineconeStoreSpec, store_specs.PgvectorStoreSpec],
    "`source.enumerate`": [store_specs.Enumeration, store_specs.IdCatalogue],
    "`target.create`": [store_specs.CreateIndex],
    "`target.records`": [store_specs.TextRecords],
    "`reembed`": [spec_module.Reembed],
    "`namespaces`": [spec_module.NamespaceSelection],
    "`routing`": [spec_module.Routing],
    "`routing.creators`": [spec_module.CreatorMapping],
    "`routing.sources`": [spec_module.SourceTable],
    "`routing.owners`": [spec_module.OwnerTable],
    "`enrich`": [spec_module.Enrichment],
    "`rate`": [spec_module.RateBudget],
    "`verify`": [spec_module.Verification],
    "`cleanup`": [spec_module.Cleanup],
    "`backup`": [spec_module.Backup],
}


def _readme_sections() -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    current = None
    for line in README.read_text().splitlines():
        if line.startswith("### "):
            current = next((key for key in SECTIONS if line[4:].startswith(key)), None)
            sections.setdefault(current or line, set())
        elif line.startswith("## "):
            current = None
        elif current and (m := re.match(r"^\| `(\w+)` \|", line)):
            sections[current].add(m.group(1))
    return sections


@pytest.mark.parametrize("section", list(SECTIONS))
def test_readme_field_table_matches_the_models(section: str) -> None:
    documented = _readme_sections().get(section, set())
    fields = {info.alias or name for model in SECTIONS[section] for name, info in model.model_fields.items()}
    assert documented == fields


def test_readme_examples_parse() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        assert isinstance(parse_spec(yaml.safe_load(block), origin="README"), JobSpec)


@pytest.mark.parametrize(
    ("path", "value"),
    [(("source", "api_key_env"), "PINECONE_API_KEY\n"), (("target", "table"), "embeddings\n")],
)
def test_a_trailing_newline_does_not_sneak_past_a_name_check(path: tuple[str, str], value: str) -> None:
    data = {
        "name": "x",
        "source": {"kind": "pinecone", "host": "https://a.example"},
        "target": {"kind": "pgvector", "table": "embeddings"},
    }
    data[path[0]][path[1]] = value
    with pytest.raises(SpecError, match=f"{path[0]}.{path[1]}"):
        parse_spec(data)


@pytest.mark.parametrize(
    ("tolerance", "cleanup", "refused"),
    [(0.01, "manual", True), (0.01, "auto", True), (0.01, "never", False), (1e-3, "manual", False)],
)
def test_a_spec_that_deletes_must_compare_values_closely(tolerance: float, cleanup: str, refused: bool) -> None:
    # A copy within the tolerance is proved equal and its source deleted: above 1e-3 a copy with other values passes.
    data = base(verify={"tolerance": tolerance}, cleanup={"mode": cleanup})
    if not refused:
        assert parse_spec(data).verify.tolerance == tolerance
        return
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    message = " ".join(str(err.value).split())
    assert f"cleanup.mode: `{cleanup}`" in message and "verify.tolerance: 0.01, above 0.001" in message

"""Seeds 000–002, the erasure story: every twin and the default namespace filed under the test creator
``sainath.no.1`` (with a backup), one of those twins erased; then the creator namespaces made in place, and creator
``a.1`` erased everywhere — its namespaces, its old UUID namespaces, its vectors in the default namespace, the copies
of its twins under the test creator and its rows in the backup — while ``a.10`` stays; then an archive exported
before that erasure is imported with overwrite, and the erasure ledger holds every record of ``a.1`` back. Each
erasure prints its receipt; the scenario checks the outcome independently and exits 0 only when every job verified,
every place was checked empty, the ledger held records back and nothing of ``a.10`` changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from nsmigrate.cli.backup import backup_store, export_with_progress, import_cmd
from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, demo_stack
from nsmigrate.cli.erasure import erase_everywhere
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.spec.jobspec import load_spec
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate.workers.stores.backup.importing import close_store
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset, write_twins_csv

TEST_CREATOR = "sainath.no.1"
ERASED, KEPT = "a.1", "a.10"


def run(options: DemoOptions) -> int:
    seed = seed_dataset()
    test_spec, creator_spec = catalogue()["test-creator"], catalogue()["creator-namespaces"]
    pod = load_yaml(test_spec.read_text(), str(test_spec))["source"]["index"]
    serverless = load_yaml(test_spec.read_text(), str(test_spec))["target"]["index"]
    console.print(f"[bold]nsmigrate demo erase[/]: {test_spec.name}, then {creator_spec.name}, then two erasures")
    indexes = [
        IndexSpec(pod, dimension=seed.dimension, metric="cosine", kind="pod"),
        IndexSpec(serverless, dimension=seed.dimension, metric="cosine"),
    ]
    with demo_stack(indexes, options) as demo:
        seed.load_into(demo.stack.pinecone, pod)
        work = demo.stack.workdir
        twins_csv = write_twins_csv(seed.twins, work / "seed-twins.csv")
        backups = work / "backups"

        def with_backup(data: dict[str, Any]) -> None:
            data["backup"] = {"enabled": True, "directory": str(backups)}

        test_file = demo.write_spec(test_spec, with_backup)
        codes = [demo.run_job(test_file).code]
        twin = next(t for t, c in sorted(seed.twins.items()) if c not in (ERASED, KEPT))
        console.rule(f"erase twin {twin} of the test creator {TEST_CREATOR}")
        first = erase_everywhere(demo.db, demo.settings, TEST_CREATOR, twin, work / "receipt-twin.json")

        creator_file = demo.write_spec(creator_spec, _mapping(twins_csv))
        codes.append(demo.run_job(creator_file).code)
        kept_before = _of_creator(demo, [pod, serverless], seed, KEPT)
        archive = _archive(test_file, work / "archive")  # the serverless copies, a.1's twins among them
        console.rule(f"erase creator {ERASED} everywhere ({KEPT} must stay)")
        second = erase_everywhere(demo.db, demo.settings, ERASED, None, work / "receipt-creator.json")
        console.rule(f"import an archive made before the erasure: the erasure ledger holds {ERASED}'s records back")
        import_cmd(archive, test_file, overwrite=True, yes=True, database_url=demo.settings.database_url)
        held = sum(
            e["detail"]["records"]
            for e in jobs_status.events_of(demo.db, second["job_id"])
            if e["action"] == "write_held_back"
        )

        left = _of_creator(demo, [pod, serverless], seed, ERASED)
        kept_after = _of_creator(demo, [pod, serverless], seed, KEPT)
        _print_outcome(left, kept_before, kept_after, backups, seed)
        console.print(f"the erasure ledger held back {held} of {ERASED}'s records from the import")
        ok = not any(left.values()) and kept_after == kept_before and first["verified"] and second["verified"]
        ok = ok and held > 0
        return 0 if ok and not any(codes) else 1


def _archive(spec_file: Path, directory: Path) -> Path:
    """Every namespace of the spec's target exported to ``directory``: an operator's archive."""
    spec = load_spec(spec_file)
    store = backup_store(spec.target)
    try:
        export_with_progress(
            store,
            store.namespaces(),
            directory,
            freshness_timeout_s=spec.verify.freshness_timeout_s,
            again="demo erase",
        )
    finally:
        close_store(store)
    return directory


def _mapping(twins_csv: Path) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["routing"]["creators"] = {"source": "file", "path": str(twins_csv)}

    return edit


def _of_creator(demo: DemoStack, indexes: list[str], seed: SeedData, creator: str) -> dict[str, int]:
    """Vectors of ``creator``'s data in each namespace of ``indexes`` (by id: the seed knows whose each vector is),
    read with the SDK, independently of the erasure's receipt."""
    theirs = {
        vid
        for ns, records in seed.namespaces.items()
        for vid, _values, meta in records
        if seed.twins[ns or meta["twin_id"]] == creator
    }
    found: dict[str, int] = {}
    for name in indexes:
        index = demo.index(name)
        for ns in index.describe_index_stats().namespaces:
            fetched = index.fetch(ids=sorted(theirs)[:1000], namespace=ns).vectors if theirs else {}
            if fetched:
                found[f"{name}/{ns}"] = len(fetched)
    return found


def _print_outcome(
    left: dict[str, int], before: dict[str, int], after: dict[str, int], backups: Path, seed: SeedData
) -> None:
    table = Table(title=f"after the erasures: {ERASED} (erased) and {KEPT} (kept), read back from the indexes")
    for col in ("place", f"{ERASED} vectors", f"{KEPT} before", f"{KEPT} after"):
        table.add_column(col, justify="left" if col == "place" else "right")
    for place in sorted(set(left) | set(before) | set(after)):
        table.add_row(place, str(left.get(place, 0)), str(before.get(place, 0)), str(after.get(place, 0)))
    console.print(table)
    files = sorted(p.name for p in backups.rglob("*.parquet"))
    a1_twins = sorted(t for t, c in seed.twins.items() if c == ERASED)
    console.print(
        f"{ERASED}: {sum(left.values())} vectors left anywhere; backup files of its twins left: "
        f"{[f for f in files if f.removesuffix('.parquet') in a1_twins]}; {KEPT}: "
        f"{'unchanged' if before == after else 'CHANGED'} ({sum(after.values())} vectors in {len(after)} namespaces)"
    )

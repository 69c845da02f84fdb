"""DAG integrity: files parse without errors or heavy imports; every DAG is wired as designed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = ROOT / "dags"
PROBE = Path(__file__).with_name("dagbag_probe.py")
MARKER = "DAGBAG_PROBE_JSON "
SYNC_TASKS = ["land", "stage", "validate", "map_to_fhir", "apply_deletions", "reconcile"]
FAKE_HOSPITALS = ["east_liver", "west_lung"]
DAG_FILES = sorted(path.name for path in DAGS_DIR.glob("*.py"))


def make_tree(base: Path, hospitals: list[str]) -> Path:
    """A copy of dags/ next to a mappings/ folder holding only the given hospitals and _shared."""
    shutil.copytree(DAGS_DIR, base / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    for name in [*hospitals, "_shared"]:
        (base / "mappings" / name).mkdir(parents=True)
        (base / "mappings" / name / "source.yaml").write_text("{}\n")
    (base / "mappings" / "no_source_yet").mkdir()
    return base / "dags"


def airflow_env(home: Path, dags_folder: Path) -> dict[str, str]:
    """Airflow reads these at import time, so they go to the subprocess, never to os.environ."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW") and k != "WALNUT_MAPPINGS"
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
    )
    return env


def read_probe(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len(MARKER) :])


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One fresh interpreter (Airflow's own import costs 4-25 s here, depending on load)."""
    base = tmp_path_factory.mktemp("dag_integrity")
    two = make_tree(base / "two", FAKE_HOSPITALS)
    empty = make_tree(base / "empty", [])
    proc = subprocess.run(
        [
            sys.executable,
            str(PROBE),
            *(str(two / n) for n in DAG_FILES),
            "--bags",
            str(two),
            str(empty),
            str(DAGS_DIR),
        ],
        env=airflow_env(base / "airflow_home", two),
        cwd=base,
        capture_output=True,
        text=True,
        timeout=180,
    )
    result = read_probe(proc)
    bags = result["bags"]
    return {
        "two": bags[str(two)],
        "empty": bags[str(empty)],
        "real": bags[str(DAGS_DIR)],
        "airflow_import_seconds": result["airflow_import_seconds"],
        "files": result["files"],
    }


def test_dag_files_exist() -> None:
    assert DAG_FILES == ["walnut_build.py", "walnut_sync.py"]


@pytest.mark.parametrize("tree", ["two", "empty", "real"])
def test_dag_bag_has_no_import_errors(probes: dict, tree: str) -> None:
    assert probes[tree]["import_errors"] == {}


def test_one_sync_dag_per_hospital_folder_with_source_yaml(probes: dict) -> None:
    assert sorted(probes["two"]["dags"]) == [
        "walnut_build_warehouse",
        "walnut_sync_east_liver",
        "walnut_sync_west_lung",
    ]


def test_real_mappings_each_get_a_sync_dag(probes: dict) -> None:
    hospitals = sorted(
        p.parent.name
        for p in (ROOT / "mappings").glob("*/source.yaml")
        if not p.parent.name.startswith("_")
    )
    expected = {"walnut_build_warehouse", *(f"walnut_sync_{h}" for h in hospitals)}
    assert set(probes["real"]["dags"]) == expected


def test_without_hospitals_the_build_dag_is_manual(probes: dict) -> None:
    dags = probes["empty"]["dags"]
    assert list(dags) == ["walnut_build_warehouse"]
    assert dags["walnut_build_warehouse"]["timetable"] == "NullTimetable"


def test_every_dag_has_tags_retries_and_no_catchup(probes: dict) -> None:
    for dag_id, dag in probes["two"]["dags"].items():
        assert "walnut" in dag["tags"], dag_id
        assert dag["catchup"] is False, dag_id
        assert dag["max_active_runs"] == 1, dag_id
        assert dag["doc_md"].startswith("# Walnut"), dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, (dag_id, task_id)
            assert task["retry_exponential_backoff"] > 1, (dag_id, task_id)
            assert task["retry_delay_seconds"] == 60, (dag_id, task_id)
            assert task["execution_timeout_seconds"], (dag_id, task_id)


@pytest.mark.parametrize("hospital", FAKE_HOSPITALS)
def test_sync_dag_is_wired_land_to_reconcile(probes: dict, hospital: str) -> None:
    dag = probes["two"]["dags"][f"walnut_sync_{hospital}"]
    assert dag["tags"] == sorted(["walnut", "sync", hospital])
    assert dag["task_order"] == SYNC_TASKS
    tasks = dag["tasks"]
    # every task after land reads the batch id from land's XCom and follows its predecessor
    for before, after in zip(SYNC_TASKS, SYNC_TASKS[1:], strict=False):
        assert tasks[after]["upstream"] == sorted({"land", before})
    assert tasks["land"]["operator"] == "_ShortCircuitDecoratedOperator"
    assert tasks["reconcile"]["outlets"] == [f"walnut_fhir_{hospital}"]
    assert hospital in dag["doc_md"]


@pytest.mark.parametrize("hospital", FAKE_HOSPITALS)
def test_sync_dag_runs_nightly_at_two_in_shanghai(probes: dict, hospital: str) -> None:
    dag = probes["two"]["dags"][f"walnut_sync_{hospital}"]
    assert (dag["timetable"], dag["cron"], dag["timezone"]) == (
        "CronTriggerTimetable",
        "0 2 * * *",
        "Asia/Shanghai",
    )


def test_build_dag_is_triggered_by_any_hospital_asset(probes: dict) -> None:
    dags = probes["two"]["dags"]
    build = dags["walnut_build_warehouse"]
    outlets = sorted(
        name
        for dag_id, dag in dags.items()
        if dag_id.startswith("walnut_sync_")
        for name in dag["tasks"]["reconcile"]["outlets"]
    )
    assert build["timetable"] == "AssetTriggeredTimetable"
    assert (
        build["schedule_assets"] == outlets == ["walnut_fhir_east_liver", "walnut_fhir_west_lung"]
    )
    assert build["task_order"] == ["build_warehouse"]


def test_deterministic_failures_fail_fast_and_others_retry(probes: dict) -> None:
    """A failed critical check or an unbalanced batch will fail again: no retries for them."""
    assert probes["two"]["failures"] == {
        "validate": "AirflowFailException",
        "reconcile": "AirflowFailException",
        "stage": "OSError",
    }


@pytest.mark.parametrize("name", DAG_FILES)
def test_dag_file_has_no_heavy_top_level_imports(probes: dict, name: str) -> None:
    assert probes["files"][name]["heavy_modules"] == []


@pytest.mark.parametrize("name", DAG_FILES)
def test_dag_file_parse_time_is_measured(probes: dict, name: str) -> None:
    """Parse cost is reported, not asserted (timings belong to benchmarks/); what keeps it low
    is enforced above: no heavy imports at DAG-file top level."""
    seconds = probes["files"][name]["seconds"]
    print(f"{name}: {seconds:.3f}s after Airflow's {probes['airflow_import_seconds']:.1f}s")
    assert seconds >= 0

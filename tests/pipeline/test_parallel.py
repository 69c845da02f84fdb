"""`walnut sync --all` syncs hospitals in parallel processes with the same outcome as in turn."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import pipeline.parallel as parallel
import pipeline.sync as sync
from pipeline.cli import app
from pipeline.settings import Settings, load_settings
from transforms.errors import ConfigError

HOSPITALS = ("east_liver", "north_chest", "south_general")


def _home(root: Path) -> Settings:
    from synthetic.generate import generate_all

    settings = load_settings({"WALNUT_HOME": str(root), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=15, seed=7)
    return settings


def _resource_ids(settings: Settings, hospital: str) -> set[str]:
    return {
        orjson.loads(line)["id"]
        for path in (settings.fhir / hospital).glob("*/[!_]*.ndjson")
        for line in path.read_bytes().splitlines()
    }


COUNTS = ("status", "read", "loaded", "quarantined", "dropped", "resources")


@pytest.mark.slow
def test_parallel_sync_equals_sync_in_turn(tmp_path: Path) -> None:
    together, in_turn = _home(tmp_path / "a"), _home(tmp_path / "b")
    runs_together = dict(parallel.sync_hospitals(HOSPITALS, together, jobs=2))
    runs_in_turn = dict(parallel.sync_hospitals(HOSPITALS, in_turn, jobs=1))
    assert sorted(runs_together) == sorted(HOSPITALS)
    for hospital in HOSPITALS:
        a, b = runs_together[hospital], runs_in_turn[hospital]
        assert {k: a[k] for k in COUNTS} == {k: b[k] for k in COUNTS}
        assert a["status"] == "success" and a["resources"] > 0
        assert _resource_ids(together, hospital) == _resource_ids(in_turn, hospital)


def _fail_north(hospital: str, settings: Settings) -> None:
    if hospital == "north_chest":
        raise ConfigError("north_chest: mapping broken for the test")
    return None  # nothing new


def _sync_all_with(
    fake: Callable[[str, Settings], str | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    finish: Callable[[str, str, Settings], dict] | None = None,
) -> dict[str, dict | Exception]:
    """`sync_hospitals` over every hospital and one unknown, two at a time, with `fake` as
    each hospital's landing and staging and `finish` as the rest (forked processes inherit
    the patches)."""
    monkeypatch.setattr(sync, "land_and_stage", fake)
    if finish is not None:
        monkeypatch.setattr(sync, "finish_batch", finish)
    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    return dict(parallel.sync_hospitals([*HOSPITALS, "no_such_hospital"], settings, jobs=2))


def test_one_failing_hospital_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _sync_all_with(_fail_north, tmp_path, monkeypatch)
    assert isinstance(runs["north_chest"], ConfigError)
    assert runs["east_liver"]["status"] == runs["south_general"]["status"] == "nothing new"


def test_cli_reports_every_hospital_and_exits_2_on_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "land_and_stage", _fail_north)
    monkeypatch.setenv("WALNUT_HOME", str(tmp_path))
    monkeypatch.setenv("WALNUT_DEMO", "1")
    for hospital in HOSPITALS:
        (tmp_path / "sources" / hospital).mkdir(parents=True)
    result = CliRunner().invoke(app, ["sync", "--all", "--jobs", "2"])
    assert result.exit_code == 2
    assert "east_liver: nothing new to land" in result.output
    assert "south_general: nothing new to land" in result.output
    assert "north_chest: failed" in result.output
    assert "mapping broken for the test" in result.output


def test_jobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALNUT_SYNC_JOBS", "3")
    assert parallel.default_jobs() == 3
    monkeypatch.delenv("WALNUT_SYNC_JOBS")
    assert parallel.default_jobs() >= 1


def test_cli_names_a_bad_jobs_setting_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WALNUT_HOME", str(tmp_path))
    monkeypatch.setenv("WALNUT_DEMO", "1")
    monkeypatch.setenv("WALNUT_SYNC_JOBS", "two")
    for hospital in HOSPITALS:
        (tmp_path / "sources" / hospital).mkdir(parents=True)
    result = CliRunner().invoke(app, ["sync", "--all"])
    assert result.exit_code == 2
    assert "WALNUT_SYNC_JOBS must be a whole number of processes" in result.output
    assert "Traceback" not in result.output


def _die_in_north(hospital: str, settings: Settings) -> None:
    if hospital == "north_chest":
        os._exit(9)  # as a native crash or the OOM killer ends a process: no result sent
    return None


def test_a_hospital_process_that_dies_is_reported_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _sync_all_with(_die_in_north, tmp_path, monkeypatch)
    assert isinstance(runs["north_chest"], parallel.SyncProcessDied)
    assert "exit code 9" in str(runs["north_chest"])
    assert runs["east_liver"]["status"] == runs["south_general"]["status"] == "nothing new"


def _staged_here(hospital: str, settings: Settings) -> str:
    marker = settings.home / "staged"
    marker.mkdir(exist_ok=True)
    (marker / hospital).touch()
    return f"batch-{os.getpid()}"


def _finished_here(hospital: str, batch_id: str, settings: Settings) -> dict:
    return {"hospital": hospital, "staged_in": int(batch_id[6:]), "pid": os.getpid()}


def test_every_hospital_is_finished_in_a_fresh_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _sync_all_with(_staged_here, tmp_path, monkeypatch, finish=_finished_here)
    pids = {run["pid"] for run in runs.values()}
    assert len(pids) == len(runs) == len(HOSPITALS) + 1 and os.getpid() not in pids
    assert not pids & {run["staged_in"] for run in runs.values()}


def test_hospitals_are_staged_while_the_heavy_imports_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With imports slower than staging (a nightly delta), one process forked before them
    stages every hospital, and each is then finished in its own process."""
    everyone = [*HOSPITALS, "no_such_hospital"]

    def slow_preload(hospitals: list[str], settings: Settings) -> None:
        deadline = time.monotonic() + 30
        while len(list((settings.home / "staged").glob("*"))) < len(everyone):
            assert time.monotonic() < deadline, "the early process staged nothing"
            time.sleep(0.01)

    monkeypatch.setattr(parallel, "_preload", slow_preload)
    runs = _sync_all_with(_staged_here, tmp_path, monkeypatch, finish=_finished_here)
    assert sorted(runs) == sorted(everyone)
    (early,) = {run["staged_in"] for run in runs.values()}
    assert early != os.getpid()
    assert len({run["pid"] for run in runs.values()} | {early}) == len(everyone) + 1


def test_hospitals_are_staged_without_the_heavy_imports_even_when_these_end_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With staging slower than the imports (a ~1M-row load), every hospital is still staged
    in a process forked before them (both cores' worth), and finished in one forked after."""
    imported: list[int] = []
    monkeypatch.setattr(parallel, "_preload", lambda hospitals, settings: imported.append(1))

    def stage(hospital: str, settings: Settings) -> str:
        time.sleep(0.2)
        return f"{os.getpid()}:{bool(imported)}"

    def finish(hospital: str, batch_id: str, settings: Settings) -> dict:
        pid, seen = batch_id.split(":")
        return {"staged_in": int(pid), "staged_with": seen == "True", "with": bool(imported)}

    runs = _sync_all_with(stage, tmp_path, monkeypatch, finish=finish)
    assert len(runs) == len(HOSPITALS) + 1
    assert all(not run["staged_with"] and run["with"] for run in runs.values())
    stagers = {run["staged_in"] for run in runs.values()}
    assert len(stagers) == 2 and os.getpid() not in stagers


_KILLED_DURING_IMPORTS = """
import multiprocessing, os, sys
import pipeline.parallel as parallel
from pipeline.settings import load_settings

def preload(hospitals, settings):
    with open(sys.argv[1], "w") as out:
        out.write(" ".join(str(p.pid) for p in multiprocessing.active_children()))
    os._exit(9)  # killed while importing: the waiting stagers are never started

parallel._preload = preload
settings = load_settings({"WALNUT_HOME": sys.argv[2], "WALNUT_DEMO": "1"})
list(parallel.sync_hospitals(["east_liver", "north_chest"], settings, jobs=2))
"""


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stagers_waiting_for_the_imports_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    import subprocess
    import sys

    pids_file = tmp_path / "stagers"
    subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _KILLED_DURING_IMPORTS, str(pids_file), str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        check=False,
        timeout=60,
    )
    stagers = [int(pid) for pid in pids_file.read_text().split()]
    assert len(stagers) == 2
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in stagers):
        assert time.monotonic() < deadline, "a stager outlived its parent"
        time.sleep(0.1)


def test_the_early_process_dying_is_reported_for_its_hospital_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_preload(hospitals: list[str], settings: Settings) -> None:
        time.sleep(0.5)  # long enough for the early process to reach north_chest

    monkeypatch.setattr(parallel, "_preload", slow_preload)
    runs = _sync_all_with(_die_in_north, tmp_path, monkeypatch)
    assert isinstance(runs["north_chest"], parallel.SyncProcessDied)
    assert runs["east_liver"]["status"] == runs["south_general"]["status"] == "nothing new"
    assert runs["no_such_hospital"]["status"] == "nothing new"


def test_plans_are_warmed_for_each_hospitals_own_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suites' plans are built before forking for the date the workers validate on: the
    day in each hospital's time zone, which is not the machine's for part of every day."""
    import expectations.runner
    from pipeline.sync import hospital_run_date

    warmed: list = []
    monkeypatch.setattr(expectations.runner, "warm_up", lambda tables, day: warmed.append(day))
    _sync_all_with(_fail_north, tmp_path, monkeypatch)
    assert warmed == sorted({hospital_run_date(h) for h in HOSPITALS})


def test_hospitals_with_the_most_source_bytes_start_first(tmp_path: Path) -> None:
    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    for hospital, size in (("east_liver", 10), ("north_chest", 3), ("south_general", 50)):
        folder = settings.source_dir(hospital) / "exports"
        folder.mkdir(parents=True)
        (folder / "a.csv").write_bytes(b"x" * size)
    order = parallel.largest_first(["no_such_hospital", *HOSPITALS], settings)
    assert order == ["south_general", "east_liver", "north_chest", "no_such_hospital"]

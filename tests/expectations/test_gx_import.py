"""GX is imported with scipy.stats and altair deferred until first use; validation is unchanged."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from expectations.gx_import import deferred_imports

REPO = Path(__file__).resolve().parents[2]


def test_a_deferred_module_runs_on_first_attribute_access(tmp_path, monkeypatch):
    (tmp_path / "walnut_probe_heavy.py").write_text(
        "import builtins\nbuiltins.walnut_probe_ran = True\nVALUE = 42\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "walnut_probe_heavy", raising=False)
    import builtins

    monkeypatch.setattr(builtins, "walnut_probe_ran", False, raising=False)
    with deferred_imports(["walnut_probe_heavy"]):
        import walnut_probe_heavy
    assert builtins.walnut_probe_ran is False
    assert walnut_probe_heavy.VALUE == 42
    assert builtins.walnut_probe_ran is True
    sys.modules.pop("walnut_probe_heavy")


def test_other_modules_import_as_usual_and_the_finder_is_removed(tmp_path, monkeypatch):
    (tmp_path / "walnut_probe_plain.py").write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.meta_path)
    with deferred_imports(["walnut_probe_heavy"]):
        import walnut_probe_plain
    assert type(walnut_probe_plain).__name__ == "module"
    assert sys.meta_path == before
    sys.modules.pop("walnut_probe_plain")


def test_gx_validates_without_executing_scipy_stats_or_altair():
    """In a fresh interpreter: a real suite runs, the deferred modules stay unexecuted, and
    scipy.stats still works when something asks for it."""
    script = textwrap.dedent(
        """
        import sys
        from expectations.runner import validate_frame
        from tests.expectations.suite_frames import RUN_DATE, make_frame, make_row

        frame = make_frame("lab", [make_row("lab", "base")], "numpy")
        outcome = validate_frame("lab", frame, run_date=RUN_DATE)
        assert outcome.failed_rows == {}, outcome.failed_rows
        assert outcome.results and all(r.success for r in outcome.results)
        kinds = [type(sys.modules[name]).__name__ for name in ("scipy.stats", "altair")]
        print("lazy", *kinds)
        import scipy.stats
        print("norm", scipy.stats.norm.cdf(0.0))
        """
    )
    done = subprocess.run(  # noqa: S603 - our interpreter, a fixed script
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lazy _LazyModule _LazyModule" in done.stdout
    assert "norm 0.5" in done.stdout

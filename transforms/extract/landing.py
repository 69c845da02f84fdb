"""Landing: copy new source files into a batch folder with a manifest (sha256, size, batch id).

A file whose sha256 was landed before is skipped, so a rerun of an unchanged export lands
nothing. A batch folder appears by one rename, complete or not at all, so an interrupted
landing leaves no half batch behind. Landing is inside the hospital boundary: landed files
still hold identifiers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from transforms.mapping import FILE_KINDS, SiteMapping

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class LandedFile:
    """One landed file and the sources (keys in columns.yaml) that read it."""

    sources: list[str]
    name: str
    sha256: str
    size: int
    received_at: str
    extra: dict = field(default_factory=dict)


# Adds non-file extracts (database chunks) to a batch being landed: (mapping, partial batch
# folder, received-at) -> the files it wrote there.
DatabaseLander = Callable[[SiteMapping, Path, str], list[LandedFile]]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(batch_dir: Path) -> list[LandedFile]:
    entries = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8"))["files"]
    return [LandedFile(**entry) for entry in entries]


def landed_batches(landing: Path) -> list[str]:
    """Batch ids already landed for a hospital, oldest first (ids sort by time)."""
    if not landing.is_dir():
        return []
    return sorted(p.name for p in landing.iterdir() if (p / MANIFEST).is_file())


def _landed_hashes(landing: Path) -> set[str]:
    return {f.sha256 for batch in landed_batches(landing) for f in read_manifest(landing / batch)}


def _new_files(mapping: SiteMapping, source_dir: Path, seen: set[str]) -> dict[Path, list[str]]:
    """Files matching a file source's glob and never landed, with the source keys reading them."""
    found: dict[Path, list[str]] = {}
    for spec in mapping.sources:
        if spec.kind not in FILE_KINDS:
            continue
        for path in sorted(source_dir.glob(spec.files)):
            if path.is_file():
                found.setdefault(path, []).append(spec.key)
    return {p: keys for p, keys in found.items() if sha256_of(p) not in seen}


def land_files(
    mapping: SiteMapping,
    source_dir: Path,
    landing: Path,
    land_database: DatabaseLander | None = None,
) -> str | None:
    """Land files (and database chunks) not landed before as a new batch; None if nothing new."""
    has_files = any(s.kind in FILE_KINDS for s in mapping.sources)
    if has_files and not source_dir.is_dir():
        raise FileNotFoundError(
            f"source folder for {mapping.hospital} not found: {source_dir.name}/ "
            "(run `walnut demo-data` or set WALNUT_SOURCES)"
        )
    now = datetime.now(UTC)
    received = now.isoformat(timespec="seconds")
    landing.mkdir(parents=True, exist_ok=True)
    partial = landing / f".{now:%Y%m%dT%H%M%S%f}.partial"
    partial.mkdir()
    try:
        files = []
        new = _new_files(mapping, source_dir, _landed_hashes(landing)) if has_files else {}
        for path, keys in new.items():
            shutil.copy2(path, partial / path.name)
            files.append(
                LandedFile(
                    keys, path.name, sha256_of(partial / path.name), path.stat().st_size, received
                )
            )
        if land_database is not None:
            files += land_database(mapping, partial, received)
        if not files:
            log.info("%s: no new source data", mapping.hospital)
            shutil.rmtree(partial)
            return None
        combined = hashlib.sha256("".join(f.sha256 for f in files).encode()).hexdigest()[:8]
        batch_id = f"{now:%Y%m%dT%H%M%S}Z-{combined}"
        manifest = {
            "hospital": mapping.hospital,
            "batch_id": batch_id,
            "files": [asdict(f) for f in files],
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=1)
        (partial / MANIFEST).write_text(text, encoding="utf-8")
        partial.rename(landing / batch_id)  # atomic: a batch folder is complete or absent
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("%s: landed %d file(s) as batch %s", mapping.hospital, len(files), batch_id)
    return batch_id

"""Landing: copy new source files into a batch folder with a manifest (sha256, size, batch id).

A file whose sha256 was landed before is skipped, so a rerun of an unchanged export lands
nothing. Landing is inside the hospital boundary: landed files still hold identifiers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from transforms.mapping import SiteMapping

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class LandedFile:
    table: str
    name: str
    sha256: str
    size: int
    received_at: str


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


def land_files(mapping: SiteMapping, source_dir: Path, landing: Path) -> str | None:
    """Copy files not landed before into a new batch; returns its id, or None if nothing is new."""
    if not source_dir.is_dir():
        raise FileNotFoundError(
            f"source folder for {mapping.hospital} not found: {source_dir.name}/ "
            "(run `walnut demo-data` or set WALNUT_SOURCES)"
        )
    seen = _landed_hashes(landing)
    new: list[tuple[str, Path, str]] = []
    for spec in mapping.sources:
        for path in sorted(source_dir.glob(spec.files)):
            digest = sha256_of(path)
            if digest in seen:
                continue
            seen.add(digest)
            new.append((spec.table, path, digest))
    if not new:
        log.info("%s: no new source files", mapping.hospital)
        return None
    now = datetime.now(UTC)
    combined = hashlib.sha256("".join(d for _, _, d in new).encode()).hexdigest()[:8]
    batch_id = f"{now:%Y%m%dT%H%M%S}Z-{combined}"
    staging_dir = landing / f".{batch_id}.partial"
    staging_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for table, path, digest in new:
        shutil.copy2(path, staging_dir / path.name)
        files.append(
            LandedFile(
                table, path.name, digest, path.stat().st_size, now.isoformat(timespec="seconds")
            )
        )
    manifest = {
        "hospital": mapping.hospital,
        "batch_id": batch_id,
        "files": [asdict(f) for f in files],
    }
    (staging_dir / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), "utf-8")
    staging_dir.rename(landing / batch_id)  # atomic: a batch folder is complete or absent
    log.info("%s: landed %d file(s) as batch %s", mapping.hospital, len(files), batch_id)
    return batch_id

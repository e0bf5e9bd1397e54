"""Where uploaded archives live on disk, and how they get there without being held in memory.

An upload streams into a staging file under a size limit; only after it has been checked is it moved
(atomically) to its final path. Multipart uploads keep each part in its own file until completion.
"""

import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tiffin.core.errors import BadRequest, PayloadTooLarge

_COPY_CHUNK = 1024 * 1024


class ArtifactStore:
    def __init__(self, root: Path, max_upload_bytes: int) -> None:
        self.root = root
        self.max_upload_bytes = max_upload_bytes
        self._staging = root / "staging"
        self._parts = root / "parts"
        for folder in (self._staging, self._parts):
            folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, kind: str, repository: str, version: str) -> Path:
        return self.root / f"{kind}s" / repository / f"{version}.tar"

    def new_staging_path(self) -> Path:
        return self._staging / uuid.uuid4().hex

    async def receive(self, chunks: AsyncIterator[bytes], target: Path, limit: int) -> str:
        """Stream `chunks` into `target`; returns the MD5 hex digest. Over `limit` → 413."""
        digest, size = hashlib.md5(usedforsecurity=False), 0
        try:
            with target.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise self.too_large()
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The upload is larger than this server's limit of {self.max_upload_bytes} bytes:"
            " make it smaller or raise TIFFIN_MAX_UPLOAD_BYTES."
        )

    def commit(self, staged: Path, final: Path) -> int:
        """Move a checked staging file into place; returns its size."""
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        return final.stat().st_size

    def part_path(self, upload_id: str, part_number: int) -> Path:
        folder = self._parts / upload_id
        folder.mkdir(exist_ok=True)
        return folder / f"{part_number:05d}"

    def parts_size(self, upload_id: str) -> int:
        folder = self._parts / upload_id
        return sum(p.stat().st_size for p in folder.iterdir()) if folder.exists() else 0

    def assemble(self, upload_id: str, part_numbers: Sequence[int]) -> Path:
        """Concatenate the parts, in the given order, into a new staging file (within the size limit)."""
        parts = [self._parts / upload_id / f"{number:05d}" for number in part_numbers]
        for number, part in zip(part_numbers, parts, strict=True):
            if not part.exists():
                raise BadRequest(f"Part {number} of upload {upload_id} was never uploaded.")
        if sum(part.stat().st_size for part in parts) > self.max_upload_bytes:
            raise self.too_large()
        staged = self.new_staging_path()
        with staged.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, _COPY_CHUNK)
        return staged

    def part_etag(self, upload_id: str, part_number: int) -> str | None:
        part = self._parts / upload_id / f"{part_number:05d}"
        return _md5_file(part) if part.exists() else None

    def discard_parts(self, upload_id: str) -> None:
        shutil.rmtree(self._parts / upload_id, ignore_errors=True)


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()

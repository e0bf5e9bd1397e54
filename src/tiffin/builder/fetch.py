"""Bentos made runnable on a machine without the artifact store: fetched through Tiffin's API.

A Ray node has neither the controller's `TIFFIN_HOME` nor its database. It downloads the bento and
model archives from the same endpoint `bentoml pull` uses (`GET /api/v1/{kind}_repositories/{repo}/
{kind}s/{version}/download`, token in `X-YATAI-API-TOKEN`) into a private folder under the node's
Tiffin directory, and builds with a `Builder` of its own there: the unpacked bentos and the
environments are the node's cache (keyed as on the controller, so one build per node and bento
requirements; `TIFFIN_ENV_CACHE` in the node's environment puts the environments elsewhere, e.g. on a
disk several nodes share), and the archives are deleted once unpacked. A bento already unpacked on
the node is not downloaded again.

`ApiMaterializer` is what the controller hands each Ray actor: picklable, it holds only the API's
address and a token that may read the registry.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tiffin.backends.protocol import BentoRef, Materialize, Materialized
from tiffin.builder.builder import Builder
from tiffin.builder.contract import BuildFailed, BuildRequest
from tiffin.builder.unpack import split_tag

TOKEN_HEADER = "X-YATAI-API-TOKEN"
ENV_CACHE_VARIABLE = "TIFFIN_ENV_CACHE"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ApiMaterializer:
    """Makes bentos runnable under a node's Tiffin directory, fetching them from `api_url`."""

    api_url: str
    token: str = field(repr=False)
    timeout_s: float = 60.0  # between two reads of a download, not for the whole of it
    transport: httpx.BaseTransport | None = field(default=None, repr=False, compare=False)  # tests

    def __call__(self, node_home: Path) -> Materialize:
        cache = os.environ.get(ENV_CACHE_VARIABLE)  # the node's own setting, read on the node
        builder = Builder(node_home / "builds", env_cache=Path(cache).expanduser() if cache else None)
        downloads = node_home / "downloads"

        def materialize(bento: BentoRef) -> Materialized:
            downloads.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="fetch-", dir=downloads))
            try:
                built = builder.build(self._request(builder, bento, folder))
            except BuildFailed as failed:
                raise ValueError(failed.message) from failed
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return Materialized(built.bento_dir, built.python)

        return materialize

    def _request(self, builder: Builder, bento: BentoRef, folder: Path) -> BuildRequest:
        """The archives to build from, downloaded into `folder` unless the bento is unpacked already."""
        request = BuildRequest(
            bento_tag=bento.tag,
            bento_archive=folder / "bento.tar",
            model_archives={tag: folder / f"model-{i}.tar" for i, tag in enumerate(bento.models)},
        )
        if builder.bento_dir(bento.tag).is_dir():
            return request
        self.download("bento", bento.tag, request.bento_archive)
        for tag, path in request.model_archives.items():
            self.download("model", tag, path)
        return request

    def download(self, kind: str, tag: str, dest: Path) -> None:
        """Stream one archive to `dest`; raises OSError with a sentence when it cannot."""
        repo, version = split_tag(tag, kind)
        url = f"{self.api_url.rstrip('/')}/api/v1/{kind}_repositories/{repo}/{kind}s/{version}/download"
        what = f"the {kind} {tag} from {self.api_url}"
        try:
            with (
                httpx.Client(transport=self.transport, timeout=self.timeout_s) as client,
                client.stream("GET", url, headers={TOKEN_HEADER: self.token}) as response,
            ):
                if response.status_code != httpx.codes.OK:
                    response.read()
                    raise OSError(
                        f"could not download {what}: HTTP {response.status_code}: {_message(response)}"
                    )
                with dest.open("wb") as file:
                    for chunk in response.iter_bytes(_CHUNK):
                        file.write(chunk)
        except httpx.HTTPError as error:
            raise OSError(f"could not download {what}: {error}") from error


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)[:200]

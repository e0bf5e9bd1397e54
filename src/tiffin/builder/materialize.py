"""A bento made runnable on this machine from its tag alone: what the local backend materializes with.

Replica specs name a bento by tag (and the models it loads), never by a path, so any backend can run
them anywhere. Here, on the machine that holds the artifact store, that means building from the
stored archives; the environment cache makes it instant once the reconciler's build has run.
"""

from collections.abc import Iterable

from tiffin.artifacts.storage import ArtifactStore
from tiffin.backends.protocol import BentoRef, Materialize, Materialized
from tiffin.builder.builder import Builder
from tiffin.builder.contract import BuildFailed, BuildRequest


def build_request(artifacts: ArtifactStore, bento_tag: str, models: Iterable[str]) -> BuildRequest:
    """The stored archives of a bento and of the models it uses."""
    return BuildRequest(
        bento_tag=bento_tag,
        bento_archive=artifacts.path_for("bento", *bento_tag.split(":", 1)),
        model_archives={tag: artifacts.path_for("model", *tag.split(":", 1)) for tag in models},
    )


def local_materializer(builder: Builder, artifacts: ArtifactStore) -> Materialize:
    def materialize(bento: BentoRef) -> Materialized:
        try:
            built = builder.build(build_request(artifacts, bento.tag, bento.models))
        except BuildFailed as failed:
            raise ValueError(failed.message) from failed
        return Materialized(built.bento_dir, built.python)

    return materialize

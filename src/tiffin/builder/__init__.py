"""The builder: Tiffin's "image build", turning a stored bento into something a replica can run.

`Builder.build` unpacks a bento and its models into a directory bentoml can serve, and gives it an
isolated Python environment built with uv and cached by a hash of what it needs, so bentos with the
same requirements share one environment and later builds are cache hits.
"""

from tiffin.builder.builder import Builder
from tiffin.builder.contract import BuildFailed, BuildRequest, BuiltBento

__all__ = ["BuildFailed", "BuildRequest", "Builder", "BuiltBento"]

"""Deployment endpoints (§3.5): they answer, with a clear 501, until the deployment runtime lands."""

from fastapi import APIRouter

from tiffin.api.auth import ReadCluster
from tiffin.core.errors import NotImplementedYet

router = APIRouter()

_MESSAGE = (
    "Deployments are not available in this version of Tiffin yet: bentos and models can be pushed"
    " and pulled, and deploying them comes with the deployment runtime."
)


@router.api_route("/api/v2/deployments", methods=["GET", "POST"])
@router.api_route("/api/v2/deployments/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
@router.api_route("/api/v1/deployments", methods=["GET"])
def not_yet(_: ReadCluster) -> None:
    raise NotImplementedYet(_MESSAGE)

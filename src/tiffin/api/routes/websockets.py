"""WebSocket endpoints the client opens during `bentoml deploy` (docs/bentocloud-api.md §3.7).

Tiffin has no builder pods to stream from; answering the pod lookup at once with an empty list keeps
the client polling status quietly instead of printing a traceback. Build logs are served by
`GET /api/v2/deployments/{name}/logs` and `tiffin logs`.
"""

from fastapi import APIRouter, WebSocket

from tiffin.api.context import ApiContext
from tiffin.core.errors import Unauthorized
from tiffin.store.tokens import authenticate

router = APIRouter()


@router.websocket("/ws/v1/clusters/{cluster}/pods")
async def builder_pods(websocket: WebSocket, cluster: str) -> None:
    context: ApiContext = websocket.app.state.context
    try:
        with context.db.session() as session:
            authenticate(session, websocket.headers.get("x-yatai-api-token"), context.clock.now())
    except Unauthorized:
        await websocket.close(code=1008)
        return
    await websocket.accept()
    await websocket.send_json({"type": "success", "message": f"no builder pods in {cluster}", "payload": []})
    await websocket.close()

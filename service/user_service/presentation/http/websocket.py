"""WebSocket upgrades: the service has no WebSocket endpoint, so every handshake is refused with a 404
problem carrying the headers of every answer (the ASGI WebSocket Denial Response extension), instead of
the server's bare 403."""

from starlette.types import Receive, Scope, Send

from user_service.presentation.http import problem_details
from user_service.presentation.http.headers import every_answer, request_id


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    rid = request_id(scope)
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    problem = problem_details.body(
        404, f"{scope['path']} accepts no WebSocket connections.", instance=scope["path"], request_id=rid
    )
    content = problem_details.render(problem)
    headers = [
        (b"content-type", problem_details.PROBLEM_JSON.encode()),
        (b"content-length", str(len(content)).encode()),
        *every_answer(rid),
    ]
    await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": content})

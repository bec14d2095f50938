"""Real framework applications for -k asgi: Starlette and FastAPI, with path and query
parameters, JSON validation errors, a streaming response, a file upload, a background
task, a WebSocket route and a lifespan that fills the request state."""

import contextlib
import os

from fastapi import BackgroundTasks, FastAPI, File, UploadFile
from fastapi import WebSocket as FastWebSocket
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

MARKS = os.environ.get("ASGI_MARKS", "/tmp")


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}


# -- Starlette ------------------------------------------------------------------------------


async def user(request):
    return JSONResponse(
        {
            "id": request.path_params["user_id"],
            "q": request.query_params.get("q"),
            "greeting": request.state.greeting,
            "root_path": request.scope.get("root_path"),
            "url": str(request.url),
        }
    )


async def numbers(request):
    async def gen():
        for i in range(5):
            yield f"{i}\n".encode()

    return StreamingResponse(gen(), media_type="text/plain")


async def echo_ws(websocket):
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(f"echo: {message}")


starlette_app = Starlette(
    routes=[
        Route("/users/{user_id:int}", user),
        Route("/numbers", numbers),
        Route("/", lambda request: PlainTextResponse("starlette")),
        WebSocketRoute("/ws", echo_ws),
    ],
    lifespan=lifespan,
)


# -- FastAPI --------------------------------------------------------------------------------

fastapi_app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price}


@fastapi_app.get("/sync")
def sync_endpoint():
    return {"sync": True, "pid": os.getpid()}


@fastapi_app.post("/upload")
async def upload(file: UploadFile = File(...)):  # noqa: B008
    data = await file.read()
    return {"filename": file.filename, "size": len(data)}


def _write_mark(name: str) -> None:
    with open(os.path.join(MARKS, "background"), "a") as f:
        f.write(name + "\n")


@fastapi_app.post("/notify/{name}")
async def notify(name: str, tasks: BackgroundTasks):
    tasks.add_task(_write_mark, name)
    return {"queued": name}


@fastapi_app.get("/stream")
async def stream():
    async def gen():
        for i in range(3):
            yield f"chunk {i}\n"

    return StreamingResponse(gen(), media_type="text/plain")


@fastapi_app.websocket("/ws/{room}")
async def room(websocket: FastWebSocket, room: str):
    await websocket.accept()
    while True:
        data = await websocket.receive_json()
        await websocket.send_json({"room": room, "got": data})

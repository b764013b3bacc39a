"""Anchor (a): the stack's ceiling. Parses the same JSON body, answers a constant, runs no model."""

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ANSWER = orjson.dumps({"forecasts": [{"mean": [0.0] * 10}]})

app = FastAPI()


@app.post("/v1/models/{name}/forecast")
async def forecast(name: str, request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")

"""A bare FastAPI endpoint on the services' server settings: the raw limit of an HTTP request here.

`python -m bench.bare_app --port N` serves POST /v1/portal/verify taking and answering the same
shapes as the gateway's (a pydantic body in, a pydantic answer out) with no work in between,
under uvicorn exactly as `mfaplane_chassis.service.main` runs a service (one process,
log_config=None, access_log=False, 127.0.0.1).
"""

from __future__ import annotations

import argparse
import secrets

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI(title="bench bare endpoint")
SESSION = secrets.token_urlsafe(64)


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenge: str = Field(min_length=1, max_length=1000)
    code: str = Field(pattern=r"^[0-9]{6}$")


class Answer(BaseModel):
    outcome: str
    challenge: str | None = None
    session: str | None = None


@app.post("/v1/portal/verify")
async def verify(body: CodeBody) -> Answer:
    return Answer(outcome="signed_in", session=SESSION)


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "alive"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)

"""The agents as a web service, for direct use next to the job workers: `python -m agent.service`.

    POST /propose   {"parent": 3 | null, "seed": 0, "fidelity": "smoke"}  -> a design (not stored)
    POST /check     {"program": "...", "fidelity": "smoke"}                -> the engineer's check report
    POST /analyse   {"experiment": 7}                                     -> analysis and fitness (stored)
    GET  /health

It talks to the candidate API at API_URL with API_TOKEN; writes need the same bearer token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from database.client import ApiClient, ApiError
from database.deps import tokens_match


class ServiceSettings(BaseSettings):
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = "dev-token"
    run_dir: Path = Path("runs/default")


class ProposeRequest(BaseModel):
    parent: int | None = Field(default=None, description="experiment index; default: sampled from the pool")
    seed: int = 0
    fidelity: str = "smoke"


class CheckRequest(BaseModel):
    program: str = Field(min_length=1, max_length=1_000_000)
    fidelity: str = "smoke"


class AnalyseRequest(BaseModel):
    experiment: int = Field(ge=1)


def create_service(settings: ServiceSettings | None = None, client: ApiClient | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.client = client or ApiClient(settings.api_url, settings.api_token)
        yield
        if client is None:
            await app.state.client.aclose()

    app = FastAPI(title="Architecture discovery agents", lifespan=lifespan)

    def write_auth(authorization: str | None = Header(default=None)) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not tokens_match(token, settings.api_token):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health() -> dict:
        client: ApiClient = app.state.client
        try:
            upstream = await client.health()
        except (ApiError, OSError) as err:
            return {"status": "degraded", "api": str(err)}
        return {"status": "ok", "api": upstream.get("status")}

    @app.post("/propose", dependencies=[Depends(write_auth)])
    async def propose(body: ProposeRequest) -> dict:
        client: ApiClient = app.state.client
        from agent import researcher
        from agent.llm import get_llm

        try:
            if body.parent is None:
                parent, references = await researcher.sample_parent(client, body.fidelity, body.seed)
            else:
                parent, references = await client.get_experiment(body.parent), []
        except ApiError as err:
            raise HTTPException(err.status if err.status < 500 else 502, str(err.detail)) from err
        llm = get_llm("researcher")
        if llm is None:
            design, origin = next(researcher.offline_designs(parent, body.seed)), "offline"
        else:
            design, origin = await researcher.llm_design(llm, client, parent, references, body.fidelity), "llm"
        return {**design.model_dump(exclude={"edits"}), "origin": origin, "parent": parent["index"],
                "references": [r["index"] for r in references]}

    @app.post("/check", dependencies=[Depends(write_auth)])
    async def check(body: CheckRequest) -> dict:
        from agent.checks import check_program
        from trainer.fidelity import get_fidelity

        try:
            fidelity = get_fidelity(body.fidelity)
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        workdir = Path(tempfile.mkdtemp(prefix="check-", dir=_scratch(settings)))
        return await asyncio.to_thread(check_program, body.program, fidelity, workdir)

    @app.post("/analyse", dependencies=[Depends(write_auth)])
    async def analyse(body: AnalyseRequest) -> dict:
        client: ApiClient = app.state.client
        from agent.analyst import handle_analyse
        from database.worker import CandidateError

        try:
            outcome = await handle_analyse({"id": "direct", "experiment": body.experiment}, client)
        except ApiError as err:
            raise HTTPException(err.status if err.status < 500 else 502, str(err.detail)) from err
        except CandidateError as err:
            raise HTTPException(409, str(err)) from err
        experiment = await client.get_experiment(body.experiment)
        return {"experiment": body.experiment, "fitness": outcome.result.get("fitness"),
                "analysis": experiment.get("analysis")}

    return app


def _scratch(settings: ServiceSettings) -> Path:
    path = settings.run_dir / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("AGENT_PORT", "8100")))
    args = parser.parse_args(argv)
    uvicorn.run(create_service(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()

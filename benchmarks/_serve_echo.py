"""A bare Ray Serve echo deployment (FastAPI ingress, the same route shape as the app):
the ceiling bench_serve compares /predict against."""

from fastapi import FastAPI, Request
from ray import serve
from ray.serve import Application

echo_api = FastAPI()


@serve.deployment(name="echo", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(echo_api)
class Echo:
    @echo_api.post("/predict")
    async def predict(self, request: Request) -> dict:  # type: ignore[type-arg]
        body: dict = await request.json()  # type: ignore[type-arg]
        return body


def build_echo(max_ongoing_requests: int) -> Application:
    return Echo.options(max_ongoing_requests=max_ongoing_requests).bind()  # type: ignore[attr-defined,no-any-return]

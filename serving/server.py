"""`e2llm serve`'s HTTP server: the OpenAI-style routes over a `VLLMEEGEmotionPipeline` (FastAPI, which vLLM brings).

Routes: `GET /health`, `GET /v1/models`, `POST /v1/eeg-emotion`, `POST /v1/chat/completions` (request and response
formats: `e2llm.serving.requests`). Handlers run in FastAPI's thread pool; every request's prompts go to the one
vLLM engine, which batches them with everyone else's. A refused request gets HTTP 400 with OpenAI's error shape
`{"error": {"message", "type": "invalid_request_error"}}`.
"""

from __future__ import annotations

import time

from .requests import DEFAULT_MAX_EEG_VALUES, RequestError, chat_call, chat_response, jsonable, pipeline_call


def create_app(pipe, served_name: str, max_eeg_values: int = DEFAULT_MAX_EEG_VALUES):
    """The FastAPI application serving `pipe` (a `VLLMEEGEmotionPipeline`) under the model name `served_name`."""
    from fastapi import Body, FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="e2llm serve", description="EEG -> emotion label, probabilities and rationale (E2LLM on vLLM)")
    created = int(time.time())

    def refuse(error: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": {"message": str(error), "type": "invalid_request_error"}}, status_code=status)

    def run(call, body):
        try:
            eeg, kwargs = call(body)
            return None, pipe(eeg, **kwargs)
        except ValueError as error:  # RequestError, and the pipeline's own refusals of the EEG or arguments
            return refuse(error), None

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": created,
                                            "owned_by": "e2llm"}]}

    @app.post("/v1/eeg-emotion")
    def eeg_emotion(body: dict = Body(...)):  # noqa: B008 (FastAPI's way to take a JSON body)
        refused, result = run(lambda b: pipeline_call(b, max_eeg_values), body)
        return refused or jsonable(result)

    @app.post("/v1/chat/completions")
    def chat_completions(body: dict = Body(...)):  # noqa: B008
        refused, result = run(lambda b: chat_call(b, served_name, max_eeg_values), body)
        return refused or chat_response(result, served_name)

    @app.exception_handler(RequestError)
    def request_error(_, error: RequestError) -> JSONResponse:
        return refuse(error)

    return app


__all__ = ["create_app"]

"""The LLM layer: structured output with re-asks, budgets, accounting, the OpenAI-compatible provider
(mocked transport and a real loopback server), the in-process providers' adapters, settings and factory."""

from __future__ import annotations

import importlib.machinery
import json
import socket
import sys
import threading
import time
import types

import httpx
import pytest
from pydantic import BaseModel, Field

from agent.llm import (
    Budget,
    BudgetExceeded,
    GGUFChat,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOutputError,
    LLMSettings,
    MLXChat,
    OpenAIChat,
    ProviderUnavailable,
    Reply,
    RetryPolicy,
    ScriptedLLM,
    extract_json,
    find_packaged_gguf,
    get_llm,
    local,
)
from agent.llm import gguf as gguf_module


class Verdict(BaseModel):
    score: float = Field(ge=0, le=1)
    rationale: str


GOOD = '{"score": 0.7, "rationale": "clear gain"}'
MESSAGES = [{"role": "system", "content": "You judge."}, {"role": "user", "content": "Judge this."}]


# --- JSON extraction -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    GOOD,
    f"```json\n{GOOD}\n```",
    f"Sure! Here is my verdict:\n```\n{GOOD}\n```\nHope that helps.",
    f"Here is the JSON you asked for: {GOOD} -- done.",
    f"See [1] and {{x}} first. {GOOD}",
])
def test_extract_json_tolerates_fences_and_prose(text):
    assert extract_json(text) == {"score": 0.7, "rationale": "clear gain"}


@pytest.mark.parametrize("text", ["", "   ", "no json here at all"])
def test_extract_json_refuses_replies_without_json(text):
    with pytest.raises(ValueError):
        extract_json(text)


# --- structured output -----------------------------------------------------------------------------

async def test_structured_reasks_with_the_parse_error_after_invalid_json():
    llm = ScriptedLLM(["I think it is good, score 0.7", GOOD])
    verdict = await llm.structured(MESSAGES, Verdict)
    assert verdict == Verdict(score=0.7, rationale="clear gain")
    assert len(llm.calls) == 2
    second = llm.calls[1]["messages"]
    assert second[:2] == MESSAGES
    assert second[2] == {"role": "assistant", "content": "I think it is good, score 0.7"}
    assert second[3]["role"] == "user" and "no JSON object found" in second[3]["content"]
    # The schema travels with every call, so providers can constrain decoding.
    assert llm.calls[0]["schema"]["title"] == "Verdict"


async def test_structured_reasks_with_the_validation_error():
    llm = ScriptedLLM(['{"score": 3, "rationale": "huge"}', GOOD])
    assert (await llm.structured(MESSAGES, Verdict)).score == 0.7
    retry = llm.calls[1]["messages"][-1]["content"]
    assert "score" in retry and "less than or equal to 1" in retry


async def test_structured_reasks_after_an_empty_reply():
    llm = ScriptedLLM(["", GOOD])
    assert (await llm.structured(MESSAGES, Verdict)).rationale == "clear gain"
    second = llm.calls[1]["messages"]
    # No empty assistant turn is echoed back; the error says what was wrong.
    assert [m["role"] for m in second] == ["system", "user", "user"]
    assert "empty" in second[-1]["content"]


async def test_structured_gives_up_after_the_allowed_attempts():
    llm = ScriptedLLM(lambda messages: '{"score": "high"}')
    with pytest.raises(LLMOutputError) as caught:
        await llm.structured(MESSAGES, Verdict)
    assert len(llm.calls) == 3 and caught.value.attempts == 3
    assert "Verdict" in str(caught.value) and "rationale" in caught.value.last_error
    assert caught.value.last_text == '{"score": "high"}'

    fewer = ScriptedLLM(lambda messages: "nope", attempts=2)
    with pytest.raises(LLMOutputError):
        await fewer.structured(MESSAGES, Verdict)
    assert len(fewer.calls) == 2
    with pytest.raises(LLMOutputError):
        await fewer.structured(MESSAGES, Verdict, attempts=1)
    assert len(fewer.calls) == 3


async def test_structured_does_not_modify_the_callers_messages():
    messages = [dict(m) for m in MESSAGES]
    await ScriptedLLM(["bad", GOOD]).structured(messages, Verdict)
    assert messages == MESSAGES


# --- scripted provider -----------------------------------------------------------------------------

async def test_scripted_llm_raises_computes_and_runs_out():
    llm = ScriptedLLM([TimeoutError("slow"), lambda messages: messages[-1]["content"].upper(), "last"])
    with pytest.raises(TimeoutError):
        await llm.chat(MESSAGES)
    assert (await llm.chat(MESSAGES)).text == "JUDGE THIS."
    assert (await llm.chat(MESSAGES, temperature=0.2, max_tokens=9)).text == "last"
    assert llm.calls[2]["temperature"] == 0.2 and llm.calls[2]["max_tokens"] == 9
    with pytest.raises(LLMError, match="no reply scripted for call 4"):
        await llm.chat(MESSAGES)


# --- accounting and budgets ------------------------------------------------------------------------

async def test_token_counts_are_reported_or_estimated_and_priced():
    llm = ScriptedLLM([Reply("ok", prompt_tokens=1000, completion_tokens=500), "x" * 40],
                      price_prompt_per_1k=0.01, price_completion_per_1k=0.03)
    reported = await llm.chat(MESSAGES)
    assert (reported.prompt_tokens, reported.completion_tokens, reported.estimated) == (1000, 500, False)
    assert reported.cost == pytest.approx(0.01 + 0.015)
    estimated = await llm.chat([{"role": "user", "content": "y" * 81}])
    assert (estimated.prompt_tokens, estimated.completion_tokens, estimated.estimated) == (21, 10, True)
    assert llm.usage == {"calls": 2, "prompt_tokens": 1021, "completion_tokens": 510,
                         "cost": pytest.approx(0.025 + (21 * 0.01 + 10 * 0.03) / 1000)}
    assert llm.budget.usage["prompt_tokens"] == 1021


async def test_call_cap_stops_new_calls_before_they_are_made():
    budget = Budget(max_calls=2)
    llm = ScriptedLLM(lambda messages: GOOD, budget=budget)
    await llm.chat(MESSAGES)
    await llm.structured(MESSAGES, Verdict)
    with pytest.raises(BudgetExceeded, match="2 calls of at most 2"):
        await llm.chat(MESSAGES)
    assert len(llm.calls) == 2
    # The cap is the run's: another LLM sharing the budget is stopped too.
    other = ScriptedLLM([GOOD], budget=budget)
    with pytest.raises(BudgetExceeded):
        await other.structured(MESSAGES, Verdict)
    assert other.calls == []


async def test_token_and_cost_caps_stop_new_calls():
    tokens = ScriptedLLM([Reply("a", 60, 50), Reply("b", 1, 1)], budget=Budget(max_tokens=100))
    await tokens.chat(MESSAGES)
    with pytest.raises(BudgetExceeded, match="110 tokens of at most 100"):
        await tokens.chat(MESSAGES)
    assert len(tokens.calls) == 1

    cost = ScriptedLLM([Reply("a", 1000, 0), Reply("b", 1, 1)], budget=Budget(max_cost=0.5),
                       price_prompt_per_1k=0.5)
    await cost.chat(MESSAGES)
    with pytest.raises(BudgetExceeded, match="cost"):
        await cost.chat(MESSAGES)
    assert len(cost.calls) == 1


def test_budget_is_safe_across_threads(monkeypatch):
    # All threads start together and yield between the cap's check and the reservation, the window a
    # missing lock would leave open: without it, more calls than the cap get through.
    exhausted = Budget._exhausted

    def slow_check(self):
        reason = exhausted(self)
        time.sleep(0)
        return reason

    monkeypatch.setattr(Budget, "_exhausted", slow_check)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    budget = Budget(max_calls=4000)
    refused = []
    start = threading.Barrier(8)

    def spend():
        start.wait()
        for _ in range(1000):
            try:
                budget.begin()
                budget.charge(1, 1, 0.0)
            except BudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert budget.calls == 4000 and len(refused) == 4000 and budget.tokens == 8000


# --- OpenAI-compatible provider, mocked transport --------------------------------------------------

def completion_json(content: str, usage: dict | None = None, model: str = "served-model") -> dict:
    data = {"id": "c1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    if usage is not None:
        data["usage"] = usage
    return data


class Recorder:
    """A MockTransport handler answering from a list of responses, recording each request body."""

    def __init__(self, *responses):
        self.responses, self.requests = list(responses), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def body(self, n: int) -> dict:
        return json.loads(self.requests[n].content)


def openai_llm(recorder: Recorder, sleeps: list | None = None, **kwargs) -> OpenAIChat:
    async def sleep(seconds):
        if sleeps is not None:
            sleeps.append(seconds)

    kwargs.setdefault("retry", RetryPolicy(max_retries=3, backoff_s=0.0))
    return OpenAIChat("http://llm.test/v1/", api_key="sk-test", model="m1",
                      transport=httpx.MockTransport(recorder), sleep=sleep, **kwargs)


async def test_openai_retries_429_honouring_retry_after():
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "0.05"}, text="slow down"),
                        httpx.Response(200, json=completion_json("hello", {"prompt_tokens": 12, "completion_tokens": 3})))
    sleeps = []
    llm = openai_llm(recorder, sleeps, retry=RetryPolicy(max_retries=3, backoff_s=5.0))
    completion = await llm.chat(MESSAGES)
    assert completion.text == "hello" and sleeps == [0.05]
    assert (completion.prompt_tokens, completion.completion_tokens, completion.model) == (12, 3, "served-model")
    assert len(recorder.requests) == 2
    request = recorder.requests[0]
    assert str(request.url) == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert llm.usage["calls"] == 1  # retries are one call


async def test_openai_gives_up_after_bounded_5xx_retries():
    recorder = Recorder(*[httpx.Response(500, text="boom")] * 4)
    sleeps = []
    llm = openai_llm(recorder, sleeps, retry=RetryPolicy(max_retries=3, backoff_s=0.01, backoff_max_s=0.02))
    with pytest.raises(LLMHTTPError) as caught:
        await llm.chat(MESSAGES)
    assert caught.value.status == 500 and len(recorder.requests) == 4
    # Exponential backoff with jitter, capped.
    assert len(sleeps) == 3 and all(0.005 <= s <= 0.02 for s in sleeps) and sleeps[2] >= 0.01


async def test_openai_retries_connection_errors_but_not_client_errors():
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                        httpx.Response(200, json=completion_json("ok")))
    assert (await openai_llm(recorder).chat(MESSAGES)).text == "ok"
    assert len(recorder.requests) == 3

    down = Recorder(*[httpx.ConnectError("refused")] * 4)
    with pytest.raises(LLMConnectionError, match="after 4 attempts"):
        await openai_llm(down).chat(MESSAGES)

    unauthorised = Recorder(httpx.Response(401, text="bad key"))
    with pytest.raises(LLMHTTPError, match="401"):
        await openai_llm(unauthorised).chat(MESSAGES)
    assert len(unauthorised.requests) == 1


async def test_openai_request_shape_and_estimated_tokens_without_usage():
    recorder = Recorder(httpx.Response(200, json=completion_json(GOOD)))
    llm = openai_llm(recorder, temperature=0.3, max_tokens=256)
    verdict = await llm.structured(MESSAGES, Verdict)
    assert verdict.score == 0.7
    body = recorder.body(0)
    assert body["model"] == "m1" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.3 and body["max_tokens"] == 256
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Verdict"
    assert response_format["json_schema"]["schema"] == Verdict.model_json_schema()
    # No `usage` in the response: estimated at four characters per token.
    assert llm.usage["completion_tokens"] == -(-len(GOOD) // 4)


async def test_openai_falls_back_to_a_plain_json_request_when_the_schema_is_refused():
    recorder = Recorder(httpx.Response(400, json={"error": {"message": "response_format not supported"}}),
                        httpx.Response(200, json=completion_json(f"```json\n{GOOD}\n```")),
                        httpx.Response(200, json=completion_json(GOOD)))
    llm = openai_llm(recorder)
    assert (await llm.structured(MESSAGES, Verdict)).score == 0.7
    fallback = recorder.body(1)
    assert "response_format" not in fallback
    assert "JSON schema" in fallback["messages"][-1]["content"]
    assert fallback["messages"][-1]["content"].startswith("Judge this.")
    # The server's refusal is remembered: the next call asks in plain words straight away.
    await llm.structured(MESSAGES, Verdict)
    assert len(recorder.requests) == 3 and "response_format" not in recorder.body(2)


async def test_openai_null_content_counts_as_an_empty_reply():
    recorder = Recorder(httpx.Response(200, json=completion_json(None)), httpx.Response(200, json=completion_json(GOOD)))
    assert (await openai_llm(recorder).structured(MESSAGES, Verdict)).score == 0.7


# --- OpenAI-compatible provider against a real HTTP server ----------------------------------------

def fake_openai_app():
    from fastapi import FastAPI, Header, HTTPException

    app = FastAPI()
    app.state.bodies = []

    @app.post("/v1/chat/completions")
    async def completions(body: dict, authorization: str | None = Header(default=None)) -> dict:
        if authorization != "Bearer local-key":
            raise HTTPException(401, "bad key")
        app.state.bodies.append(body)
        if len(app.state.bodies) == 1:
            raise HTTPException(503, "warming up")
        name = body["response_format"]["json_schema"]["name"]
        return completion_json(f'{{"score": 0.25, "rationale": "served by {name}"}}', model=body["model"],
                               usage={"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39})

    return app


@pytest.fixture
def loopback_server():
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = fake_openai_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the loopback server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", app
    server.should_exit = True
    thread.join(timeout=10)


async def test_openai_provider_over_real_http(loopback_server, monkeypatch, tmp_path):
    url, app = loopback_server
    monkeypatch.chdir(tmp_path)
    for key, value in {"LLM_BASE_URL": url, "LLM_API_KEY": "local-key", "LLM_MODEL": "tiny",
                       "LLM_BACKOFF_S": "0.01", "LLM_TIMEOUT_S": "10"}.items():
        monkeypatch.setenv(key, value)
    llm = get_llm("judge", budget=Budget(max_calls=5))
    assert isinstance(llm, OpenAIChat)
    verdict = await llm.structured(MESSAGES, Verdict)
    assert verdict == Verdict(score=0.25, rationale="served by Verdict")
    assert len(app.state.bodies) == 2  # one 503, retried
    assert llm.usage == {"calls": 1, "prompt_tokens": 30, "completion_tokens": 9, "cost": 0.0}


# --- in-process providers: adapters with stand-in runtimes -----------------------------------------

async def test_gguf_provider_speaks_openai_to_its_engine(monkeypatch, tmp_path):
    model = tmp_path / "tiny.Q4.gguf"
    model.write_bytes(b"GGUF")
    requests = []

    class Engine:
        def __init__(self, path, n_ctx, threads):
            assert (path, n_ctx, threads) == (model, 2048, 2)

        def chat(self, request):
            requests.append(request)
            return completion_json(GOOD, {"prompt_tokens": 50, "completion_tokens": 12}, model=str(model))

    monkeypatch.setitem(gguf_module.ENGINES, "stand-in", Engine)
    llm = GGUFChat(model, runtime="stand-in", n_ctx=2048, threads=2)
    try:
        assert (await llm.structured(MESSAGES, Verdict)).score == 0.7
        await llm.chat(MESSAGES)
    finally:
        local.forget()
    assert llm.model == "tiny.Q4" and llm.usage["prompt_tokens"] == 100
    assert requests[0]["response_format"]["json_schema"]["name"] == "Verdict"
    assert requests[0]["max_tokens"] == gguf_module.DEFAULT_MAX_TOKENS
    assert "response_format" not in requests[1]


def test_find_packaged_gguf_locates_a_model_inside_a_package(monkeypatch, tmp_path):
    package = tmp_path / "tiny_model_pkg"
    (package / "weights").mkdir(parents=True)
    # The package's code is never run: finding the file must not import it.
    (package / "__init__.py").write_text("raise ImportError('needs a runtime that is absent')\n")
    (package / "weights" / "tiny.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_packaged_gguf("tiny-model-pkg") == package / "weights" / "tiny.gguf"
    assert find_packaged_gguf("no_such_package_here") is None
    assert gguf_module.resolve_gguf("tiny_model_pkg") == package / "weights" / "tiny.gguf"
    assert gguf_module.resolve_gguf(package / "weights") == package / "weights" / "tiny.gguf"
    with pytest.raises(ProviderUnavailable, match="neither a file"):
        gguf_module.resolve_gguf(tmp_path / "missing.gguf")


def test_gguf_provider_says_clearly_when_no_runtime_is_installed(monkeypatch, tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(gguf_module, "has_module", lambda name: False)
    with pytest.raises(ProviderUnavailable, match="xllamacpp or llama-cpp-python"):
        GGUFChat(model)


def test_mlx_provider_says_clearly_when_mlx_lm_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # import of it fails, as when not installed
    with pytest.raises(ProviderUnavailable, match="mlx-lm"):
        MLXChat("some/folder")


async def test_mlx_provider_loads_the_folder_and_generates(monkeypatch):
    loaded = []

    class Tokenizer:
        def apply_chat_template(self, messages, add_generation_prompt):
            return list(range(len(messages[-1]["content"]) // 10))

        def encode(self, text):
            return text.split()

    def generate(model, tokenizer, *, prompt, max_tokens, verbose, **kwargs):
        return GOOD

    fake = types.ModuleType("mlx_lm")
    fake.__spec__ = importlib.machinery.ModuleSpec("mlx_lm", None)
    fake.load = lambda path: loaded.append(path) or ("model", Tokenizer())
    fake.generate = generate
    monkeypatch.setitem(sys.modules, "mlx_lm", fake)
    llm = MLXChat("/models/tiny-mlx")
    try:
        assert (await llm.structured(MESSAGES, Verdict)).score == 0.7
        await MLXChat("/models/tiny-mlx").chat(MESSAGES)
    finally:
        local.forget()
    assert loaded == ["/models/tiny-mlx"]  # loaded once, shared
    assert llm.usage["completion_tokens"] == len(GOOD.split()) and llm.usage["prompt_tokens"] > 0


# --- settings and factory --------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No LLM_* variables and no .env file in the working directory."""
    import os

    for key in list(os.environ):
        if key.startswith("LLM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_no_configuration_means_no_llm(clean_env):
    assert LLMSettings().resolved_provider == "none"
    assert get_llm("researcher") is None
    clean_env.setenv("LLM_BASE_URL", "")  # as `.env.example` ships it
    assert get_llm("analyst") is None


def test_a_base_url_selects_the_openai_provider_with_role_overrides(clean_env):
    for key, value in {"LLM_BASE_URL": "http://localhost:8001/v1", "LLM_MODEL": "big", "LLM_TEMPERATURE": "0.7",
                       "LLM_MAX_TOKENS": "4000", "LLM_RESEARCHER_MODEL": "creative", "LLM_RESEARCHER_TEMPERATURE": "1.0",
                       "LLM_JUDGE_MAX_TOKENS": "300", "LLM_MAX_RETRIES": "2", "LLM_STRUCTURED_ATTEMPTS": "5",
                       "LLM_BUDGET_MAX_CALLS": "7"}.items():
        clean_env.setenv(key, value)
    researcher, judge, engineer = get_llm("researcher"), get_llm("judge"), get_llm("engineer")
    assert isinstance(researcher, OpenAIChat) and researcher.url == "http://localhost:8001/v1/chat/completions"
    assert (researcher.model, researcher.temperature, researcher.max_tokens) == ("creative", 1.0, 4000)
    assert (judge.model, judge.temperature, judge.max_tokens) == ("big", 0.7, 300)
    assert (engineer.model, engineer.temperature, engineer.max_tokens) == ("big", 0.7, 4000)
    assert researcher.retry.max_retries == 2 and researcher.attempts == 5
    # One budget for the run, whichever role spends it.
    assert researcher.budget is judge.budget and researcher.budget.max_calls == 7
    with pytest.raises(ValueError, match="unknown LLM role"):
        get_llm("poet")


def test_explicit_providers(clean_env, tmp_path):
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([GOOD, {"score": 0.1, "rationale": "r"}]))
    settings = LLMSettings(_env_file=None, provider="scripted", script=str(script))
    llm = get_llm("judge", settings)
    assert isinstance(llm, ScriptedLLM) and json.loads(llm.responses[1])["score"] == 0.1
    with pytest.raises(ProviderUnavailable, match="LLM_BASE_URL"):
        get_llm("judge", LLMSettings(_env_file=None, provider="openai"))
    with pytest.raises(ProviderUnavailable, match="unknown LLM_PROVIDER"):
        get_llm("judge", LLMSettings(_env_file=None, provider="telepathy"))
    assert get_llm("judge", LLMSettings(_env_file=None, provider="none", base_url="http://x/v1")) is None


async def test_a_script_by_role_goes_on_across_calls_and_leaves_other_roles_offline(clean_env, tmp_path):
    script = tmp_path / "roles.json"
    script.write_text(json.dumps({"researcher": ["first", "second"], "judge": [{"score": 0.5, "rationale": "r"}]}))
    settings = LLMSettings(_env_file=None, provider="scripted", script=str(script))
    assert (await get_llm("researcher", settings).chat([{"role": "user", "content": "a"}])).text == "first"
    # A later job of the same process gets the same scripted model, at its next reply.
    assert (await get_llm("researcher", settings).chat([{"role": "user", "content": "b"}])).text == "second"
    assert json.loads(get_llm("judge", settings).responses[0])["score"] == 0.5
    assert get_llm("engineer", settings) is None and get_llm("analyst", settings) is None
    script.write_text(json.dumps({"researcher": ["x"], "poet": ["y"]}))
    with pytest.raises(ProviderUnavailable, match=r"unknown roles \['poet'\]"):
        get_llm("researcher", LLMSettings(_env_file=None, provider="scripted", script=str(tmp_path / "roles.json")))

"""A chat API on FastAPI, each customer billed for the tokens its chats use.

- ``POST /chat`` ``{"message": "...", "provider": "openai" | "anthropic",
  "stream": false}``: the model's reply (``{"reply": ...}``), or with
  ``"stream": true`` the reply as it is generated (``text/plain``).

The model clients are instrumented once (``instrument(...)``), so every call
records its tokens for the current customer: one ``token-billing-tokens``
event per token type, with the ``model`` and ``token_type`` dimensions (see
docs/llm.md). The middleware makes the customer of each request current,
from ``X-Customer-Id``, which only an authenticating gateway in front of the
app may set.

The SDKs read ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` and
``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_API_KEY``; meterstream reads its
``METERSTREAM_*`` variables. README.md runs it against the fake model server
and the emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anthropic
import openai
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from meterstream.integrations import anthropic as metered_anthropic
from meterstream.integrations import openai as metered_openai
from meterstream.integrations.asgi import MeterstreamMiddleware, header

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"


class Chat(BaseModel):
    message: str
    provider: Literal["openai", "anthropic"] = "openai"
    stream: bool = False


def create_app() -> FastAPI:
    """The app, with its two instrumented model clients."""
    openai_client = metered_openai.instrument(openai.AsyncOpenAI())
    anthropic_client = metered_anthropic.instrument(anthropic.AsyncAnthropic())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await openai_client.close()
        await anthropic_client.close()

    app = FastAPI(title="Chat", lifespan=lifespan)
    # Trusted because this service only runs behind a gateway that
    # authenticates callers and sets (or strips) X-Customer-Id itself.
    app.add_middleware(MeterstreamMiddleware, customer_resolver=header("X-Customer-Id"))

    @app.post("/chat", response_model=None)
    async def chat(chat: Chat) -> Any:
        messages: Any = [{"role": "user", "content": chat.message}]
        if chat.provider == "openai":
            if not chat.stream:
                completion = await openai_client.chat.completions.create(
                    model=OPENAI_MODEL, messages=messages
                )
                return {"reply": completion.choices[0].message.content}
            chunks = await openai_client.chat.completions.create(
                model=OPENAI_MODEL, messages=messages, stream=True
            )

            async def openai_text() -> AsyncIterator[str]:
                async for chunk in chunks:  # the usage chunk meterstream asked for is hidden
                    yield chunk.choices[0].delta.content or ""

            return StreamingResponse(openai_text(), media_type="text/plain")
        if not chat.stream:
            message = await anthropic_client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=1024, messages=messages
            )
            return {"reply": "".join(b.text for b in message.content if b.type == "text")}
        manager = anthropic_client.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=1024, messages=messages
        )

        async def anthropic_text() -> AsyncIterator[str]:
            async with manager as stream:
                async for text in stream.text_stream:
                    yield text

        return StreamingResponse(anthropic_text(), media_type="text/plain")

    @app.exception_handler(openai.APIError)
    @app.exception_handler(anthropic.APIError)
    async def model_failed(request: Any, exc: Exception) -> Any:
        raise HTTPException(502, "the model failed") from exc

    return app

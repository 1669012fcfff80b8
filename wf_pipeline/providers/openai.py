"""OpenAI chat-completions wire provider.

Speaks ``POST {base_url}/chat/completions``, which OpenAI, Ollama, vLLM and the
llama.cpp server all accept. The API key comes from the environment and is optional,
since local servers usually need none. Errors carry the HTTP status and the server's
own error message, never the prompt or the model output.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlparse

from wf_pipeline.errors import ProviderError
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider

PROVIDER_TYPE = "openai"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Server error messages are echoed into our errors; a bound keeps them log-sized.
MAX_SERVER_MESSAGE_CHARS = 300

_JSON_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n(?P<body>.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class OpenAIOptions:
    base_url: str
    model: str
    api_key: str | None
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> OpenAIOptions:
        base_url = options.get("base_url")
        model = options.get("model")
        parsed = urlparse(base_url) if isinstance(base_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ProviderError(
                "PROVIDER_CONFIG_INVALID", "option base_url must be an http(s) URL", option="base_url"
            )
        if not isinstance(model, str) or not model.strip():
            raise ProviderError("PROVIDER_CONFIG_INVALID", "option model is required", option="model")
        key_env = str(options.get("api_key_env") or DEFAULT_API_KEY_ENV)
        api_key = env.get(key_env) or None
        if api_key is None and _flag(options.get("require_key"), default=False):
            raise ProviderError(
                "PROVIDER_MISSING_KEY", f"environment variable {key_env} is not set", api_key_env=key_env
            )
        max_tokens = options.get("max_tokens")
        try:
            temperature = float(options.get("temperature", 0.0))
            max_tokens = int(max_tokens) if max_tokens is not None else None
        except (TypeError, ValueError):
            raise ProviderError(
                "PROVIDER_CONFIG_INVALID",
                "options temperature and max_tokens must be numbers",
                option="temperature|max_tokens",
            ) from None
        return cls(
            base_url=str(base_url).rstrip("/"),
            model=model,
            api_key=api_key,
            temperature=temperature,
            max_tokens=max_tokens,
            json_mode=_flag(options.get("json_mode"), default=True),
        )


def _flag(value: Any, *, default: bool) -> bool:
    """Booleans arrive as strings from WF_OPENAI_* variables: "false" must mean False."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ProviderError("PROVIDER_CONFIG_INVALID", f"option value {value!r} is not a boolean", option="flag")


def strip_json_fence(content: str) -> str:
    """Remove one surrounding markdown code fence (models often wrap JSON in one)."""
    stripped = content.strip()
    fenced = _JSON_FENCE.match(stripped)
    return fenced["body"].strip() if fenced else stripped


def _server_message(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    message = error.get("message") if isinstance(error, dict) else error
    return message[:MAX_SERVER_MESSAGE_CHARS] if isinstance(message, str) else None


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout))


class OpenAIProvider:
    provider_type = PROVIDER_TYPE

    def __init__(self, options: OpenAIOptions) -> None:
        self.options = options
        self.model = options.model
        self.endpoint = f"{options.base_url}/chat/completions"

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": [
                {"role": "system", "content": request.system_prompt},
                {"role": "user", "content": request.user_prompt},
            ],
            "temperature": self.options.temperature,
        }
        if self.options.max_tokens is not None:
            body["max_tokens"] = self.options.max_tokens
        if request.output_format == "json" and self.options.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _post(self, request: ProviderRequest) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        http_request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(self._body(request)).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        where = {"endpoint": self.endpoint, "turn_id": request.turn_id}
        try:
            with urllib.request.urlopen(http_request, timeout=request.timeout_ms / 1000) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            message = _server_message(exc.read() or b"")
            raise ProviderError(
                "PROVIDER_HTTP_ERROR",
                f"HTTP {status} from {self.endpoint}" + (f": {message}" if message else ""),
                status=status,
                retryable=status == 429 or status >= 500,
                **where,
            ) from None
        except urllib.error.URLError as exc:
            if _is_timeout(exc.reason):
                raise self._timeout(request, where) from None
            raise ProviderError(
                "PROVIDER_CONNECTION_ERROR",
                f"cannot reach {self.endpoint}: {exc.reason}",
                retryable=True,
                **where,
            ) from None
        except TimeoutError:
            raise self._timeout(request, where) from None
        except (OSError, HTTPException) as exc:
            raise ProviderError(
                "PROVIDER_CONNECTION_ERROR",
                f"connection to {self.endpoint} failed: {type(exc).__name__}",
                retryable=True,
                **where,
            ) from None

    def _timeout(self, request: ProviderRequest, where: dict[str, str]) -> ProviderError:
        message = f"no answer from {self.endpoint} within {request.timeout_ms} ms"
        return ProviderError("PROVIDER_TIMEOUT", message, retryable=True, **where)

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        raw = self._post(request)

        def bad_response(what: str) -> ProviderError:
            message = f"{self.endpoint} answered {what}"
            return ProviderError(
                "PROVIDER_BAD_RESPONSE", message, endpoint=self.endpoint, turn_id=request.turn_id
            )

        try:
            payload = json.loads(raw)
        except ValueError:
            raise bad_response("with a body that is not JSON") from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            raise bad_response("without choices")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise bad_response("with empty content")
        text = strip_json_fence(content) if request.output_format == "json" else content
        usage = payload.get("usage")
        counts = (
            {
                key: value
                for key, value in usage.items()
                if isinstance(value, int) and not isinstance(value, bool)
            }
            if isinstance(usage, dict)
            else {}
        )
        return ProviderResponse(text=text, provider_type=self.provider_type, model=self.model, usage=counts)


@register_provider(PROVIDER_TYPE)
def openai_provider(options: Mapping[str, Any], env: Mapping[str, str]) -> OpenAIProvider:
    return OpenAIProvider(OpenAIOptions.from_options(options, env))

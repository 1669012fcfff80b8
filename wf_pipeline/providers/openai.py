"""OpenAI chat-completions wire provider, on one pooled ``httpx.Client``.

Speaks ``POST {base_url}/chat/completions``, which OpenAI, Ollama, vLLM and the
llama.cpp server all accept. The API key comes from the environment and is optional,
since local servers usually need none. Errors carry the HTTP status, the server's
``error.type`` and ``error.code`` tokens and its ``error.message`` unless that repeats
request content (`wf_pipeline.providers.server_errors` judges what may be kept), never
the prompt or the model output.

Why httpx and not the official ``openai`` client with ``base_url``: the official
client does speak to Ollama, vLLM and llama.cpp through ``base_url``, but it brings a
retry loop of its own (which would stack on the turn's tenacity loop and its deadline
unless switched off), insists on an API key (local servers need none, so a dummy key
would be faked), reads ``OPENAI_*`` variables of the process by itself (settings here
travel as values), and maps errors to its own exception classes that would then be
mapped again to our codes. The wire is one POST with a JSON body; httpx (which the
official client is built on) gives the pooled, thread-safe connections and the
separate connect and read timeouts, and every status maps straight onto a catalogue
code. So this provider uses httpx directly.

Each provider instance owns one ``httpx.Client`` (a keep-alive connection pool shared
by the concurrent calls of a run); ``close()`` releases it.

Options (strings when they come from ``WF_OPENAI_*`` variables): ``base_url`` and
``model`` (required); ``api_key_env`` (default ``OPENAI_API_KEY``) and ``require_key``;
``temperature``, ``max_tokens``, ``json_mode``; ``connect_timeout_ms`` (default 10000)
and ``read_timeout_ms`` (default: no limit of its own), each further bounded by the time
left before the turn's deadline (the request's ``timeout_ms``); ``max_connections``
(default 16) for the pool.

Status codes map onto the error catalogue: 429 is ``PROVIDER_RATE_LIMITED`` and 5xx
``PROVIDER_SERVER_ERROR`` (both retryable; a 429's or 503's ``Retry-After``, in seconds
or as an HTTP date per RFC 9110 section 10.2.3, goes into the ``retry_after_ms``
detail, which the retry loop honours); any other non-2xx status is
``PROVIDER_HTTP_ERROR`` (not retryable). A 200 reply can still fail: an error object in
its body keeps the server's message and maps like a status (`OpenAIProvider._server_error`),
and ``finish_reason: "length"`` is ``PROVIDER_OUTPUT_TRUNCATED``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

from wf_pipeline.errors import (
    PROVIDER_BAD_RESPONSE,
    PROVIDER_CONFIG_INVALID,
    PROVIDER_CONNECTION_ERROR,
    PROVIDER_HTTP_ERROR,
    PROVIDER_MISSING_KEY,
    PROVIDER_OUTPUT_TRUNCATED,
    PROVIDER_RATE_LIMITED,
    PROVIDER_SERVER_ERROR,
    PROVIDER_TIMEOUT,
    ErrorCode,
    ProviderError,
    masked_url,
)
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider
from wf_pipeline.providers.retry import RETRY_AFTER_DETAIL, parse_retry_after
from wf_pipeline.providers.server_errors import server_message, server_token

PROVIDER_TYPE = "openai"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CONNECT_TIMEOUT_MS = 10_000
DEFAULT_MAX_CONNECTIONS = 16
# RFC 9110 defines Retry-After for 503 (and 3xx); RFC 6585 adds it to 429.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class OpenAIOptions:
    """Validated options of one OpenAI-wire provider (timeouts in ms, None for no limit of its own)."""

    base_url: str
    model: str
    api_key: str | None
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    read_timeout_ms: int | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> OpenAIOptions:
        """Read ``options`` (strings from the environment are parsed) and the key from ``env``.

        Raises:
            ProviderError: ``PROVIDER_CONFIG_INVALID`` naming the option and its value;
                ``PROVIDER_MISSING_KEY`` when ``require_key`` is set and the key variable is empty.
        """
        base_url = options.get("base_url")
        model = options.get("model")
        parsed = urlparse(base_url) if isinstance(base_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ProviderError(
                PROVIDER_CONFIG_INVALID,
                f"option base_url must be an http(s) URL, got {masked_url(str(base_url))!r}",
                option="base_url",
            )
        if not isinstance(model, str) or not model.strip():
            raise ProviderError(PROVIDER_CONFIG_INVALID, "option model is required", option="model")
        key_env = str(options.get("api_key_env") or DEFAULT_API_KEY_ENV)
        api_key = env.get(key_env) or None
        if api_key is None and _flag(options.get("require_key"), default=False):
            raise ProviderError(
                PROVIDER_MISSING_KEY, f"environment variable {key_env} is not set", api_key_env=key_env
            )
        max_tokens = options.get("max_tokens")
        try:
            temperature = float(options.get("temperature", 0.0))
            max_tokens = int(max_tokens) if max_tokens is not None else None
        except (TypeError, ValueError):
            raise ProviderError(
                PROVIDER_CONFIG_INVALID,
                f"options temperature and max_tokens must be numbers, got {options.get('temperature')!r} "
                f"and {options.get('max_tokens')!r}",
                option="temperature|max_tokens",
            ) from None
        return cls(
            base_url=str(base_url).rstrip("/"),
            model=model,
            api_key=api_key,
            temperature=temperature,
            max_tokens=max_tokens,
            json_mode=_flag(options.get("json_mode"), default=True),
            connect_timeout_ms=_positive_int(options, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS),
            read_timeout_ms=_positive_int(options, "read_timeout_ms", None),
            max_connections=_positive_int(options, "max_connections", DEFAULT_MAX_CONNECTIONS),
        )


def _positive_int(options: Mapping[str, Any], option: str, default: int | None) -> int | None:
    value = options.get(option)
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number <= 0:
        raise ProviderError(
            PROVIDER_CONFIG_INVALID,
            f"option {option} must be a positive integer, got {value!r}",
            option=option,
        )
    return number


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
    raise ProviderError(PROVIDER_CONFIG_INVALID, f"option value {value!r} is not a boolean", option="flag")


def error_object(payload: Any) -> dict[str, Any] | None:
    """The error object a parsed body carries, in the forms servers send, or None.

    ``{"error": {"message", "type", "code"}}`` (OpenAI, llama.cpp, OpenRouter),
    ``{"error": "text"}`` (Ollama) and a top-level ``{"object": "error", "message", "type",
    "code"}`` (vLLM's ``ErrorResponse``). Returns the fields as a dict (a text error as its
    ``message``); None when ``payload`` is no error. Raises nothing.
    """
    if not isinstance(payload, dict):
        return None
    if payload.get("object") == "error":
        return payload
    error = payload.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str) and error.strip():
        return {"message": error}
    return None


def server_error_parts(body: bytes, request: ProviderRequest) -> dict[str, str]:
    """What an error may quote of a body that carries an error object (`error_object`).

    The message passes through `server_message` (kept only when it does not repeat request
    content), ``type`` and ``code`` through `server_token`.

    Args:
        body: the response body, in bytes.
        request: the request the server answered.

    Returns:
        A dict with any of ``message``, ``type``, ``code`` (strings); empty when the body is
        not JSON or says nothing usable. Raises nothing.
    """
    try:
        fields = error_object(json.loads(body))
    except ValueError:
        return {}
    if fields is None:
        return {}
    parts = {
        "message": server_message(fields.get("message"), request),
        "type": server_token(fields.get("type"), request),
        "code": server_token(fields.get("code"), request),
    }
    return {name: value for name, value in parts.items() if value is not None}


def status_code(status: int) -> ErrorCode:
    """The catalogue code of a non-2xx HTTP status: 429 rate limited, 5xx server error, else refused."""
    if status == 429:
        return PROVIDER_RATE_LIMITED
    if status >= 500:
        return PROVIDER_SERVER_ERROR
    return PROVIDER_HTTP_ERROR


_TIMEOUT_PHASES = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}


class OpenAIProvider:
    """Calls one chat-completions endpoint through a pooled ``httpx.Client`` (thread-safe)."""

    provider_type = PROVIDER_TYPE

    def __init__(self, options: OpenAIOptions) -> None:
        """Open the connection pool (no connection is made until the first call)."""
        self.options = options
        self.model = options.model
        self.endpoint = f"{options.base_url}/chat/completions"
        headers = {"Accept": "application/json"}
        if options.api_key:
            headers["Authorization"] = f"Bearer {options.api_key}"
        self._client = httpx.Client(
            headers=headers,
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
            # Settings travel as values: proxy variables and CA bundle paths of the process are not read.
            trust_env=False,
        )

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that change what the server answers (request digests cover them):
        ``temperature``, ``max_tokens``, ``json_mode``. The server's address does not: the
        same model behind another address is the same request."""
        return {
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_tokens,
            "json_mode": self.options.json_mode,
        }

    def close(self) -> None:
        """Close the pooled connections; idempotent. Later calls fail with PROVIDER_CONNECTION_ERROR."""
        self._client.close()

    def __enter__(self) -> OpenAIProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    def _timeout(self, request: ProviderRequest) -> httpx.Timeout:
        """Connect and read timeouts, each bounded by the time the call may take (request.timeout_ms)."""
        left_s = request.timeout_ms / 1000
        read_ms = self.options.read_timeout_ms
        read_s = min(left_s, read_ms / 1000) if read_ms is not None else left_s
        return httpx.Timeout(
            connect=min(left_s, self.options.connect_timeout_ms / 1000),
            read=read_s,
            write=left_s,
            pool=left_s,
        )

    def _post(self, request: ProviderRequest) -> bytes:
        where = {"endpoint": self.endpoint, "turn_id": request.turn_id}
        try:
            response = self._client.post(
                self.endpoint, json=self._body(request), timeout=self._timeout(request)
            )
        except httpx.TimeoutException as exc:
            phase = _TIMEOUT_PHASES.get(type(exc), "read")
            raise ProviderError(
                PROVIDER_TIMEOUT,
                f"no answer from {masked_url(self.endpoint)} within {request.timeout_ms} ms ({phase} timeout)",
                timeout_ms=request.timeout_ms,
                phase=phase,
                **where,
            ) from None
        except (httpx.TransportError, RuntimeError) as exc:
            # RuntimeError: the client was closed.
            raise ProviderError(
                PROVIDER_CONNECTION_ERROR,
                f"cannot reach {masked_url(self.endpoint)}: {type(exc).__name__}",
                **where,
            ) from None
        if response.is_success:
            return response.content
        raise self._server_error(response.status_code, response.content, request, response.headers)

    def _server_error(
        self, status: int, body: bytes, request: ProviderRequest, headers: Mapping[str, str] | None = None
    ) -> ProviderError:
        """The error for a reply that refuses: a non-2xx status, or an error object in a 2xx body.

        The code follows the HTTP status (`status_code`); in a 2xx body, an error object's
        numeric ``code`` of 400 to 599 counts as that status (vLLM and OpenRouter put the
        status there), and any other error object is ``PROVIDER_SERVER_ERROR``.
        """
        said = server_error_parts(body, request)
        details: dict[str, Any] = {
            "status": status,
            "endpoint": masked_url(self.endpoint),
            "turn_id": request.turn_id,
        }
        details.update({f"server_error_{name}": said[name] for name in ("type", "code") if name in said})
        where = f"HTTP {status} from {masked_url(self.endpoint)}"
        judged = status
        if 200 <= status < 300:
            embedded = int(said["code"]) if said.get("code", "").isdigit() else 0
            # A failure the server could not put in the status line counts as a server error.
            judged = embedded if 400 <= embedded < 600 else 500
            where += " carries an error object"
        if status in RETRY_AFTER_STATUSES and headers is not None:
            retry_after_ms = parse_retry_after(headers.get("Retry-After"))
            if retry_after_ms is not None:
                details[RETRY_AFTER_DETAIL] = retry_after_ms
        wait = f", Retry-After {details[RETRY_AFTER_DETAIL]} ms" if RETRY_AFTER_DETAIL in details else ""
        tokens = ", ".join(f"{name} {said[name]}" for name in ("type", "code") if name in said)
        quoted = said.get("message", "") + (f" ({tokens})" if tokens else "")
        return ProviderError(
            status_code(judged), where + wait + (f": {quoted.strip()}" if quoted else ""), **details
        )

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """POST the request and return the first choice's content as the server sent it.

        Unwrapping (a reasoning block, a surrounding fence) is the turn's business
        (`wf_pipeline.text.model_output.unwrap_model_output`), the same for every provider.

        Returns:
            A `ProviderResponse` with the token counts the server reported in ``usage``.

        Raises:
            ProviderError: ``PROVIDER_TIMEOUT`` (connect or read timeout, bounded by
                ``request.timeout_ms``), ``PROVIDER_CONNECTION_ERROR``, ``PROVIDER_RATE_LIMITED``
                (429), ``PROVIDER_SERVER_ERROR`` (5xx, or an error object in a 2xx body),
                ``PROVIDER_HTTP_ERROR`` (other statuses, or an error object whose numeric code
                is one), ``PROVIDER_OUTPUT_TRUNCATED`` (``finish_reason: "length"``: the reply
                stopped at the token limit), ``PROVIDER_BAD_RESPONSE`` (a 2xx body without
                usable content).
        """
        raw = self._post(request)

        def bad_response(what: str) -> ProviderError:
            message = f"{masked_url(self.endpoint)} answered {what} ({len(raw)} bytes)"
            return ProviderError(
                PROVIDER_BAD_RESPONSE, message, endpoint=self.endpoint, turn_id=request.turn_id, size=len(raw)
            )

        try:
            payload = json.loads(raw)
        except ValueError:
            raise bad_response("with a body that is not JSON") from None
        if error_object(payload) is not None:
            # Some servers and proxies answer 200 and put the failure in the body.
            raise self._server_error(200, raw, request)
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            raise bad_response("without choices")
        choice = choices[0] if isinstance(choices[0], dict) else {}
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
        if choice.get("finish_reason") == "length":
            raise self._truncated(request, counts)
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise bad_response("with empty content")
        return ProviderResponse(
            text=content, provider_type=self.provider_type, model=self.model, usage=counts
        )

    def _truncated(self, request: ProviderRequest, usage: Mapping[str, int]) -> ProviderError:
        """PROVIDER_OUTPUT_TRUNCATED with the limit and the tokens the server reported."""
        limit = self.options.max_tokens
        used = usage.get("completion_tokens")
        figures = f"max_tokens {limit if limit is not None else 'unset (the server default)'}"
        figures += f", completion_tokens {used}" if used is not None else ""
        return ProviderError(
            PROVIDER_OUTPUT_TRUNCATED,
            f"{self.endpoint} stopped the reply at the token limit (finish_reason length; {figures})",
            endpoint=self.endpoint,
            turn_id=request.turn_id,
            max_tokens=limit,
            completion_tokens=used,
        )


@register_provider(PROVIDER_TYPE)
def openai_provider(options: Mapping[str, Any], env: Mapping[str, str]) -> OpenAIProvider:
    """Build an `OpenAIProvider`; raises what `OpenAIOptions.from_options` raises."""
    return OpenAIProvider(OpenAIOptions.from_options(options, env))

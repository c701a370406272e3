"""OpenAI request bodies, validated, and the JSON error shape every failure is answered with.

Unknown fields are refused with OpenAI's own wording ("Unrecognized request argument"), and
fields this server does not implement (logprobs, tools, n > 1, ...) are refused by name rather
than silently ignored, so a client never gets less than it asked for without knowing. Types are
strict: `"5"` or `true` is not a `max_tokens`, `"yes"` is not a `stream`, NaN is not a
temperature; a value of the wrong type is a 422 naming the field, a value out of range a 400.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ApiError(Exception):
    """An expected failure with its HTTP status and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.code, self.param, self.headers)


def error_response(status: int, message: str, type: str = "invalid_request_error",
                   code: str | None = None, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# Parameters of the OpenAI API that this server does not implement, with the values that mean
# "not used" (and are therefore accepted).
UNSUPPORTED: dict[str, tuple] = {
    "n": (None, 1), "best_of": (None, 1), "echo": (None, False), "logprobs": (None, False, 0),
    "top_logprobs": (None, 0), "logit_bias": (None, {}), "suffix": (None, ""), "tools": (None, []),
    "tool_choice": (None, "none", "auto"), "functions": (None, []), "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}), "modalities": (None, ["text"]), "audio": (None,),
    "prediction": (None,),
}
IGNORED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")  # accepted, no effect


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2, le=2, allow_inf_nan=False)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @property
    def stops(self) -> tuple[str, ...]:
        return tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]

    @field_validator("prompt")
    @classmethod
    def _one(cls, v):
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError("send one prompt per request (batched prompts are not supported)")
            return v[0]
        return v


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def as_template(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


WRONG_TYPE = {"int_type": "an integer", "bool_type": "a boolean (true or false)",
              "float_type": "a number", "finite_number": "a number", "string_type": "a string",
              "list_type": "a list", "model_type": "an object", "dict_type": "an object"}


def _field(loc: tuple) -> str:
    """The field a pydantic location names, without the union member it tried (`str`, `list[int]`)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and (p in ("str", "int") or "[" in p)))


def parse(model: type[BaseModel], body: Any):
    """Validate a JSON body; a problem becomes a 400 naming the parameter."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    body = dict(body)
    for name, allowed in UNSUPPORTED.items():
        if name in body:
            value = body.pop(name)
            if value not in allowed:
                raise ApiError(400, f"{name}={value!r} is not supported by this server", param=name,
                               code="unsupported_parameter")
    for name in IGNORED:
        body.pop(name, None)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        errors = e.errors()
        err = errors[0]
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ApiError(400, f"Unrecognized request argument supplied: {loc}", param=loc,
                           code="unknown_parameter") from None
        typed = [x for x in errors if x["type"] in WRONG_TYPE]
        if typed and all(x["type"] in WRONG_TYPE or x["type"].endswith("_type") for x in errors):
            # A union (`stop`: a string or a list) fails once per member: name the field once.
            name = _field(typed[0]["loc"])
            wanted = dict.fromkeys(WRONG_TYPE[x["type"]] for x in typed if _field(x["loc"]) == name)
            raise ApiError(422, f"{name}: must be {' or '.join(wanted)}", param=name,
                           code="invalid_type") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{loc}: {msg}" if loc else msg, param=loc or None,
                       code="invalid_value") from None

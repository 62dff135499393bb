"""The JSON bodies the API takes: unknown fields are refused (a misspelt option is an error, not ignored), and
every string is cleaned where it comes in: JSON may carry a lone surrogate (``"\\ud800"``), which no tokenizer or
UTF-8 writer takes, so it becomes U+FFFD (:func:`attnscope.text.clean_text`, as everywhere text enters attnscope).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from ..text import clean_text


class JsonBody(BaseModel):
    """Base of every request body (``POST /api/capture``, ``/api/compare``, ``/api/files/trace``, ...)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        return clean_text(value)

"""The JSON bodies the API takes: unknown fields are refused, so a misspelt option is an error, not ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class JsonBody(BaseModel):
    """Base of every request body (``POST /api/capture``, ``/api/compare``, ``/api/files/trace``, ...)."""

    model_config = ConfigDict(extra="forbid")

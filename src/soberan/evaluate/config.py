"""Settings of `soberan evaluate` (the `[evaluate]` section)."""

from pydantic import BaseModel, ConfigDict


class EvaluateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

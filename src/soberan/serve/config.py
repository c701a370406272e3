"""Settings of `soberan serve` (the `[serve]` section)."""

from pydantic import BaseModel, ConfigDict


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

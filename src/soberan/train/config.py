"""Settings of `soberan train` (the `[train]` section)."""

from pydantic import BaseModel, ConfigDict


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

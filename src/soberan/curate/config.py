"""Settings of `soberan curate` (the `[curate]` section)."""

from pydantic import BaseModel, ConfigDict


class CurateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

"""Run-time configuration of the useapi.net simulator.

One :class:`SimulatorConfig` is held by the :class:`~simulator.state.SimulatorState` of each
app; it is immutable and is replaced as a whole by ``POST /_sim/config``, so a task keeps the
settings it was created with.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["succeeded", "failed", "moderated"]
"""How a simulated task ends: ``SUCCEEDED``, ``FAILED`` (string error) or ``FAILED`` moderated."""


class SimulatorConfig(BaseModel):
    """Behaviour of one simulator app.

    Times are in seconds. ``public_url`` is the base of the artifact URLs put in callbacks (for
    instance ``http://127.0.0.1:8090``); when unset, the host of the create request is used.
    ``max_jobs`` (an extension) makes a create answer 429 "busy" once that many tasks are live;
    ``None`` means unlimited. ``accounts`` are the Runway accounts configured "at useapi.net"
    (emails): with several, every upload, create, task and scheduler call must carry ``email``
    (400 otherwise), as the vendor requires. ``account_errors`` maps an account to the pending
    error ``GET /accounts`` shows for it. ``wrap_answers`` answers every create as
    ``{"task": {...}, "code": 200}`` instead of the bare task object.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(default="sim-token", min_length=1)
    progress_steps: int = Field(default=2, ge=0, le=100)
    step_delay: float = Field(default=0.05, ge=0, le=3600)
    start_delay: float = Field(default=0.05, ge=0, le=3600)
    outcome: Outcome = "succeeded"
    duplicate_terminal: bool = False
    shuffle: bool = False
    callback_timeout: float = Field(default=5.0, gt=0, le=600)
    callback_retries: int = Field(default=0, ge=0, le=10)
    callback_retry_delay: float = Field(default=0.2, ge=0, le=600)
    public_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    max_jobs: int | None = Field(default=None, ge=1, le=1000)
    accounts: list[str] = Field(default_factory=lambda: ["sim@example.com"], min_length=1)
    account_errors: dict[str, str] = Field(default_factory=dict)
    wrap_answers: bool = False

    def updated(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Return a validated copy with ``changes`` applied.

        :raise pydantic.ValidationError: a field is unknown or a value is out of range.
        """
        merged = self.model_dump()
        merged.update(changes)
        return SimulatorConfig.model_validate(merged)

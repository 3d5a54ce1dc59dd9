"""What each process builds once from :class:`Settings`: engine, replyRef signer, vendor client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from client import ReplyRefSigner, UseapiClient
from receiver.settings import ConfigError, Settings
from receiver.store.engine import make_engine


@dataclass
class Runtime:
    """The process's shared objects; built by :func:`build_runtime`, never at import time."""

    settings: Settings
    engine: Engine
    signer: ReplyRefSigner
    _extra: dict[str, object] = field(default_factory=dict)

    def vendor_client(self, **options: Any) -> UseapiClient:
        """A new useapi.net client (close it after use).

        :param options: :class:`~client.UseapiClient` options such as ``read_timeout``
            (seconds) or ``busy_retries``; its defaults otherwise.
        :raises ConfigError: USEAPI_TOKEN is not set.
        """
        if not self.settings.useapi_token:
            raise ConfigError("USEAPI_TOKEN is required to talk to useapi.net")
        return UseapiClient(
            self.settings.useapi_token, base_url=self.settings.useapi_base_url, **options
        )


def build_runtime(settings: Settings) -> Runtime:
    """Engine and signer for ``settings`` (no connection is opened yet).

    Every process (each gunicorn worker, ``relay worker``, every ``relay`` command) builds its
    engine here, so each has at most ``DB_POOL_SIZE + DB_MAX_OVERFLOW`` pooled connections.
    """
    engine = make_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    return Runtime(settings=settings, engine=engine, signer=ReplyRefSigner(settings.signing_keys))

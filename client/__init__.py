"""A thin ``requests`` client of the useapi.net Runway API, and the signed ``replyRef``.

A leaf package: it imports nothing from ``receiver`` or ``simulator``.

- :class:`UseapiClient` (``client.session``): assets, create, tasks, scheduler.
- Request models (strict) and the task object (lenient) (``client.models``).
- The error tree and the one status-to-class mapping (``client.errors``).
- :class:`ReplyRefSigner` and its claims and errors (``client.replyref``).
- :func:`load_image` (``client.images``).
"""

from client import errors, images, models, replyref, session
from client.errors import *  # noqa: F403  (each module's __all__ is its list of public names)
from client.images import *  # noqa: F403
from client.models import *  # noqa: F403
from client.replyref import *  # noqa: F403
from client.session import *  # noqa: F403

#: The public names of the five modules, as each module's ``__all__`` lists them (one list each).
__all__: list[str] = []
__all__ += errors.__all__
__all__ += images.__all__
__all__ += models.__all__
__all__ += replyref.__all__
__all__ += session.__all__

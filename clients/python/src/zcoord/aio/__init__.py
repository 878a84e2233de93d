"""The asyncio API: AsyncClient, AsyncSubscription, AsyncMirror, AsyncToolHost."""

from .client import AsyncClient
from .mirror import AsyncMirror
from .subscriber import AsyncSubscription
from .tools import AsyncToolHost

__all__ = ["AsyncClient", "AsyncMirror", "AsyncSubscription", "AsyncToolHost"]

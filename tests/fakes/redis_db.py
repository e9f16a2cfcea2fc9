"""The machine's Redis for tests: each test module uses its own database number."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["flush"]


async def flush(url: str) -> bool:
    """Empty the database at ``url``; False when Redis cannot be reached."""
    client = Redis.from_url(url)
    try:
        await client.flushdb()
        return True
    except (OSError, RedisError):
        return False
    finally:
        await client.aclose()

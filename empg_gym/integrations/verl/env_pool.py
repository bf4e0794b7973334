"""Envs reused across the episodes of one verl agent-loop worker: a thread-safe pool keyed by how they were built.

verl builds a new agent-loop object for every sample, but one worker process plays thousands of episodes. Making an
env per episode would repeat the costly part (ALFWorld loads its PDDL domain, WebShop indexes its catalog) and
leak whatever the env holds if it is not closed. :class:`EnvPool` hands out an idle env built with the same key
(``gym.make`` id and kwargs, plus the loop's prompt settings), builds one when none is idle, takes it back after the
episode (every episode starts with ``reset``), closes the ones beyond ``max_idle`` and, at exit, all idle ones.
An env whose episode raised is closed rather than reused.

Example:
    >>> import gymnasium as gym, empg_gym
    >>> pool = EnvPool(max_idle=1)
    >>> env = pool.acquire(("EMPG-KeyDoor-v0",), lambda: gym.make("EMPG-KeyDoor-v0"))
    >>> pool.release(("EMPG-KeyDoor-v0",), env)
    >>> pool.acquire(("EMPG-KeyDoor-v0",), lambda: gym.make("EMPG-KeyDoor-v0")) is env
    True
    >>> pool.stats()
    {'idle': 0, 'in_use': 1, 'created': 1, 'closed': 0}
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

logger = logging.getLogger(__name__)


class EnvPool:
    """Idle envs by key; ``acquire``/``release`` from any thread (see the module docstring).

    Args:
        max_idle: Idle envs kept per key; an env released beyond that is closed.
    """

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self._idle: dict[Hashable, list[Any]] = {}
        self._in_use = 0
        self._created = 0
        self._closed = 0
        self._lock = threading.Lock()
        _POOLS.add(self)

    def acquire(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Return an idle env built under ``key``, or ``make()`` a new one (outside the lock: making can be slow)."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                self._in_use += 1
                return idle.pop()
        env = make()
        with self._lock:
            self._created += 1
            self._in_use += 1
        return env

    def release(self, key: Hashable, env: Any, *, healthy: bool = True) -> None:
        """Take ``env`` back after its episode; close it when unhealthy or when ``max_idle`` are already idle."""
        with self._lock:
            self._in_use -= 1
            idle = self._idle.setdefault(key, [])
            keep = healthy and len(idle) < self.max_idle
            if keep:
                idle.append(env)
        if not keep:
            self._close(env)

    def close(self) -> None:
        """Close every idle env (envs still in use are closed when they come back unhealthy, or at their release)."""
        with self._lock:
            envs = [e for idle in self._idle.values() for e in idle]
            self._idle.clear()
        for env in envs:
            self._close(env)

    def stats(self) -> dict[str, int]:
        """Return the counts of idle envs, envs in use, envs made and envs closed so far."""
        with self._lock:
            return {"idle": sum(len(v) for v in self._idle.values()), "in_use": self._in_use,
                    "created": self._created, "closed": self._closed}

    def _close(self, env: Any) -> None:
        try:
            env.close()
        except Exception:  # a failing close must not hide the episode's own outcome
            logger.exception("closing a pooled env failed")
        with self._lock:
            self._closed += 1


_POOLS: weakref.WeakSet[EnvPool] = weakref.WeakSet()


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_POOLS):
        pool.close()

"""Helpers for tests that drive the dashboard's coroutines without a server."""

from __future__ import annotations


def run_async(coroutine):
    """Run a coroutine to completion on its own event loop in a worker thread.

    ``asyncio.run`` refuses to start when the calling thread already runs a loop, which is the
    case after pytest-playwright's sync API has run in the same process.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

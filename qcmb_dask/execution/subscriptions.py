"""One subscription to the fragment events per client, shared by every run on that client.

``Client.subscribe_topic`` keeps one handler per topic: a second run subscribing on the same client would
replace the first run's handler, and the first run's progress, ETA and timeline would stop. Here the client
subscribes once, the handler hands each record to the run it names, and the subscription ends with the last
run on that client.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from qcmb_dask import keys
from qcmb_dask.diagnostics import run_events

_lock = threading.Lock()
#: client id -> the dispatcher subscribed on that client
_dispatchers: dict[str, _Dispatcher] = {}


class _Dispatcher:
    def __init__(self):
        #: run id -> what that run does with one fragment record
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}

    def __call__(self, event) -> None:
        _, batch = event
        for record in run_events.unbatch(batch):
            handler = self.handlers.get(record.get("run"))
            if handler is not None:
                handler(record)


@contextlib.contextmanager
def fragment_records(client, run_id: str, handler: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Call ``handler(record)`` for each fragment of run ``run_id`` that ends, while the block runs."""
    with _lock:
        dispatcher = _dispatchers.get(client.id)
        if dispatcher is None:
            dispatcher = _dispatchers[client.id] = _Dispatcher()
            client.subscribe_topic(keys.FRAGMENT_TOPIC, dispatcher)
        dispatcher.handlers[run_id] = handler
    try:
        yield
    finally:
        with _lock:
            dispatcher.handlers.pop(run_id, None)
            if not dispatcher.handlers and _dispatchers.get(client.id) is dispatcher:
                del _dispatchers[client.id]
                with contextlib.suppress(Exception):  # a client already closed has nothing to unsubscribe
                    client.unsubscribe_topic(keys.FRAGMENT_TOPIC)

# Stub of the optional C module evtools/_speedups.c (see its header comment).
from collections.abc import Callable
from typing import Any

class TimestampHook:
    fallback: Callable[[type, Any], Any]
    def __init__(self, timestamp_cls: type, fallback: Callable[[type, Any], Any]) -> None: ...
    def __call__(self, type_: type, obj: Any, /) -> Any: ...

def duplicate_key(data: bytes, /) -> bool | None: ...
def timestamp_shape(text: str, /) -> bool: ...

class Folder:
    def __init__(self, *, decode: Callable[[Any], Any], fast_decoders: dict[str, Any] | None,
                 lossless_decode: Callable[[bytes], Any] | None,
                 encode: Callable[[Any], bytes] | None, reject_duplicates: bool,
                 max_payload: int, json_content_type: str, handlers: dict[type, Any],
                 invariants: dict[Any, Any], id_field: str | None, time_field: str | None,
                 ignore_unhandled: bool, timestamp_cls: type, raw_event_cls: type,
                 not_decoded: Any, input_error: type[BaseException], no_event: Any,
                 run_invariant: Callable[..., Any]) -> None: ...
    def run(self, rehydration: Any, events: Any, tolerance_ns: int, /) -> Any: ...

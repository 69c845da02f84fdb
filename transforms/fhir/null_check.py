"""A fast path in front of fhir_core's check that no list of complex elements holds a null.

fhir_core runs `FHIRAbstractModel.reject_null_complex_elements` before validating every model
instance, the resource and each nested element. It walks all the model's fields (an
Observation has ~50) and asks of each whether it is a list of complex types, though a
resource's dict holds a handful of keys: about a quarter of the CPU of validating Walnut's
resources, the largest share of a full load.

The check can only fail on a value of the input dict that is a list holding a None. The fast
path looks at the dict's own values; when none is such a list it returns the dict, as the
check would, and otherwise it runs fhir_core's check unchanged, so every error (type, location,
order) is the library's own. Validation stays fhir.resources' own in every other respect.

pydantic compiled the check into every model's validator when the classes were created, so
it cannot be replaced by assigning a new classmethod; the function's code object is swapped
instead, which every compiled validator calls through. Only versions of fhir-core whose check
was read and tested against the fast path are patched (`VERIFIED`); on any other version
validation runs as shipped and the upgrade's tests say the list needs a look.
"""

from __future__ import annotations

import logging
import threading
import types
from importlib.metadata import version
from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel

log = logging.getLogger(__name__)

VERIFIED = ("1.1.12",)
_lock = threading.Lock()


def _fast_check(cls: type, data: Any, _original: Any = None) -> Any:
    """Runs as fhir_core's `reject_null_complex_elements`; `_original` is its own code."""
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list) and any(item is None for item in value):
                return _original(cls, data)
    return data


def check_function() -> types.FunctionType:
    """The function object behind `FHIRAbstractModel.reject_null_complex_elements`."""
    return FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__


def install() -> bool:
    """Put the fast path in front of the check, once per process; False if not verified."""
    with _lock:
        check = check_function()
        if check.__code__ is _fast_check.__code__:
            return True
        installed = version("fhir-core")
        if installed not in VERIFIED:
            log.info("fhir-core %s: null check as shipped (verified: %s)", installed, VERIFIED)
            return False
        _swap(check)
        return True


def _swap(check: types.FunctionType) -> None:
    """Give `check` the fast path's code; its own code stays callable as the `_original`."""
    original = types.FunctionType(
        check.__code__, check.__globals__, check.__name__, check.__defaults__, check.__closure__
    )
    check.__code__ = _fast_check.__code__
    check.__defaults__ = (original,)

"""The one place that makes torchvision (and so timm and AutoGluon) importable beside the CPU torch.

Why this exists
---------------
spotbot pins ``torch==2.13.0``, a CPU build. The only torchvision wheels pip finds for it
(0.28.x) are CUDA builds: their compiled extension ``torchvision/_C.so`` cannot be loaded
beside a CPU torch. torchvision copes with a missing extension for most operators (it just
skips their meta kernels), but not for two: at import, ``torchvision/_meta_registrations.py``
registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally, and
``torch.library.register_fake`` fails with "operator torchvision::nms does not exist". That
aborts ``import torchvision`` and, through it, ``import timm`` and ``import autogluon``.

What it does
------------
Before torchvision is imported, ``install()`` tries to load torchvision's own extension. If that
works (a matching torchvision build is installed) nothing else happens. If it does not, it
defines the schemas of the two operators in a ``torch.library`` fragment of the
``torchvision`` namespace, so the fake-kernel registration finds them and the import goes on.
The C++ operators themselves (nms, roi_align, deform_conv2d, ...) stay unavailable:
``torchvision.ops.nms`` and friends raise "Couldn't load custom C++ ops" if called. Image
classification (transforms, timm backbones, AutoGluon's image pipeline) needs none of them.

The alternative (torch 2.14.1 + a matching CPU torchvision from local disk) was rejected:
AutoGluon 1.6.3 pins ``torch<2.14``.

Every module that imports timm, torchvision or autogluon imports this module first; importing
it installs the fix and imports torchvision with its "failed to load extension" warning muted
(idempotent, thread-safe, a no-op when torchvision is not installed).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# Kept alive for the life of the process: dropping a Library object unregisters its schemas.
_FRAGMENTS: list[torch.library.Library] = []
_LOCK = threading.Lock()
_state: str | None = None  # "native", "fragment", "absent" once install() ran

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd"))
        if found:
            return found[0]
    return Path(next(iter(spec.submodule_search_locations))) / "_C.so"


def install() -> str:
    """Make `import torchvision` work; returns how: "native", "fragment" or "absent"."""
    global _state
    with _LOCK:
        if _state is not None:
            return _state
        if "torchvision" in sys.modules:
            # Imported before us: it either worked (native ops) or already failed; nothing to fix.
            _state = "native"
            return _state
        extension = _extension_path()
        if extension is None:
            _state = "absent"
            return _state
        try:
            torch.ops.load_library(str(extension))
            _state = "native"
            return _state
        except (OSError, RuntimeError) as exc:
            log.debug("torchvision's C++ extension does not load (%s); defining nms/qnms", exc)
        existing = torch._C._jit_get_schemas_for_operator("torchvision::nms")
        if not existing:
            fragment = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _SCHEMAS.values():
                fragment.define(schema)
            _FRAGMENTS.append(fragment)
        _state = "fragment"
        return _state


def _import_torchvision_quietly() -> None:
    # torchvision warns once that its extension did not load: expected here, said above.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Failed to load .*extension", category=UserWarning
        )
        import torchvision  # noqa: F401


if install() == "fragment":
    _import_torchvision_quietly()

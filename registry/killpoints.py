"""Named points where the reliability suite kills the process (tests/reliability/).

``killpoint("add:after-blob-rename")`` does nothing unless ``REGISTRY_KILLPOINT`` names that point, in which
case the process dies at once with SIGKILL, as a power cut or the OOM killer would end it. Random-time kills
cannot reliably land in the few microseconds between a blob rename and a catalog commit; these can. Each call
costs one environment lookup.
"""

from __future__ import annotations

import os
import signal


def killpoint(name: str) -> None:
    if os.environ.get("REGISTRY_KILLPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""Process-wide autodiff state the explorer's threads share."""

from __future__ import annotations

import threading

#: Held around every forward-mode (jvp, jacfwd) product. PyTorch's forward-AD
#: levels are one process-wide stack, not per thread: two threads inside a jvp at
#: once (the app's in-process workers running two non-MLP runs) pop each other's
#: level and fail with "Trying to access a forward AD level with an invalid index".
FORWARD_AD_LOCK = threading.RLock()

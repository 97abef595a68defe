"""edgepress: make trained PyTorch models small and fast for edge devices, and prove it.

Host side (needs torch): ``edgepress.compress``. Device side (numpy + one engine):
``edgepress.runtime`` and ``edgepress.devices``.
"""

__version__ = "0.1.0"

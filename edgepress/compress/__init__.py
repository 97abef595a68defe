"""The host side: torch-based stages (load, prune, distill, export, quantize)."""

"""Device profiles, estimates, deployment packages (device side: no torch)."""

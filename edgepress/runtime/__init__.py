"""The device side: numpy plus one inference engine. Never imports torch or edgepress.compress."""

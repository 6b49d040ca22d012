"""The code the sandbox's demo bucket holds: a tiny training script, packed into a tarball by ``demo``."""

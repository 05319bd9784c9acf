"""What the tests share that is not a pytest fixture: the transport fake, the
front door driven in-process, and the C load client (which bench/ uses too)."""

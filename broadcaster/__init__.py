"""broadcaster: a fan-out publish/subscribe server over Server-Sent Events."""

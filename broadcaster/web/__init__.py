"""HTTP handlers. Each module serves one part of the API."""

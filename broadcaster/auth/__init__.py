"""Who may subscribe and publish: topic patterns, JWTs, and where a token is read from.

Nothing here knows a web framework: the doors pass plain values in and turn a
`Refusal` into their own answer.
"""

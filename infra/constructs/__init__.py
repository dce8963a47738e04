"""The stack's building blocks; each takes keyword-only props and exposes what the stack wires together."""

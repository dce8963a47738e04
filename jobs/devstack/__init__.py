"""The local stack: an embedded AWS emulator and the processes `make run`, the e2e tests and the bench start."""

"""Training jobs started from the GUI: a persistent store, a manager, runners (worker thread / subprocess)."""

"""The app's only door to lorkd_core: a torch worker thread, a backend facade and persisted settings."""

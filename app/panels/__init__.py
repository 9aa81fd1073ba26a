"""One small controller per panel: each wires its widgets to the shared StudioState with a loop guard."""

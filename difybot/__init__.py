"""The composition root: settings, wiring of the core with platforms and storage, lifecycle, CLI."""

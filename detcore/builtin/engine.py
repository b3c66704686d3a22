"""Built-in plugin: engine components of the kernel (filled in by the engine library)."""

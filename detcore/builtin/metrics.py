"""Built-in plugin: metrics components of the kernel (filled in by the metrics library)."""

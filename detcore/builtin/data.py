"""Built-in plugin: data components of the kernel (filled in by the data library)."""

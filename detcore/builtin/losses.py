"""Built-in plugin: losses components of the kernel (filled in by the losses library)."""

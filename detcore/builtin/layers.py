"""Built-in plugin: layers components of the kernel (filled in by the layers library)."""

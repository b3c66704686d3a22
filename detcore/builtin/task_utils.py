"""Built-in plugin: task_utils components of the kernel (filled in by the task_utils library)."""

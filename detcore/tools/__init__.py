"""User tools built on the kernel: log analysis, dataset browsing, the demo."""

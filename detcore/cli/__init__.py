"""The ``detcore`` command line."""

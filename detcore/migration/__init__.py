"""Coming from the reference: its Python configs (:mod:`config_import`) and its checkpoints
(:mod:`checkpoint_upgrade`) in detcore's layout."""

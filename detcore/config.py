"""TOML configs: data only, merged from bases, overridden from the command line, checked before use.

- ``extends = ["../_base_/models/retinanet_r50_fpn.toml", ...]`` (paths relative to the file, or
  ``"detcore:_base_/datasets/shapes.toml"`` / ``"fcos:configs/x.toml"``: a config shipped inside an
  installed distribution, see :func:`resolve_extends`) are merged in order, then the file itself:
  tables merge deeply, scalars and arrays replace, and a table with ``_replace = true`` replaces
  what it overrides instead of merging into it.
- A table whose keys are array indices patches items of an array the bases set, leaving the other
  items as they are: ``[model.train_cfg.rcnn.2.assigner]`` (or ``rcnn = { 2 = { ... } }``) merges into
  item 2 of the base's ``rcnn`` array; ``-1`` is the last item. An item that is a table merges (or is
  replaced with ``_replace = true``); any other item is replaced. An index outside the array is an
  error naming the file and the key path. (This is how one stage of a cascade is overridden.)
- ``--set a.b.c=value`` overrides parse ``value`` as a TOML value (``1e-3``, ``true``, ``[1, 2]``,
  ``"text"``); anything that is not valid TOML is taken as a string. Array items are addressed by
  index (``data.train.pipeline.2.scale=[800, 600]``).
- Every key remembers the file or override that set it (``Config.provenance``), so errors and
  ``detcore config show --provenance`` can name it.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

from detcore.errors import ComponentError, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

REPLACE_KEY = "_replace"
OVERRIDE_SOURCE = "--set"


class Config:
    """A merged config: plain nested dicts and lists, plus where each key came from."""

    def __init__(
        self, data: dict[str, Any], provenance: dict[str, str] | None = None, filename: str | None = None
    ) -> None:
        self.data = data
        self.provenance = provenance or {}
        self.filename = filename

    # -- access ------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path (``"model.backbone.depth"``), or ``default``."""
        node: Any = self.data
        for part in path.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return node

    def source_of(self, path: str) -> str:
        """The file or override that set ``path`` (or its nearest set ancestor)."""
        parts = path.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.provenance:
                return self.provenance[key]
            parts.pop()
        return self.filename or "<config>"

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(_drop_none(self.data))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())

    def __repr__(self) -> str:
        return f"Config(filename={self.filename!r}, keys={list(self.data)})"


# -- loading -------------------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    """One TOML file as a dict; a missing, unreadable, empty or invalid file is a :class:`ConfigError`."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file (give a .toml file in it)")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at line {line}); "
            "TOML configs are UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f"{path}: the config file is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config, merge its ``extends`` chain and apply ``--set`` overrides."""
    path = Path(path).resolve()
    data, provenance = _load_merged(path, stack=())
    for override in overrides:
        apply_override(data, provenance, override)
    cfg = Config(data, provenance, str(path))
    refuse_code_keys(cfg)
    return cfg


#: top-level keys of the reference's Python configs that load code; a TOML config never does
_PLUGIN_HINT = "install the plugin distribution that offers the components and list it in plugins = [...]"
CODE_KEYS: dict[str, str] = {
    "custom_imports": _PLUGIN_HINT,
    "imports": _PLUGIN_HINT,
    "allow_failed_imports": _PLUGIN_HINT,
    "_base_": "base configs are named by extends = [...]",
}


def refuse_code_keys(cfg: Config) -> None:
    """Refuse keys that would load code (``custom_imports`` and the like), naming the file and the key."""
    from detcore.config_checks import source_of_table

    for key in cfg.data:
        if key in CODE_KEYS:
            raise ConfigError(
                f"{source_of_table(cfg, key)}: {key}: detcore configs never import or run code; "
                f"{CODE_KEYS[key]}"
            )


def _load_merged(path: Path, stack: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{path}: circular 'extends': {chain}")
    raw = read_toml(path)
    bases = raw.pop("extends", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'extends' must be a list of file paths, got {bases!r}")
    data: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for base in bases:
        base_path = resolve_extends(base, path)
        if not base_path.exists():
            raise ConfigError(f"{path}: extends: base config '{base}' not found (looked at {base_path})")
        if not base_path.is_file():
            raise ConfigError(f"{path}: extends: '{base}' is not a file (looked at {base_path})")
        base_data, base_prov = _load_merged(base_path, (*stack, path))
        merge_into(data, provenance, base_data, base_prov)
    own_prov: dict[str, str] = {}
    _record(raw, str(path), own_prov, "")
    merge_into(data, provenance, raw, own_prov)
    return data, provenance


#: ``NAME:PATH`` (a config shipped inside an installed distribution); a single letter is a drive
_RESOURCE_ENTRY = re.compile(r"^(?P<name>[A-Za-z_][\w.\-]+):(?P<path>[^/\\].*)$")


def resolve_extends(entry: str, referrer: Path) -> Path:
    """The file an ``extends`` entry of ``referrer`` names.

    - ``"../_base_/x.toml"``: a path relative to ``referrer``'s folder (or absolute);
    - ``"detcore:_base_/datasets/shapes.toml"``: a config shipped with detcore, relative to its
      config root (:func:`config_root`);
    - ``"NAME:configs/x.toml"``: a file inside an installed plugin (``NAME`` its short name in
      ``plugins = [...]``) or importable package, relative to that package's folder, found through
      ``importlib.resources``.
    """
    match = _RESOURCE_ENTRY.match(entry)
    if match is None:
        return (referrer.parent / entry).resolve()
    return (config_root(match["name"], where=f"{referrer}: extends: '{entry}'") / match["path"]).resolve()


def config_root(name: str, where: str = "") -> Path:
    """The folder ``NAME:PATH`` extends entries are relative to: for ``detcore`` its shipped configs
    (``detcore/configs`` in an installed distribution, else the checkout's ``configs/``); for a plugin
    short name (an entry point of ``detcore.plugins``) or an importable package, the package's folder.
    An unknown name is a :class:`ConfigError` naming the installed plugins."""
    import importlib.resources
    import importlib.util

    prefix = f"{where}: " if where else ""
    if name == "detcore":
        import detcore

        shipped = Path(detcore.__file__).resolve().parent / "configs"
        checkout = Path(detcore.__file__).resolve().parents[1] / "configs"
        for candidate in (shipped, checkout):
            if candidate.is_dir():
                return candidate.resolve()  # in a checkout, detcore/configs links to configs/
        raise ConfigError(f"{prefix}detcore's configs are not installed (looked at {shipped})")
    package = _plugin_package(name) or name
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.submodule_search_locations is None:
        from detcore.plugins import _entry_points

        installed = sorted({ep.name for ep in _entry_points()})
        raise ConfigError(
            f"{prefix}no installed plugin or package '{name}' ships configs "
            f"(installed plugins: {', '.join(installed) or 'none'}; 'detcore:...' names detcore's own)"
        )
    root = importlib.resources.files(package)
    if not isinstance(root, Path):
        raise ConfigError(f"{prefix}package '{package}' is not a folder on disk ({root})")
    return root


def _plugin_package(name: str) -> str | None:
    """The top-level package of plugin ``name``'s entry point (``det_plugin_fcos`` for ``fcos``)."""
    from detcore.plugins import _entry_points

    for ep in _entry_points():
        if ep.name == name:
            return ep.value.split(":")[0].split(".")[0]
    return None


def _record(node: Any, source: str, provenance: dict[str, str], prefix: str) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == REPLACE_KEY:
                continue
            path = f"{prefix}.{key}" if prefix else key
            provenance[path] = source
            _record(value, source, provenance, path)


def merge_into(
    dst: dict[str, Any],
    dst_prov: dict[str, str],
    src: Mapping[str, Any],
    src_prov: Mapping[str, str],
    prefix: str = "",
) -> None:
    """Merge ``src`` into ``dst`` in place: tables merge; other values and ``_replace`` tables replace."""
    for key, value in src.items():
        if key == REPLACE_KEY:
            continue
        path = f"{prefix}.{key}" if prefix else key
        replace = isinstance(value, Mapping) and value.get(REPLACE_KEY, False)
        if isinstance(value, Mapping) and isinstance(dst.get(key), list) and not replace:
            if _index_table(value, path, src_prov):
                _merge_items(dst[key], dst_prov, value, src_prov, path)
                continue
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict) and not replace:
            dst_prov[path] = src_prov.get(path, dst_prov.get(path, ""))
            merge_into(dst[key], dst_prov, value, src_prov, path)
            continue
        for old in [k for k in dst_prov if k.startswith(path + ".")]:
            del dst_prov[old]
        dst[key] = _strip_replace(copy.deepcopy(value))
        for k, v in src_prov.items():
            if k == path or k.startswith(path + "."):
                dst_prov[k] = v


def _is_index(key: Any) -> bool:
    return isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key) is not None


def _index_table(table: Mapping[str, Any], path: str, prov: Mapping[str, str]) -> bool:
    """Whether ``table`` (set over the array at ``path``) is keyed by item indices; a table mixing
    indices and other keys is an error."""
    keys = [k for k in table if k != REPLACE_KEY]
    indices = [k for k in keys if _is_index(k)]
    if indices and len(indices) != len(keys):
        others = [k for k in keys if not _is_index(k)]
        raise ConfigError(
            f"{prov.get(path, '<config>')}: {path}: patches items {indices} of an array but also sets "
            f"{others}; a table over an array is keyed by item indices only (or replaces it with no index)"
        )
    return bool(indices)


def _merge_items(
    items: list[Any],
    dst_prov: dict[str, str],
    table: Mapping[str, Any],
    src_prov: Mapping[str, str],
    path: str,
) -> None:
    """Patch ``items`` (an array set by a base) in place from a table keyed by item indices."""
    for key, value in table.items():
        if key == REPLACE_KEY:
            continue
        given = f"{path}.{key}"
        index = int(key)
        if not -len(items) <= index < len(items):
            source = src_prov.get(given, src_prov.get(path, "<config>"))
            raise ConfigError(
                f"{source}: {given}: index {index} is outside the array of {len(items)} items that the base "
                f"config{'s' if len(items) != 1 else ''} set at {path} (indices 0 to {len(items) - 1})"
            )
        index %= len(items)
        item_path = f"{path}.{index}"
        # provenance of the patch under the item's own index (``-1`` -> ``2``)
        prov = {
            item_path + k[len(given) :]: v
            for k, v in src_prov.items()
            if k == given or k.startswith(given + ".")
        }
        replace = isinstance(value, Mapping) and value.get(REPLACE_KEY, False)
        if isinstance(value, Mapping) and isinstance(items[index], dict) and not replace:
            # the item's keys came with the array: say so before the patch claims the item
            base_prov: dict[str, str] = {}
            _record(items[index], dst_prov.get(path, ""), base_prov, item_path)
            dst_prov.update({k: v for k, v in base_prov.items() if k not in dst_prov})
            dst_prov[item_path] = prov.get(item_path, dst_prov.get(path, ""))
            merge_into(items[index], dst_prov, value, prov, item_path)
            continue
        for old in [k for k in dst_prov if k.startswith(item_path + ".")]:
            del dst_prov[old]
        items[index] = _strip_replace(copy.deepcopy(value))
        dst_prov.update(prov)


def _strip_replace(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_replace(v) for k, v in value.items() if k != REPLACE_KEY}
    if isinstance(value, list):
        return [_strip_replace(v) for v in value]
    return value


def parse_value(text: str) -> Any:
    """A TOML-typed value from override text; plain text when it is not a TOML value."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(data: dict[str, Any], provenance: dict[str, str], override: str) -> None:
    """Apply one ``a.b.c=value`` override in place."""
    key_path, sep, text = override.partition("=")
    key_path = key_path.strip()
    if not sep or not key_path:
        raise ConfigError(f"{OVERRIDE_SOURCE} '{override}': expected KEY.PATH=VALUE")
    parts = key_path.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = _list_item(node, part, override, where)
            continue
        if part not in node:
            node[part] = {}
        elif not isinstance(node[part], (dict, list)):
            raise ConfigError(
                f"{OVERRIDE_SOURCE} '{override}': '{where}' is a {type(node[part]).__name__}, not a table"
            )
        node = node[part]
    value = parse_value(text.strip())
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last, override, key_path)
        node[index] = value
    else:
        node[last] = value
    for old in [k for k in provenance if k.startswith(key_path + ".")]:
        del provenance[old]
    provenance[key_path] = f"{OVERRIDE_SOURCE} {override}"
    _record(value, f"{OVERRIDE_SOURCE} {override}", provenance, key_path)


def _list_index(node: list, part: str, override: str, where: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(
            f"{OVERRIDE_SOURCE} '{override}': '{where}' indexes an array of {len(node)} items with '{part}'"
        )
    return int(part)


def _list_item(node: list, part: str, override: str, where: str) -> Any:
    return node[_list_index(node, part, override, where)]


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


# -- validation ----------------------------------------------------------------------------------------
#
# A table with a ``type`` is a component. Its kind comes from where it sits: a top-level table's from
# ROOT_KINDS (what the runner builds from it), a nested one's from its parent factory's declaration
# (``Registry.parameter_kinds``: ``component_kinds`` or a default table); arrays pass the kind on to
# every item. A component's other keys must be parameters of its factory, and its ``train_cfg`` /
# ``test_cfg`` must match the settings the factory declares (``detcore.settings``).

#: The kind of each top-level table (dotted path) that the runner builds as a component.
ROOT_KINDS: dict[str, str] = {
    "model": "detector",
    "data.train": "dataset",
    "data.val": "dataset",
    "data.test": "dataset",
    "evaluator": "metric",
    "optimizer": "optimizer",
    "custom_hooks": "run_hook",
}

#: Keys of a component table that the builder of that kind consumes itself (not the factory).
BUILDER_KEYS: dict[str, set[str]] = {"layer": {"requires_grad", "fallback_on_stride", "postfix"}}

#: Tables with ``type`` that are options of the code reading them, not registry components
#: (``init_cfg``: initialisers of detcore.models.init; ``nms``: multiclass_nms; ``runner``: the loop).
NOT_COMPONENTS = {"nms", "init_cfg", "runner"}


def validate_config(cfg: Config, registry: Any | None = None) -> None:
    """Check the whole config before anything is built.

    - every plugin named in ``plugins`` is installed, loaded and of a matching version;
    - every table with a ``type`` names a known component of the kind expected there, its other keys
      are parameters of that component's factory, and its settings tables (``train_cfg``,
      ``test_cfg``, per-stage arrays of them) hold only the keys the components reading them declare.

    Raises :class:`ConfigError` / :class:`~detcore.errors.PluginError` naming the file and key path.
    """
    from detcore.plugins import check_required_plugins
    from detcore.registry import get_registry

    registry = registry or get_registry()
    plugins = cfg.get("plugins", [])
    if not isinstance(plugins, list):
        raise ConfigError(f"{cfg.source_of('plugins')}: plugins: must be an array of plugin names")
    for i, spec in enumerate(plugins):
        if not isinstance(spec, str):
            raise ConfigError(
                f"{cfg.source_of('plugins')}: plugins.{i}: a plugin name (a string) is expected, "
                f"got {type(spec).__name__} {spec!r}"
            )
    check_required_plugins(plugins, registry.manager, where=cfg.source_of("plugins"))
    _Validator(cfg, registry).visit(cfg.data, "", None)
    from detcore.config_checks import check_config_tables

    check_config_tables(cfg, registry)


class _Validator:
    """Walks a config, checking each component table where it sits (see the section comment)."""

    def __init__(self, cfg: Config, registry: Any) -> None:
        self.cfg = cfg
        self.registry = registry

    def where(self, path: str) -> str:
        return f"{self.cfg.source_of(path)}: {path}"

    def visit(self, node: Any, path: str, kind: str | None) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                self.visit(item, _join(path, str(i)), kind)
            return
        if not isinstance(node, Mapping):
            return
        if isinstance(node.get("type"), str) and path.rsplit(".", 1)[-1] not in NOT_COMPONENTS:
            self.component(node, path, kind)
            return
        for key, value in node.items():
            child = _join(path, key)
            self.visit(value, child, ROOT_KINDS.get(child))

    def component(self, node: Any, path: str, kind: str | None) -> None:
        from detcore.registry import check_arguments
        from detcore.settings import SettingsError, check_settings, declared_settings

        if not isinstance(node, Mapping):
            return  # an already-built object (Python composition), nothing to check here
        try:
            entry = self.registry.lookup(node["type"], kind)
        except ComponentError as exc:
            raise ConfigError(f"{self.where(path + '.type')}: {exc}") from None
        args = {k: v for k, v in node.items() if k != "type"}
        for arg in args:
            if arg in BUILDER_KEYS.get(entry.kind, ()):
                continue
            try:
                check_arguments(entry, {arg: None}, require=False)
            except ConfigError as exc:
                raise ConfigError(f"{self.where(_join(path, arg))}: {exc}") from None
        from detcore.config_checks import check_value_types

        own = {k: v for k, v in args.items() if k not in BUILDER_KEYS.get(entry.kind, ())}
        wrong = check_value_types(entry.factory, own)  # what the signature declares: int, float, Literal
        if wrong:
            key, reason = wrong
            raise ConfigError(f"{self.where(_join(path, key))}: {reason} ({entry.kind} '{entry.name}')")
        settings = declared_settings(entry.factory)
        try:
            check_settings(
                entry.factory, args, resolver=self.registry.resolve_argument,
                component=lambda value, rel, k: self.visit(value, _join(path, rel), k),
                unchecked=lambda value, rel: self.visit(value, _join(path, rel), None),
            )
        except SettingsError as exc:
            raise ConfigError(f"{self.where(_join(path, exc.path))}: {exc.reason}") from None
        kinds = self.registry.parameter_kinds(entry.factory)
        for arg, value in args.items():
            if arg not in settings:
                self.visit(value, _join(path, arg), kinds.get(arg))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key

"""Config files: JSON, YAML and TOML, chosen by suffix, read into a plain dict.

``read_config_file`` parses a file and checks that it holds a mapping of
settings with string keys; :func:`ductaflow.config.load_config_file`
normalises the result, so the same settings give the same config (and the
same hash) whichever format holds them. YAML is read with PyYAML's safe
loader and TOML with the standard library, both imported only when a file
of theirs is read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from .exceptions import ConfigError

FORMATS = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}
CONFIG_SUFFIXES = tuple(FORMATS)  # a file with any other suffix is read as JSON
_SUPPORTED = ", ".join(CONFIG_SUFFIXES[:-1]) + f" or {CONFIG_SUFFIXES[-1]}"


def config_format(path: str | os.PathLike[str]) -> str:
    """``"JSON"``, ``"YAML"`` or ``"TOML"``, by the file's suffix (any case); any other suffix is JSON."""
    return FORMATS.get(Path(path).suffix.lower(), "JSON")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a config file by its suffix and return its top-level mapping, not yet normalised.

    Raises :class:`ConfigError` naming the file when it is missing, cannot be
    parsed (with the line and column the parser gives), or does not hold a
    mapping with string keys.
    """
    p = Path(path)
    kind = config_format(p)
    text = _read_text(p, kind)
    if kind == "YAML":
        return _parse_yaml(p, text)
    if kind == "TOML":
        return _parse_toml(p, text)
    return _parse_json(p, text)


def _read_text(p: Path, kind: str) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(p)!r} does not exist. Check the path, which is relative to "
            f"{os.getcwd()!r}, or pass --config with an existing config file ({_SUPPORTED}).",
            path=str(p),
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(p)!r} cannot be read ({exc}). Pass a readable UTF-8 {kind} file.",
            path=str(p),
        ) from None


def _other_suffix(p: Path) -> str:
    """For a file read as JSON only because its suffix is not one of ours: say so, and what to do."""
    if p.suffix.lower() == ".json":
        return ""
    suffix = repr(p.suffix) if p.suffix else "no suffix"
    return (f" It was read as JSON because it has {suffix}; config files are read by suffix "
            f"({_SUPPORTED}): rename it to match the format it is written in.")  # fmt: skip


def _parse_json(p: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}. Fix the file (a JSON object such as "
            '{"param1": 100}).' + _other_suffix(p),
            path=str(p),
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} holds a JSON {type(data).__name__}, not an object. "
            'Wrap the settings in an object such as {"param1": 100}.' + _other_suffix(p),
            path=str(p),
        )
    return data


def _parse_toml(p: Path, text: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte order mark, as some editors write
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not valid TOML: {exc}. Fix the file (TOML settings are "
            "key = value lines, such as param1 = 100, strings in quotes, sections as [section]).",
            path=str(p),
        ) from None


_YAML_FIX = "Fix the file (a YAML mapping of settings, such as param1: 100)."
_YAML_TAG_FIX = (
    "Remove the tag: a config holds mappings, lists, strings, numbers, booleans, null and dates "
    "(YAML is read with yaml.safe_load, which builds no Python objects)."
)


def _parse_yaml(p: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(text, Loader=_config_loader())  # a subclass of yaml.SafeLoader
    except (_Problem, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {str(p)!r} {_yaml_problem(exc)}", path=str(p)) from None
    if data is None:
        raise ConfigError(
            f"config file {str(p)!r} holds no settings (it is empty or only comments). "
            "Write them as a YAML mapping such as param1: 100, or {} for a config without settings.",
            path=str(p),
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} holds a YAML {_yaml_kind(data)}, not a mapping. "
            "Write the settings as key: value lines, such as param1: 100.",
            path=str(p),
        )
    return data


def _yaml_problem(exc: Any) -> str:
    """What is wrong in the file, where (1-based line and column) and the fix, from a loader error."""
    if isinstance(exc, _Problem):
        return f"has {exc.subject}{_at(exc.mark)}{exc.detail}. {exc.fix}"
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = _at(getattr(exc, "problem_mark", None))
    if problem.startswith("could not determine a constructor for the tag"):
        tag = problem.rpartition(" the tag ")[2].replace("tag:yaml.org,2002:", "!!")
        return f"uses the YAML tag {tag}{where}, which a config cannot hold. {_YAML_TAG_FIX}"
    if getattr(exc, "context", None) == "expected a single document in the stream":
        return (f"holds more than one YAML document (another starts{where}). Keep one: a config file "
                "is one mapping of settings, without a --- line between parts.")  # fmt: skip
    context = ""
    if getattr(exc, "context", None) and getattr(exc, "problem", None) and exc.context_mark is not None:
        context = f" ({exc.context}{_at(exc.context_mark).replace(' at', ' started at', 1)})"
    return f"is not valid YAML: {problem}{where}{context}. {_YAML_FIX}"


def _at(mark: Any) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return next((name for cls, name in kinds.items() if isinstance(value, cls)), type(value).__name__)


def _read_as(value: Any) -> str:
    """How YAML read a key that is not a string: 'the number 1', 'the boolean True', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return f"the {_yaml_kind(value)} {value!r}"
    if isinstance(value, (_dt.date, _dt.time)):
        return f"the {type(value).__name__} {value.isoformat()}"
    return f"a {_yaml_kind(value)}"


class _Problem(Exception):
    """What the config loader refuses in a file PyYAML accepts, where, and the fix."""

    def __init__(self, subject: str, mark: Any, detail: str, fix: str) -> None:
        super().__init__(subject + detail)
        self.subject, self.mark, self.detail, self.fix = subject, mark, detail, fix


_LOADER: Any = None


def _config_loader() -> Any:
    """PyYAML's SafeLoader, plus: keys must be strings, and an alias may not refer to a node holding it."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.open_anchors: set[str] = set()

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent) and self.peek_event().anchor in self.open_anchors:
                event = self.peek_event()
                raise _Problem(
                    f"the alias *{event.anchor}",
                    event.start_mark,
                    f" inside the node &{event.anchor} it refers to, which would never end",
                    f"An alias may only repeat a node defined before it: move *{event.anchor} out of it.",
                )
            return super().compose_node(parent, index)

        def compose_sequence_node(self, anchor: Any) -> Any:
            return self._open(anchor, super().compose_sequence_node)

        def compose_mapping_node(self, anchor: Any) -> Any:
            return self._open(anchor, super().compose_mapping_node)

        def _open(self, anchor: Any, compose: Any) -> Any:
            if anchor is None:
                return compose(anchor)
            self.open_anchors.add(anchor)
            try:
                return compose(anchor)
            finally:
                self.open_anchors.discard(anchor)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)  # merge keys (<<: *base) first, as SafeLoader does
                for key_node, _ in node.value:
                    _check_key(self.construct_object(key_node, deep=True), key_node)
            return super().construct_mapping(node, deep=deep)

    _LOADER = ConfigLoader
    return _LOADER


def _check_key(key: Any, node: Any) -> None:
    if isinstance(key, str):
        return
    if isinstance(node.value, str):  # a scalar: its text as written in the file
        subject, detail = f"the key {node.value or '(empty)'}", f", which YAML reads as {_read_as(key)}"
        fix = f'Quote it ("{node.value}": ...): config keys must be strings.'
    else:
        subject, detail = f"a key that is a {_yaml_kind(key)}", ""
        fix = "Use a name as the key: config keys must be strings."
    raise _Problem(subject, node.start_mark, detail, fix)

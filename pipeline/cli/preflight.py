"""Compose the config once before Hydra does, to explain mistakes plainly.

Hydra's own messages for a misspelt key suggest `+key=value` (adding the typo to the config),
which is the wrong fix. Composing first lets us name the key, the closest valid spelling, and
the options, in one paragraph, and exit non-zero before anything is written.
"""

from __future__ import annotations

import difflib
import re
import sys

from pipeline.config import CONF_DIR, PipelineError

# OmegaConf's type names -> (what to ask for, an example value).
TYPES = {
    "bool": ("true or false", "true"),
    "boolean": ("true or false", "true"),
    "integer": ("an integer", "64"),
    "int": ("an integer", "64"),
    "float": ("a number", "0.5"),
}


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean `{close[0]}`?" if close else ""


def _keys_at(cfg, dotted_parent: str) -> list[str]:
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, dotted_parent) if dotted_parent else cfg
    return [str(k) for k in node.keys()] if node is not None and hasattr(node, "keys") else []


def explain(exc: Exception, base_cfg) -> str | None:
    """One paragraph for a composition error, or None when we do not recognise it."""
    from hydra.errors import MissingConfigException, OverrideParseException

    cause = exc.__cause__
    text = str(cause or exc)
    if isinstance(exc, MissingConfigException):
        m = re.search(r"Could not find '([^/']+)/([^']+)'", str(exc))
        if m:
            group, option = m.groups()
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            return (
                f"Unknown option `{option}` for the config group `{group}`.{_suggest(option, options)} "
                f"Available options: {', '.join(options)}. Pick one with `{group}=NAME`."
            )
    if isinstance(exc, OverrideParseException):
        return f"Could not parse a command-line override: {str(exc).splitlines()[0]}. Write overrides as `key=value`."
    m = re.search(r"Key '([^']+)' not in '(\w+)'", text)
    full = re.search(r"full_key: (\S+)", text)
    if m and full:
        key = full.group(1)
        parent = key.rpartition(".")[0]
        valid = [k for k in _keys_at(base_cfg, parent) if not k.startswith("_")] if base_cfg else []
        where = f"`{parent}`" if parent else "the top level"
        return (
            f"Unknown config key `{key}`.{_suggest(m.group(1), valid)} Valid keys at {where}: "
            f"{', '.join(valid)}. Fix the spelling on the command line or in the YAML file."
        )
    m = re.search(
        r"Value '(.*)' (?:of type '\w+' could not be converted to|is not a valid) (\w+)", text
    )
    if m and full:
        value, expected = m.groups()
        what, example = TYPES.get(expected.lower(), (expected.lower(), "..."))
        return (
            f"Received an invalid value for `{full.group(1)}`: expected {what}, got {value!r}. "
            f"Pass {what}, for example `{full.group(1)}={example}`."
        )
    return None


def preflight(argv: list[str], conf_dir=CONF_DIR, name: str = "config", register=None) -> None:
    """Exit with a clear message if the overrides in argv do not compose into the app's config
    (`name` in `conf_dir`, its schemas put in the ConfigStore by `register`); else return."""
    if any(a.startswith("-") for a in argv):
        return  # multirun, --help, --cfg...: sweep syntax is Hydra's to check
    from hydra import compose, initialize_config_dir

    from pipeline.config import register_configs
    from pipeline.config.schema import unknown_key_error, unknown_keys

    (register or register_configs)()
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        try:
            cfg = compose(name, overrides=argv)
        except Exception as exc:  # noqa: BLE001 - anything unexplained is left to Hydra
            error = exc
        else:
            for key, valid in unknown_keys(cfg):  # `+key=value` gets past composition
                fail(unknown_key_error(key, valid))
            return
        # Only now, for the message: the config with the group choices alone, so the valid
        # keys listed are those of the chosen options.
        groups = [a for a in argv if "." not in a.partition("=")[0].lstrip("+~")]
        try:
            base = compose(name, overrides=groups)
        except Exception:  # noqa: BLE001 - a bad group choice: list the default config's keys
            try:
                base = compose(name)
            except Exception:  # noqa: BLE001
                base = None
        message = explain(error, base)
        if message is None:
            return
        fail(message)


def fail(message: str | PipelineError) -> None:
    """Print the one-paragraph error and exit with status 2."""
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(2)

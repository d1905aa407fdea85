r"""recbole_fair.model.settings
############################

Reading a model's settings from a RecBole config, for the ``*Settings.from_config`` dataclasses of
the models (:class:`~recbole_fair.model.fair_settings.FAIRSettings`,
:class:`~recbole_fair.model.action_settings.ActionModelSettings`): one reader, so that a missing
or invalid value raises the same :class:`~recbole_fair.errors.ConfigError` naming the key
whichever model reads it::

    read = ConfigReader(config, "FAIR reads it from properties/model/FAIR.yaml")
    n_codes = read.integer("n_codes", low=1)
    attention = read.choice("attention", ("focused", "standard"))
    nrt_margin = read.number("nrt_margin", default=0.0 if nrt_off else None)

A ``default`` is used when the key is absent (or ``None``); without one, an absent key is an
error. A ``preset`` fixes some keys to one value (RPG is FAIR with three switches fixed): an
absent key takes it, another value is an error.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from recbole_fair.errors import ConfigError


class ConfigReader:
    r"""Typed, validated reads of a RecBole ``Config`` (or any mapping).

    Args:
        config: a RecBole ``Config`` (``None`` for an absent key) or a ``dict``.
        source (str): where the keys come from, for the missing-key message (e.g. ``"FAIR reads
            it from properties/model/FAIR.yaml"``).
        preset (Mapping, optional): keys fixed to one value; an absent key takes it, another
            value raises :class:`ConfigError` ending with ``preset_hint``.
        preset_hint (str): what to do instead of changing a preset key.
    """

    def __init__(
        self,
        config: Any,
        source: str,
        preset: Mapping[str, Any] | None = None,
        preset_hint: str = "",
    ) -> None:
        self.config = config
        self.source = source
        self.preset = dict(preset or {})
        self.preset_hint = preset_hint

    def get(self, key: str) -> Any:
        r"""The raw value of ``key``: ``None`` when absent, the preset's value where it has one."""
        try:
            value = self.config[key]
        except KeyError:
            value = None
        if key not in self.preset:
            return value
        if value is None:
            return self.preset[key]
        if value != self.preset[key]:
            raise ConfigError(f"{key} [{value}] is fixed to [{self.preset[key]}]{self.preset_hint}")
        return value

    def _value(self, key: str, default: Any) -> Any:
        value = self.get(key)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(f"config key [{key}] is missing; {self.source}.")

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        r"""One of ``choices``."""
        value = self._value(key, default)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {choices}, got [{value}].")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        r"""``True`` or ``False`` (not a string, not a number)."""
        value = self._value(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be True or False, got [{value}].")
        return value

    def number(
        self, key: str, low: float = 0.0, strict: bool = False, default: float | None = None
    ) -> float:
        r"""A finite number ``>= low`` (``> low`` with ``strict``), as given (int or float)."""
        value = self._value(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{key} must be a number, got [{value!r}].")
        if value < low or (strict and value == low):
            raise ConfigError(f"{key} must be {'>' if strict else '>='} {low}, got [{value}].")
        return value

    def integer(self, key: str, low: int = 0, default: int | None = None) -> int:
        r"""A whole number ``>= low`` (``32`` or ``32.0``; not ``32.5``, not ``True``)."""
        value = self.number(key, low, default=default)
        if value != int(value):
            raise ConfigError(f"{key} must be an integer, got [{value}].")
        return int(value)

    def optional_number(self, key: str) -> float | None:
        r"""A number, or ``None`` when the key is absent or ``~`` (no range check)."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number or ~, got [{value!r}].")
        return value

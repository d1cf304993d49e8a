"""Fault rules: parsing, validation and the per-request decision of which fault applies."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

MODES: tuple[str, ...] = (
    "latency",
    "error",
    "http_500",
    "http_502_html",
    "http_429",
    "hang",
    "truncated",
    "reset",
)

# Mode-specific fields, so that a typo such as latency_ms on an http_500 rule is reported, not ignored.
_MODE_FIELDS = {"latency": "latency_ms", "http_429": "retry_after", "hang": "hang_seconds"}
_COMMON_FIELDS = ("mode", "path", "method", "times", "probability")
KNOWN_FIELDS: tuple[str, ...] = (*_COMMON_FIELDS, *_MODE_FIELDS.values())


class FaultRuleError(ValueError):
    """A fault rule is invalid; `field` names the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class FaultRule:
    """One fault rule; `times` counts down as the rule is applied."""

    mode: str
    path: str | None = None
    method: str | None = None
    times: int | None = None
    probability: float | None = None
    latency_ms: float | None = None
    retry_after: int | str | None = None
    hang_seconds: float | None = None

    @classmethod
    def from_dict(cls, raw: object, where: str = "rule") -> FaultRule:
        """Validate a JSON rule object, raising FaultRuleError that names the bad field."""
        if not isinstance(raw, dict):
            raise FaultRuleError(where, "a fault rule must be a JSON object")
        for key in raw:
            if key not in KNOWN_FIELDS:
                raise FaultRuleError(f"{where}.{key}", f"unknown field; expected one of {', '.join(KNOWN_FIELDS)}")
        mode = raw.get("mode")
        if mode not in MODES:
            raise FaultRuleError(f"{where}.mode", f"mode must be one of {', '.join(MODES)}")
        for owner, key in _MODE_FIELDS.items():
            if key in raw and mode != owner:
                raise FaultRuleError(f"{where}.{key}", f"{key} is only valid for mode {owner}")

        rule = cls(mode=mode)
        path = raw.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise FaultRuleError(f"{where}.path", "path must be a string starting with '/'")
        rule.path = path
        method = raw.get("method")
        if method is not None and (not isinstance(method, str) or not method.isalpha()):
            raise FaultRuleError(f"{where}.method", "method must be an HTTP method name such as GET")
        rule.method = method.upper() if method else None
        times = raw.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise FaultRuleError(f"{where}.times", "times must be an integer >= 1")
        rule.times = times
        probability = raw.get("probability")
        if probability is not None and (not _is_number(probability) or not 0 <= probability <= 1):
            raise FaultRuleError(f"{where}.probability", "probability must be a number between 0 and 1")
        rule.probability = probability

        if mode == "latency":
            latency = raw.get("latency_ms")
            if not _is_number(latency) or latency < 0:
                raise FaultRuleError(f"{where}.latency_ms", "latency_ms is required and must be a number >= 0")
            rule.latency_ms = latency
        elif mode == "http_429":
            retry_after = raw.get("retry_after")
            valid_seconds = isinstance(retry_after, int) and not isinstance(retry_after, bool) and retry_after >= 0
            valid_date = isinstance(retry_after, str) and retry_after.strip() != ""
            if retry_after is not None and not (valid_seconds or valid_date):
                raise FaultRuleError(
                    f"{where}.retry_after", "retry_after must be an integer >= 0 or an HTTP-date string"
                )
            rule.retry_after = retry_after
        elif mode == "hang":
            hang = raw.get("hang_seconds")
            if hang is not None and (not _is_number(hang) or hang <= 0):
                raise FaultRuleError(f"{where}.hang_seconds", "hang_seconds must be a number > 0")
            rule.hang_seconds = hang
        return rule

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form, omitting unset fields."""
        return {key: getattr(self, key) for key in KNOWN_FIELDS if getattr(self, key) is not None}

    def matches(self, method: str, path: str) -> bool:
        """Tell whether the rule targets this request."""
        if self.method is not None and self.method != method:
            return False
        return self.path is None or path.startswith(self.path)


def parse_rules(raw: object) -> list[FaultRule]:
    """Validate a list of JSON rules."""
    if not isinstance(raw, list):
        raise FaultRuleError("rules", "fault rules must be a JSON list")
    return [FaultRule.from_dict(item, f"rules[{index}]") for index, item in enumerate(raw)]


@dataclass
class FaultPlan:
    """What to do to one request: an optional delay, then an optional terminal fault."""

    release: threading.Event
    latency_seconds: float = 0.0
    action: FaultRule | None = None
    applied: list[str] = field(default_factory=list)


class FaultInjector:
    """Thread-safe rule list with a deterministic RNG and a release signal for hung requests."""

    def __init__(self, seed: int, hang_max_seconds: float) -> None:
        self._seed = seed
        self.hang_max_seconds = hang_max_seconds
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._release = threading.Event()
        self._closed = False

    def replace(self, rules: list[FaultRule]) -> None:
        """Install a new rule list, reseed the RNG and release requests held by the old rules."""
        with self._lock:
            self._rules = list(rules)
            # Reseeding makes a probability rule yield the same sequence every time it is installed.
            self._rng = random.Random(self._seed)
            self._release_waiters()

    def clear(self) -> None:
        """Remove every rule and release hung or delayed requests."""
        self.replace([])

    def close(self) -> None:
        """Release every waiting request for good; later waits return at once."""
        with self._lock:
            self._closed = True
            self._release.set()

    @property
    def closed(self) -> bool:
        """True once close() was called (the sandbox is stopping)."""
        with self._lock:
            return self._closed

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the current rules as JSON objects."""
        with self._lock:
            return [rule.as_dict() for rule in self._rules]

    def plan(self, method: str, path: str) -> FaultPlan | None:
        """Decide the faults for one request, consuming `times` and RNG draws."""
        with self._lock:
            plan = FaultPlan(release=self._release)
            for rule in list(self._rules):
                if not rule.matches(method, path):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                plan.applied.append(rule.mode)
                if rule.mode == "latency":
                    plan.latency_seconds += (rule.latency_ms or 0) / 1000
                    continue
                plan.action = rule
                break
            return plan if plan.applied else None

    def hang_seconds(self, rule: FaultRule) -> float:
        """Return how long a hang rule holds a request."""
        requested = rule.hang_seconds if rule.hang_seconds is not None else self.hang_max_seconds
        return min(requested, self.hang_max_seconds)

    def _release_waiters(self) -> None:
        self._release.set()
        if not self._closed:
            self._release = threading.Event()

"""Shared, thread-safe in-memory state of one sandbox: customers, fault rules, request log, variants."""

from __future__ import annotations

import bisect
import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import current_app

from sandbox.data import COLUMNS, generate_customers
from sandbox.faults import FaultInjector, parse_rules
from sandbox.variants import check_envelope, check_field_variant

if TYPE_CHECKING:
    from sandbox.app import SandboxConfig

Record = dict[str, Any]

EXTENSION_KEY = "crm_sandbox"


def current_state() -> SandboxState:
    """Return the state of the sandbox app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]


class UniqueViolation(Exception):
    """The email is already used by another customer (PostgreSQL's `customers_email_key`)."""

    def __init__(self, email: str) -> None:
        super().__init__(email)
        self.email = email


class CustomerStore:
    """Customers by id, an id sequence, and lazily built sort indexes kept in step with writes."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[int, Record] = {}
        self._by_email: dict[str, int] = {}
        self._indexes: dict[str, list[int]] = {}
        self._next_id = 1

    def load(self, records: Iterable[Record]) -> None:
        """Replace every customer; the sequence continues after the highest id."""
        with self._lock:
            self._records = {record["id"]: record for record in sorted(records, key=lambda r: r["id"])}
            self._by_email = {record["email"]: cid for cid, record in self._records.items()}
            self._indexes = {}
            self._next_id = max(self._records, default=0) + 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def get(self, customer_id: int) -> Record | None:
        """Return the customer, or None."""
        with self._lock:
            return self._records.get(customer_id)

    def email_owner(self, email: str) -> int | None:
        """Return the id holding this exact email, or None."""
        with self._lock:
            return self._by_email.get(email)

    def burn_id(self) -> int:
        """Consume a sequence value the way a failed INSERT does in PostgreSQL."""
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def insert(self, values: Record) -> int:
        """Insert a customer, assigning the next id; the id is consumed even when the email clashes."""
        with self._lock:
            customer_id = self.burn_id()
            if values["email"] in self._by_email:
                raise UniqueViolation(values["email"])
            record = {"id": customer_id, **{column: values[column] for column in COLUMNS[1:]}}
            self._records[customer_id] = record
            self._by_email[record["email"]] = customer_id
            for column, index in self._indexes.items():
                bisect.insort_right(index, customer_id, key=self._sort_key(column))
            return customer_id

    def update(self, customer_id: int, changes: Record) -> bool:
        """Apply column changes atomically; return False when the id does not exist."""
        with self._lock:
            old = self._records.get(customer_id)
            if old is None:
                return False
            new_email = changes.get("email", old["email"])
            owner = self._by_email.get(new_email)
            if owner is not None and owner != customer_id:
                raise UniqueViolation(new_email)
            # Records are replaced, never mutated, so readers may serialize them outside the lock.
            self._records[customer_id] = {**old, **changes}
            if new_email != old["email"]:
                del self._by_email[old["email"]]
                self._by_email[new_email] = customer_id
            for column in changes:
                if column != "id" and changes[column] != old[column]:
                    self._indexes.pop(column, None)
            return True

    def page(
        self,
        column: str,
        descending: bool,
        offset: int,
        limit: int,
        predicate: Callable[[Record], bool] | None = None,
    ) -> list[Record]:
        """Return one page ordered by `column` (NULLs last ascending, first descending), ties by id."""
        with self._lock:
            index = self._index(column)
            records = self._records
            if predicate is None:
                if descending:
                    stop = len(index) - offset
                    chosen = index[max(stop - limit, 0) : stop][::-1] if stop > 0 else []
                else:
                    chosen = index[offset : offset + limit]
                return [records[cid] for cid in chosen]
            page: list[Record] = []
            to_skip = offset
            for cid in reversed(index) if descending else index:
                record = records[cid]
                if not predicate(record):
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                page.append(record)
                if len(page) == limit:
                    break
            return page

    def _index(self, column: str) -> list[int]:
        index = self._indexes.get(column)
        if index is None:
            # Dict order is id order and sorted() is stable, so equal values stay ordered by id.
            index = list(self._records) if column == "id" else sorted(self._records, key=self._sort_key(column))
            self._indexes[column] = index
        return index

    def _sort_key(self, column: str) -> Callable[[int], tuple[bool, Any]]:
        records = self._records

        def key(customer_id: int) -> tuple[bool, Any]:
            value = records[customer_id][column]
            return (value is None, value)

        return key


class RequestLog:
    """Bounded, thread-safe log of requests the sandbox received, with a way to wait for arrivals."""

    def __init__(self, limit: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._changed = threading.Condition()
        self._sequence = 0

    def record(self, entry: dict[str, Any]) -> None:
        """Append an entry and wake waiters."""
        with self._changed:
            self._sequence += 1
            self._entries.append({"seq": self._sequence, **entry})
            self._changed.notify_all()

    def snapshot(self, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Return copies of the recorded entries, optionally only those whose path has this prefix."""
        with self._changed:
            return [copy.deepcopy(entry) for entry in self._matching(path_prefix)]

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        with self._changed:
            count = len(self._entries)
            self._entries.clear()
            return count

    def wait_for(self, count: int = 1, path_prefix: str | None = None, timeout: float = 5.0) -> bool:
        """Block until at least `count` matching entries exist; False if `timeout` passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._matching(path_prefix)) >= count, timeout)

    def _matching(self, path_prefix: str | None) -> list[dict[str, Any]]:
        if path_prefix is None:
            return list(self._entries)
        return [entry for entry in self._entries if entry["path"].startswith(path_prefix)]


class SandboxState:
    """Everything one running sandbox shares between its request threads."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.customers = CustomerStore()
        self.faults = FaultInjector(seed=config.seed, hang_max_seconds=config.hang_max_seconds)
        self.requests = RequestLog(config.request_log_limit)
        self._variant_lock = threading.Lock()
        self._envelope = config.envelope
        self._field_variant = config.field_variant
        self.customers.load(generate_customers(config.customers, config.seed))
        self.faults.replace(parse_rules(list(config.faults)))

    @property
    def variants(self) -> dict[str, str]:
        """Return the active envelope and field variant."""
        with self._variant_lock:
            return {"envelope": self._envelope, "field_variant": self._field_variant}

    def set_variants(self, envelope: str | None = None, field_variant: str | None = None) -> dict[str, str]:
        """Switch response variants at run time; raise ValueError on unknown names."""
        if envelope is not None:
            check_envelope(envelope)
        if field_variant is not None:
            check_field_variant(field_variant)
        with self._variant_lock:
            self._envelope = envelope or self._envelope
            self._field_variant = field_variant or self._field_variant
        return self.variants

    def reset(self) -> None:
        """Reseed the customers, drop every fault rule and the request log, restore configured variants."""
        self.customers.load(generate_customers(self.config.customers, self.config.seed))
        self.faults.clear()
        self.requests.clear()
        with self._variant_lock:
            self._envelope = self.config.envelope
            self._field_variant = self.config.field_variant

    def close(self) -> None:
        """Release every request held by a hang or latency fault."""
        self.faults.close()

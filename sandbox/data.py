"""Deterministic seed data for the CRM sandbox."""

from __future__ import annotations

import gc
import random
from datetime import datetime, timedelta

COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "email",
    "phone",
    "company",
    "industry",
    "revenue",
    "notes",
    "created_at",
    "updated_at",
)

# The real CRM bootstraps every customer in one transaction, so they all share NOW().
SEED_TIMESTAMP = "2026-12-03T15:39:22.430075"

SEED_CUSTOMERS: tuple[dict, ...] = tuple(
    {
        "id": cid,
        "name": name,
        "email": email,
        "phone": phone,
        "company": company,
        "industry": industry,
        "revenue": revenue,
        "notes": None,
        "created_at": SEED_TIMESTAMP,
        "updated_at": SEED_TIMESTAMP,
    }
    for cid, name, email, phone, company, industry, revenue in (
        (1, "Acme Corporation", "contact@acme.com", "+1-555-0101", "Acme Corp", "Manufacturing", 5200000.0),
        (2, "Globex Industries", "info@globex.com", "+1-555-0102", "Globex", "Technology", 12800000.0),
        (3, "Initech Solutions", "sales@initech.com", "+1-555-0103", "Initech", "Consulting", 3400000.0),
        (4, "Wayne Enterprises", "bruce@wayne.com", "+1-555-0106", "Wayne Ent", "Conglomerate", 120000000.0),
    )
)

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Charlotte", "James",
    "Ava", "William", "Isabella", "Benjamin", "Mia", "Lucas", "Evelyn", "Henry", "Harper", "Theodore",
    "Luna", "Jack", "Camila", "Levi", "Gianna", "Alexander", "Elizabeth", "Jackson", "Eleanor", "Mateo",
    "Ella", "Daniel", "Abigail", "Michael", "Sofia", "Mason", "Avery", "Sebastian", "Scarlett", "Ethan",
    "Priya", "Arjun", "Mei", "Hiroshi", "Fatima", "Omar", "Ingrid", "Lars", "Zofia", "Tomasz",
    "Chloé", "Søren", "José", "Ana", "Nikolai", "Aisha", "Kwame", "Yuki", "Raj", "Elena",
)  # fmt: skip

_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Patel", "Kim", "Chen", "Nakamura", "Kowalski", "Novak", "Larsen", "Müller", "O'Neil", "Dubois",
)  # fmt: skip

_COMPANY_STEMS = (
    "Northwind", "Blue Harbor", "Summit", "Ironclad", "Silverline", "Redwood", "Brightpath", "Keystone",
    "Evergreen", "Horizon", "Pinnacle", "Cobalt", "Granite", "Lakeside", "Meridian", "Orchard", "Polaris",
    "Quantum", "Riverbend", "Sterling", "Tidewater", "Vanguard", "Westfield", "Zenith", "Aurora", "Beacon",
    "Cascade", "Driftwood", "Falcon", "Harbor Point", "Juniper", "Kestrel", "Larkspur", "Monarch", "Nimbus",
)  # fmt: skip

_COMPANY_SUFFIXES = (
    "Labs", "Logistics", "Systems", "Holdings", "Partners", "Group", "Aerial", "Robotics", "Analytics",
    "Industries", "Consulting", "Dynamics", "Networks", "Works", "Supply Co", "Ventures", "Technologies",
)  # fmt: skip

_LEGAL_FORMS = ("", "", "", " Inc", " LLC", " Ltd", " GmbH", " S.A.", " Corp")

_INDUSTRIES = (
    "Manufacturing", "Technology", "Consulting", "Logistics", "Agriculture", "Energy", "Construction",
    "Healthcare", "Retail", "Media", "Public Sector", "Insurance", "Mining", "Telecommunications",
    "Drone Operations", "Surveying", "Film & Photography", "Security", "Utilities", "Education",
)  # fmt: skip

_NOTES = (
    "Prefers email contact.",
    "Renewal due next quarter.",
    "Asked for a volume discount.",
    "Key account; escalate issues to the account manager.",
    "Met at the 2026 trade show.",
    "source=octo-drone-shop",
)

_ASCII_FOLD = str.maketrans({"é": "e", "ø": "o", "ü": "u", "'": "", " ": "", ".": "", "&": ""})


def _slug(text: str) -> str:
    return text.lower().translate(_ASCII_FOLD)


def generate_customers(count: int, seed: int) -> list[dict]:
    """Return `count` customers: the four CRM seed rows, then deterministic fake ones."""
    if count < 0:
        raise ValueError("count must be >= 0")
    customers = [dict(row) for row in SEED_CUSTOMERS[:count]]
    if count <= len(SEED_CUSTOMERS):
        return customers
    gc_was_enabled = gc.isenabled()
    # 100k fresh dicts would trigger hundreds of pointless young-generation collections.
    gc.disable()
    try:
        customers.extend(_fake_customers(range(len(SEED_CUSTOMERS) + 1, count + 1), random.Random(seed)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return customers


def _fake_customers(ids: range, rng: random.Random) -> list[dict]:
    # Built column by column with comprehensions: a per-row loop is too slow for 100k rows.
    rand = rng.random
    companies = [
        f"{stem} {suffix}{form}"
        for stem in _COMPANY_STEMS
        for suffix in _COMPANY_SUFFIXES
        for form in (*_LEGAL_FORMS[:3], rng.choice(_LEGAL_FORMS))
    ]
    domains = [_slug(company.split(" ")[0]) + rng.choice((".com", ".io", ".net", ".co")) for company in companies]
    people = [(f"{first} {last}", _email_locals(first, last)) for first in _FIRST_NAMES for last in _LAST_NAMES]
    n_people, n_companies = len(people), len(companies)

    person = [people[int(rand() * n_people)] for _ in ids]
    company = [int(rand() * n_companies) for _ in ids]
    email_roll = [rand() for _ in ids]
    phone_roll = [rand() for _ in ids]
    revenue_roll = [rand() for _ in ids]
    extra_roll = [rand() for _ in ids]
    created_idx, stamps = _import_batches(len(ids), rng)
    last_stamp = len(stamps) - 1

    emails = [
        f"{p[1][_email_style(r)]}{cid}@{domains[c].upper() if 0.07 <= r < 0.09 else domains[c]}"
        for p, c, r, cid in zip(person, company, email_roll, ids, strict=True)
    ]
    phones = [
        None if r < 0.15 else f"+1-555-{cid % 10000:04d}" if r < 0.85 else f"+44 20 7946 {cid % 10000:04d}"
        for r, cid in zip(phone_roll, ids, strict=True)
    ]
    revenues = [
        round(10 ** (4 + r * 5.5), 2) if r < 0.9 else float(cid % 50 * 100_000)
        for r, cid in zip(revenue_roll, ids, strict=True)
    ]
    return [
        {
            "id": cid,
            "name": p[0],
            "email": email,
            "phone": phone,
            "company": companies[c],
            "industry": _INDUSTRIES[int(r * 1000) % len(_INDUSTRIES)] if r < 0.97 else None,
            "revenue": revenue,
            "notes": _NOTES[int(r * 10000) % len(_NOTES)] if r < 0.05 else None,
            "created_at": stamps[b],
            "updated_at": stamps[b] if r < 0.7 else stamps[min(b + 1 + int(r * 40) % 20, last_stamp)],
        }
        for cid, p, email, phone, c, revenue, r, b in zip(
            ids, person, emails, phones, company, revenues, extra_roll, created_idx, strict=True
        )
    ]


def _email_locals(first: str, last: str) -> tuple[str, ...]:
    f, lname = _slug(first), _slug(last)
    mixed_case = f"{first}.{last}".translate(_ASCII_FOLD)
    return (f"{f}.{lname}", f, f"{f[0]}{lname}", f"{lname}.{f}", f"{f}_{lname}", mixed_case)


def _email_style(roll: float) -> int:
    # Real CRMs hold mixed-case addresses typed by people; clients must not lowercase them blindly.
    return 5 if roll < 0.07 else int(roll * 1000) % 5


def _import_batches(count: int, rng: random.Random) -> tuple[list[int], list[str]]:
    """Assign rows to import batches that share one timestamp, as rows inserted in one transaction do."""
    stamps: list[str] = []
    batch_of: list[int] = []
    moment = datetime.fromisoformat(SEED_TIMESTAMP)
    # Batches follow the CRM's bootstrap within minutes, so every seeded row predates any real "now"
    # and a freshly touched updated_at always sorts last.
    while len(batch_of) < count:
        moment += timedelta(microseconds=50_000 + rng.randrange(500_000))
        batch_of.extend([len(stamps)] * (1 + rng.randrange(60)))
        stamps.append(moment.isoformat())
    return batch_of[:count], stamps

"""Seeded generator of a realistic Pipedrive account: organizations, persons in them, deals for
them and activities on those deals. Same seed and counts on an empty account -> the same records,
field by field (times are laid out backwards from a fixed ``anchor``, not from the wall clock).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .fields import ADDRESS_PARTS
from .state import PipedriveState
from .timefmt import rfc3339

DEFAULT_ANCHOR = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400

FIRST = ["Liis", "Mart", "Kadri", "Jaan", "Anna", "Peeter", "Maria", "Tõnu", "Eva", "Karl", "Sofia", "Oskar",
         "Laura", "Henrik", "Emma", "Lucas", "Mia", "Noah", "Olivia", "Elias", "Grete", "Rasmus", "Hanna",
         "Marten", "Ada", "Priya", "Kenji", "Fatima", "Diego", "Ingrid", "Tomasz", "Amara", "Luca", "Zoe"]
LAST = ["Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel", "Lepik", "Müller",
        "Schmidt", "Novak", "Rossi", "Garcia", "Smith", "Johansson", "Nielsen", "Kowalski", "Dubois", "Silva",
        "Tanaka", "Okafor", "Haddad", "Larsen", "Virtanen", "O'Brien", "van Dijk", "Costa"]
ORG_A = ["Northwind", "Baltic", "Nordic", "Silverline", "Bluebird", "Granite", "Harbor", "Aurora", "Evergreen",
         "Ironwood", "Lumen", "Meridian", "Oakridge", "Pioneer", "Quantum", "Riverside", "Summit", "Tidewater",
         "Vertex", "Westbrook", "Zephyr", "Cobalt", "Amber", "Falcon"]
ORG_B = ["Logistics", "Software", "Foods", "Analytics", "Energy", "Health", "Retail", "Systems", "Labs", "Media",
         "Robotics", "Finance", "Textiles", "Motors", "Consulting", "Networks"]
ORG_SUFFIX = ["OÜ", "AS", "Ltd", "GmbH", "Inc", "AB", "Oy", "SA", "BV", "LLC"]
CITIES = [("Tallinn", "EE", "10111"), ("Tartu", "EE", "51003"), ("Riga", "LV", "LV-1050"),
          ("Helsinki", "FI", "00100"), ("Stockholm", "SE", "111 20"), ("Berlin", "DE", "10115"),
          ("London", "GB", "EC1A 1BB"), ("Amsterdam", "NL", "1012 AB"), ("Warsaw", "PL", "00-001"),
          ("Lisbon", "PT", "1100-148")]
STREETS = ["Tartu mnt", "Narva mnt", "Pärnu mnt", "Main Street", "Harbour Road", "Market Square", "Station Road",
           "Mill Lane", "Kings Way", "Park Avenue"]
PRODUCTS = ["annual licence", "pilot", "expansion", "support plan", "onboarding", "renewal", "API add-on",
            "enterprise upgrade", "training package", "data migration"]
CURRENCIES = ["EUR", "EUR", "EUR", "USD", "GBP", "SEK"]
SUBJECTS = {"call": ["Intro call", "Follow-up call", "Pricing call", "Renewal call"],
            "meeting": ["Demo", "Kick-off meeting", "Quarterly review", "Workshop"],
            "task": ["Send proposal", "Prepare contract", "Update CRM notes", "Check references"],
            "deadline": ["Proposal deadline", "Contract signature due"],
            "email": ["Send recap email", "Share case study"], "lunch": ["Lunch with champion"]}


@dataclass
class GeneratorOptions:
    seed: int = 0
    persons: int = 100
    organizations: int = 20
    deals: int = 50
    activities: int = 100
    shared_update_time: int = 0   # this many records of each entity get one identical update_time
    anchor: int = DEFAULT_ANCHOR  # latest generated update_time


def _ascii(s: str) -> str:
    table = str.maketrans({"õ": "o", "ä": "a", "ö": "o", "ü": "u", "Õ": "O", "Ä": "A", "Ö": "O", "Ü": "U",
                           "'": "", " ": ""})
    return s.translate(table).lower()


class _Clocked:
    """Hands out (add_ts, update_ts) pairs; the first ``shared`` pairs share one update_ts."""

    def __init__(self, rng: random.Random, anchor: int, shared: int):
        self.rng, self.anchor, self.shared = rng, anchor, shared
        self.shared_ts = anchor - 3 * 3600
        self.n = 0

    def times(self) -> tuple[int, int]:
        rng = self.rng
        self.n += 1
        if self.n <= self.shared:
            add = self.shared_ts - rng.randint(DAY, 300 * DAY)
            return add, self.shared_ts
        add = self.anchor - rng.randint(2 * DAY, 365 * DAY)
        update = add + rng.randint(0, self.anchor - add)
        return add, update


def generate(state: PipedriveState, options: GeneratorOptions | None = None, **overrides) -> dict:
    """Add generated records to ``state`` (normally right after ``state.reset()``); returns counts."""
    opts = options or GeneratorOptions()
    for key, value in overrides.items():
        setattr(opts, key, value)
    rng = random.Random(opts.seed)
    fields = {e: {f.name: f for f in state.fields.custom(e)} for e in ("person", "organization", "deal")}
    user_ids = [u["id"] for u in state.users]
    with state.lock:
        orgs = _organizations(state, rng, opts, fields["organization"], user_ids)
        persons = _persons(state, rng, opts, fields["person"], user_ids, orgs)
        deals = _deals(state, rng, opts, fields["deal"], user_ids, persons, orgs)
        _activities(state, rng, opts, user_ids, deals, persons)
    return {"organizations": opts.organizations, "persons": opts.persons, "deals": opts.deals,
            "activities": opts.activities}


def _option(fdef, rng) -> int:
    return rng.choice(fdef.options)["id"]


def _organizations(state, rng, opts, f, user_ids) -> list[dict]:
    clock = _Clocked(rng, opts.anchor, opts.shared_update_time)
    table = state.tables["organization"]
    out, used = [], set()
    for _ in range(opts.organizations):
        while True:
            name = f"{rng.choice(ORG_A)} {rng.choice(ORG_B)}"
            if name not in used or len(used) >= len(ORG_A) * len(ORG_B):
                break
        if name in used:
            name = f"{name} {len(used)}"
        used.add(name)
        name = f"{name} {rng.choice(ORG_SUFFIX)}"
        city, country, postal = rng.choice(CITIES)
        street, number = rng.choice(STREETS), str(rng.randint(1, 120))
        address = dict.fromkeys(ADDRESS_PARTS)
        address.update(value=f"{street} {number}, {city}", country=country, locality=city, route=street,
                       street_number=number, postal_code=postal)
        domain = _ascii(name.rsplit(" ", 1)[0]) + ".test"
        add, upd = clock.times()
        row = {"id": table.next_id, "name": name, "owner_id": rng.choice(user_ids), "is_deleted": False,
               "visible_to": rng.choice((3, 3, 3, 7)), "address": address, "label_ids": [],
               "custom_fields": {
                   f["Industry"].key: _option(f["Industry"], rng) if rng.random() < 0.8 else None,
                   f["Employee count"].key: rng.choice((5, 12, 40, 85, 150, 420, 1200, 5000)),
                   f["Website"].key: f"https://www.{domain}" if rng.random() < 0.9 else None}}
        row["_domain"] = domain
        state.insert_generated("organization", _public(row), add, upd)
        out.append(row)
    return out


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _persons(state, rng, opts, f, user_ids, orgs) -> list[dict]:
    clock = _Clocked(rng, opts.anchor, opts.shared_update_time)
    table = state.tables["person"]
    out, emails = [], set()
    interests = [o["id"] for o in f["Interests"].options]
    for _ in range(opts.persons):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        org = rng.choice(orgs) if orgs and rng.random() < 0.85 else None
        domain = org["_domain"] if org else rng.choice(("mail.test", "inbox.test", "post.test"))
        local = f"{_ascii(first)}.{_ascii(last)}"
        email, n = f"{local}@{domain}", 1
        while email in emails:  # unique emails, so match-by-email sync tests have one answer
            n += 1
            email = f"{local}{n}@{domain}"
        emails.add(email)
        mails = [{"value": email, "primary": True, "label": "work"}]
        if rng.random() < 0.2:
            mails.append({"value": f"{_ascii(first)}{rng.randint(1, 99)}@home.test", "primary": False,
                          "label": "home"})
        phones = [{"value": f"+372 5{rng.randint(100, 999)} {rng.randint(1000, 9999)}", "primary": True,
                   "label": rng.choice(("work", "mobile"))}] if rng.random() < 0.75 else []
        add, upd = clock.times()
        row = {"id": table.next_id, "name": f"{first} {last}", "first_name": first, "last_name": last,
               "owner_id": rng.choice(user_ids), "org_id": org["id"] if org else None, "emails": mails,
               "phones": phones, "is_deleted": False, "visible_to": 3, "label_ids": [], "picture_id": None,
               "custom_fields": {
                   f["Tier"].key: _option(f["Tier"], rng) if rng.random() < 0.6 else None,
                   f["Lead score"].key: rng.randint(0, 100) if rng.random() < 0.7 else None,
                   f["LinkedIn profile"].key: (f"https://www.linkedin.com/in/{local.replace('.', '-')}"
                                               if rng.random() < 0.5 else None),
                   f["Interests"].key: sorted(rng.sample(interests, rng.randint(1, 2)))
                   if rng.random() < 0.4 else None}}
        state.insert_generated("person", row, add, upd)
        out.append(row)
    return out


def _deals(state, rng, opts, f, user_ids, persons, orgs) -> list[dict]:
    clock = _Clocked(rng, opts.anchor, opts.shared_update_time)
    table = state.tables["deal"]
    out = []
    for _ in range(opts.deals):
        person = rng.choice(persons) if persons else None
        org_id = person["org_id"] if person else (rng.choice(orgs)["id"] if orgs else None)
        org_name = next((o["name"] for o in orgs if o["id"] == org_id), None) if org_id else None
        pipeline_id = 1 if rng.random() < 0.8 else 2
        stage = rng.choice(state.stages_of(pipeline_id))
        status = rng.choices(("open", "won", "lost"), (70, 20, 10))[0]
        add, upd = clock.times()
        currency = rng.choice(CURRENCIES)
        value = float(rng.randrange(500, 120000, 250))
        close = rfc(upd) if status != "open" else None
        title_owner = org_name.rsplit(" ", 1)[0] if org_name else (person["name"] if person else "Direct")
        row = {"id": table.next_id, "title": f"{title_owner} {rng.choice(PRODUCTS)}",
               "creator_user_id": rng.choice(user_ids), "owner_id": rng.choice(user_ids),
               "person_id": person["id"] if person else None, "org_id": org_id, "pipeline_id": pipeline_id,
               "stage_id": stage["id"], "value": value, "currency": currency, "stage_change_time": rfc(upd),
               "is_deleted": False, "is_archived": False, "archive_time": None, "status": status,
               "probability": None, "lost_reason": rng.choice(("Price", "Timing", "Competitor"))
               if status == "lost" else None, "visible_to": 3, "close_time": close,
               "won_time": close if status == "won" else None, "lost_time": close if status == "lost" else None,
               "expected_close_date": _date(add + rng.randint(14, 120) * DAY), "label_ids": [],
               "origin": "ManuallyCreated", "origin_id": None, "channel": None, "channel_id": None,
               "arr": None, "mrr": None, "acv": None,
               "custom_fields": {
                   f["Contract value"].key: {"value": round(value * rng.uniform(0.8, 1.2), 2), "currency": currency}
                   if rng.random() < 0.5 else None,
                   f["Lead source"].key: _option(f["Lead source"], rng) if rng.random() < 0.7 else None,
                   f["Renewal date"].key: _date(add + rng.randint(180, 400) * DAY) if rng.random() < 0.4 else None}}
        state.insert_generated("deal", row, add, upd)
        out.append(row)
    return out


def _activities(state, rng, opts, user_ids, deals, persons) -> None:
    clock = _Clocked(rng, opts.anchor, opts.shared_update_time)
    table = state.tables["activity"]
    for _ in range(opts.activities):
        deal = rng.choice(deals) if deals and rng.random() < 0.8 else None
        person_id = deal["person_id"] if deal else (rng.choice(persons)["id"] if persons else None)
        org_id = deal["org_id"] if deal else None
        kind = rng.choice(("call", "call", "meeting", "task", "email", "deadline", "lunch"))
        add, upd = clock.times()
        due = add + rng.randint(-5, 30) * DAY
        done = due < opts.anchor - 7 * DAY and rng.random() < 0.8
        row = {"id": table.next_id, "subject": rng.choice(SUBJECTS[kind]), "type": kind,
               "owner_id": rng.choice(user_ids), "creator_user_id": rng.choice(user_ids), "is_deleted": False,
               "deal_id": deal["id"] if deal else None, "lead_id": None, "person_id": person_id, "org_id": org_id,
               "project_id": None, "due_date": _date(due),
               "due_time": f"{rng.randint(7, 17):02d}:{rng.choice((0, 15, 30, 45)):02d}:00"
               if kind in ("call", "meeting", "lunch") else None,
               "duration": rng.choice(("00:15:00", "00:30:00", "01:00:00")) if kind in ("call", "meeting") else None,
               "busy": kind == "meeting", "done": done, "marked_as_done_time": rfc(upd) if done else None,
               "location": None, "participants": [{"person_id": person_id, "primary": True}] if person_id else [],
               "public_description": None, "priority": None,
               "note": f"<p>{rng.choice(('Discuss seats', 'Agenda shared', 'Bring pricing', 'Check budget'))}</p>"
               if rng.random() < 0.5 else None}
        state.insert_generated("activity", row, add, upd)


rfc = rfc3339


def _date(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))

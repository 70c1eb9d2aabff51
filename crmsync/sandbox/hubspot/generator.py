"""Seeded HubSpot data: same seed and counts -> the same records, ids, timestamps and associations.

``same_modified=N`` stamps the first N contacts (and companies/deals, up to their counts) with one
identical lastmodifieddate, like HubSpot's month-end batch jobs; used to test the 10,000-result search
cap with more than 10,000 records sharing one timestamp."""
from __future__ import annotations

import random

from . import objects as ot
from .store import PortalState, iso

FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
         "Tim", "Hedy", "Dennis", "Katherine", "John", "Annie", "Guido", "Sophie", "Yukihiro", "Joan", "Niklaus",
         "Carol", "Bjarne", "Mary", "James", "Lynn", "Leslie", "Shafi", "Whitfield", "Anita", "Vint")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Dijkstra", "Liskov", "Knuth", "Allen",
        "Thompson", "Perlman", "Berners-Lee", "Lamarr", "Ritchie", "Johnson", "McCarthy", "Easley", "van Rossum",
        "Wilson", "Matsumoto", "Clarke", "Wirth", "Shaw", "Stroustrup", "Keller", "Gosling", "Conway",
        "Lamport", "Goldwasser", "Diffie", "Borg", "Cerf")
WORDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne",
         "Soylent", "Aperture", "Wonka", "Gringotts", "Oscorp", "Massive", "Dynamic", "Blue", "North", "Bright")
SUFFIX = ("Labs", "Systems", "Industries", "Partners", "Group", "Works", "Analytics", "Logistics", "Foods",
          "Health")
TLDS = ("com", "io", "co", "org", "net", "de", "fr")
INDUSTRIES = ("COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "HOSPITAL_HEALTH_CARE", "RETAIL", "LOGISTICS_AND_SUPPLY_CHAIN")
CITIES = (("Berlin", "Germany"), ("Paris", "France"), ("Boston", "United States"), ("Austin", "United States"),
          ("London", "United Kingdom"), ("Tallinn", "Estonia"), ("Lisbon", "Portugal"), ("Toronto", "Canada"))
TITLES = ("CTO", "Head of Sales", "Account Executive", "Engineer", "Office Manager", "CEO", "Buyer", "Analyst")

BASE_MS = 1735689600000  # 2025-01-01T00:00:00Z: data does not depend on the wall clock
DAY = 86_400_000


def seed_portal(state: PortalState, seed: int = 0, contacts: int = 0, companies: int = 0, deals: int = 0,
                tasks: int = 0, notes: int = 0, calls: int = 0, meetings: int = 0, emails: int = 0,
                same_modified: int = 0, same_modified_at: int | None = None) -> dict[str, int]:
    rng = random.Random(seed)
    shared_ms = same_modified_at if same_modified_at is not None else BASE_MS + 180 * DAY + 12_345
    stages = [s.id for s in ot.PIPELINES["default"][1]]
    T = ot.TYPES  # noqa: N806  a type alias

    def stamps(i: int):
        created = BASE_MS + rng.randrange(0, 150 * DAY)
        updated = shared_ms if i < same_modified else created + rng.randrange(0, 150 * DAY)
        return created, updated

    def put(type_name: str, props: dict, created: int, updated: int, assocs=()):
        type_ = T[type_name]
        rec = state.create(type_, props, validate=False, emit=False, at_ms=created)
        for to_type, to_id, type_id in assocs:
            state._associate(type_, rec.id, T[to_type], to_id, type_id, "API", emit=False)
        rec.touch(updated)
        rec.index_until, rec.indexed = 0, None  # seeded data is already indexed
        return rec.id

    company_ids, contact_ids, deal_ids = [], [], []
    with state.lock:
        for i in range(companies):
            name = f"{rng.choice(WORDS)} {rng.choice(SUFFIX)}"
            domain = f"{name.lower().replace(' ', '')}{i}.{rng.choice(TLDS)}"
            city, country = rng.choice(CITIES)
            created, updated = stamps(i)
            company_ids.append(put("companies", {
                "name": name, "domain": domain, "website": f"https://www.{domain}", "industry": rng.choice(INDUSTRIES),
                "phone": f"+1 555 {rng.randrange(1000, 9999)}", "city": city, "country": country,
                "numberofemployees": str(rng.choice((5, 12, 50, 200, 1000, 5000))),
                "annualrevenue": str(rng.randrange(100, 50000) * 1000),
                "lifecyclestage": rng.choice(("lead", "customer", "opportunity")),
                "crm_tier": rng.choice(("bronze", "silver", "gold")),
            }, created, updated))
        for i in range(contacts):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            domain = f"{rng.choice(WORDS).lower()}{rng.randrange(100)}.{rng.choice(TLDS)}"
            city, country = rng.choice(CITIES)
            created, updated = stamps(i)
            props = {"email": f"{first}.{last}.{i}@{domain}".lower().replace(" ", ""), "firstname": first,
                     "lastname": last, "phone": f"+1 555 {rng.randrange(1000, 9999)}", "jobtitle": rng.choice(TITLES),
                     "city": city, "country": country,
                     "lifecyclestage": rng.choice(ot.LIFECYCLE[:6]), "crm_score": str(rng.randrange(0, 100))}
            if rng.random() < 0.3:
                props["crm_tier"] = rng.choice(("bronze", "silver", "gold"))
            assocs = [("companies", rng.choice(company_ids), 1)] if company_ids and rng.random() < 0.8 else []
            contact_ids.append(put("contacts", props, created, updated, assocs))
        for i in range(deals):
            created, updated = stamps(i)
            props = {"dealname": f"{rng.choice(WORDS)} {rng.choice(('renewal', 'expansion', 'pilot', 'license'))}",
                     "amount": f"{rng.randrange(5, 500) * 100}.00", "pipeline": "default",
                     "dealstage": rng.choice(stages), "closedate": iso(created + rng.randrange(10, 120) * DAY),
                     "dealtype": rng.choice(("newbusiness", "existingbusiness"))}
            assocs = []
            if contact_ids:
                for cid in rng.sample(contact_ids, min(len(contact_ids), rng.choice((1, 1, 2)))):
                    assocs.append(("contacts", cid, 3))
            if company_ids:
                assocs.append(("companies", rng.choice(company_ids), 5))
            deal_ids.append(put("deals", props, created, updated, assocs))
        engagement_props = {
            "tasks": lambda n: {"hs_task_subject": f"Follow up #{n}", "hs_task_body": "Call back about pricing",
                                "hs_task_status": rng.choice(("NOT_STARTED", "COMPLETED", "WAITING")),
                                "hs_task_priority": rng.choice(("LOW", "MEDIUM", "HIGH")),
                                "hs_task_type": rng.choice(("EMAIL", "CALL", "TODO"))},
            "notes": lambda n: {"hs_note_body": f"<p>Met at the conference, note {n}</p>"},
            "calls": lambda n: {"hs_call_title": f"Discovery call {n}", "hs_call_direction": "OUTBOUND",
                                "hs_call_status": "COMPLETED", "hs_call_duration": str(rng.randrange(1, 60) * 60000)},
            "meetings": lambda n: {"hs_meeting_title": f"Demo {n}", "hs_meeting_outcome": "SCHEDULED",
                                   "hs_meeting_location": "Zoom"},
            "emails": lambda n: {"hs_email_subject": f"Re: proposal {n}", "hs_email_direction": "EMAIL",
                                 "hs_email_status": "SENT", "hs_email_text": "Thanks for your time."},
        }
        counts = {"tasks": tasks, "notes": notes, "calls": calls, "meetings": meetings, "emails": emails}
        out = {"contacts": contacts, "companies": companies, "deals": deals}
        for type_name, count in counts.items():
            pair_contact = ot.ASSOC[(type_name, "contacts")].unlabeled
            pair_deal = ot.ASSOC[(type_name, "deals")].unlabeled
            for i in range(count):
                created, updated = stamps(i)
                props = engagement_props[type_name](i)
                props["hs_timestamp"] = iso(created + rng.randrange(0, 30) * DAY)
                assocs = []
                if contact_ids:
                    assocs.append(("contacts", rng.choice(contact_ids), pair_contact))
                if deal_ids and rng.random() < 0.5:
                    assocs.append(("deals", rng.choice(deal_ids), pair_deal))
                put(type_name, props, created, updated, assocs)
            out[type_name] = count
        state.bump()
    return out

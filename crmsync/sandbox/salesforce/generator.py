"""Seeded, realistic records for the Salesforce sandbox: accounts, contacts at those accounts,
opportunities, tasks (some of them logged calls), events and (when asked for: ``notes``, none by
default) classic Notes on contacts, accounts and opportunities, with SystemModstamps spread over the
last 150 days. ``same_modstamp=N`` gives the first N records of each object one identical
SystemModstamp: the burst a mass update or data load leaves behind, which a cursor on
SystemModstamp alone cannot page through (ties are broken by Id)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from .schema import INDUSTRIES, STAGES
from .store import OrgState

FIRST = ("Liis", "Mart", "Ada", "Grace", "Alan", "Mary", "Jon", "Aino", "Kadri", "Priya", "Tom", "Eve", "Olu",
         "Sven", "Maria", "Chen", "Lea", "Raj", "Anna", "Mateo")
LAST = ("Tamm", "Saar", "Kask", "Lovelace", "Hopper", "Turing", "Smith", "Rossi", "Virtanen", "Patel", "Meyer",
        "Okafor", "Berg", "Garcia", "Wang", "Novak", "Silva", "Kim", "Dubois", "Jensen")
COMPANY = ("Northwind", "Contoso", "Fabrikam", "Initech", "Globex", "Umbrella", "Hooli", "Vandelay", "Acme",
           "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Wonka")
CITIES = (("Tallinn", "Estonia"), ("Helsinki", "Finland"), ("Berlin", "Germany"), ("London", "United Kingdom"),
          ("Austin", "United States"), ("Toronto", "Canada"))


@dataclass
class SeedOptions:
    seed: int = 0
    accounts: int = 20
    contacts: int = 100
    opportunities: int = 30
    tasks: int = 20
    events: int = 10
    notes: int = 0
    same_modstamp: int = 0


def generate(state: OrgState, opts: SeedOptions) -> dict[str, int]:
    rng = random.Random(opts.seed)
    now = state.clock.now()
    shared = now - timedelta(days=3, seconds=rng.randrange(3600))

    def stamp(i: int):
        return shared if i < opts.same_modstamp else now - timedelta(seconds=rng.randrange(1, 150 * 86400))

    accounts, contacts, opps = [], [], []
    for i in range(opts.accounts):
        city, country = rng.choice(CITIES)
        name = f"{rng.choice(COMPANY)} {rng.choice(('Ltd', 'Group', 'AS', 'Inc', 'Oy', 'GmbH'))} {i + 1}"
        rec = state.create("Account", {
            "Name": name, "Website": f"https://{name.split()[0].lower()}{i + 1}.example.com",
            "Industry": rng.choice(INDUSTRIES), "NumberOfEmployees": rng.randrange(5, 5000),
            "AnnualRevenue": float(rng.randrange(100, 90000) * 1000), "BillingCity": city, "BillingCountry": country,
            "Phone": f"+372 6{rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
            "Region__c": rng.choice(("EMEA", "AMER", "APAC"))}, modstamp=stamp(i), notify=False)
        accounts.append(rec["Id"])
    for i in range(opts.contacts):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, country = rng.choice(CITIES)
        body = {"FirstName": first, "LastName": last, "Email": f"{first.lower()}.{last.lower()}{i + 1}@example.org",
                "Phone": f"+372 5{rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
                "Title": rng.choice(("CEO", "CTO", "Buyer", "Engineer", "Head of Sales", None)),
                "LeadSource": rng.choice(("Web", "Partner Referral", "Other")),
                "MailingCity": city, "MailingCountry": country,
                "Tier__c": rng.choice(("Gold", "Silver", "Bronze")),
                "Interests__c": ";".join(rng.sample(("Mobile", "Analytics", "Security", "Cloud"), 2))}
        if accounts and rng.random() < 0.85:
            body["AccountId"] = rng.choice(accounts)
        contacts.append(state.create("Contact", body, modstamp=stamp(i), notify=False)["Id"])
    for i in range(opts.opportunities):
        stage = rng.choice(STAGES)
        body = {"Name": f"Deal {i + 1}: {rng.choice(('Renewal', 'Expansion', 'Pilot', 'New licence'))}",
                "StageName": stage, "Amount": float(rng.randrange(5, 500) * 250),
                "CloseDate": (date.today() + timedelta(days=rng.randrange(-60, 120))).isoformat()}
        if accounts:
            body["AccountId"] = rng.choice(accounts)
        if contacts and rng.random() < 0.5:
            body["ContactId"] = rng.choice(contacts)
        opps.append(state.create("Opportunity", body, modstamp=stamp(i), notify=False)["Id"])
    for i in range(opts.tasks):
        call = i % 3 == 0
        body = {"Subject": "Call" if call else rng.choice(("Send pricing", "Follow up", "Prepare contract")),
                "ActivityDate": (date.today() + timedelta(days=rng.randrange(-20, 20))).isoformat(),
                "Status": "Completed" if call else rng.choice(("Not Started", "In Progress", "Completed")),
                "Priority": rng.choice(("High", "Normal", "Low")), "TaskSubtype": "Call" if call else "Task"}
        if call:
            body.update(CallType=rng.choice(("Inbound", "Outbound")), CallDurationInSeconds=rng.randrange(60, 1800),
                        CallDisposition=rng.choice(("Connected", "Left voicemail")), Type="Call")
        if contacts:
            body["WhoId"] = rng.choice(contacts)
        if opps and rng.random() < 0.5:
            body["WhatId"] = rng.choice(opps)
        state.create("Task", body, modstamp=stamp(i), notify=False)
    for i in range(opts.events):
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=rng.randrange(-400, 400))
        body = {"Subject": rng.choice(("Demo", "Kick-off", "Quarterly review")),
                "StartDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "DurationInMinutes": rng.choice((30, 45, 60)),
                "Location": rng.choice(("Zoom", "Office", None))}
        if contacts:
            body["WhoId"] = rng.choice(contacts)
        if accounts and rng.random() < 0.5:
            body["WhatId"] = rng.choice(accounts)
        state.create("Event", {k: v for k, v in body.items() if v is not None}, modstamp=stamp(i), notify=False)
    parents = contacts + accounts + opps
    for i in range(opts.notes if parents else 0):
        # A Note hangs on exactly one record (ParentId, required; "Salesforce Object Reference: Note").
        first = rng.choice(("Called about the renewal", "Pricing questions", "Met at the conference",
                            "Wants a security review"))
        body = f"{first}\n{rng.choice(('Follow up next week.', 'Sent the deck.', 'Budget approved in Q3.'))}"
        title = first if rng.random() < 0.5 else rng.choice(("Call notes", "Meeting summary", "FYI"))
        state.create("Note", {"ParentId": rng.choice(parents), "Title": title, "Body": body},
                     modstamp=stamp(i), notify=False)
    return {"Account": opts.accounts, "Contact": opts.contacts, "Opportunity": opts.opportunities,
            "Task": opts.tasks, "Event": opts.events, "Note": opts.notes if parents else 0}

"""The original design's two example rules (docs/original-design.md, "Automation Rules")."""
import copy

EMAIL_REPLY_RULE = {
    "name": "Auto-create contact on email reply",
    "enabled": True,
    "trigger": {"type": "email_replied"},
    "conditions": [{"field": "sender_email", "operator": "is_not_empty", "value": None}],
    "actions": [
        {"type": "create_contact", "params": {"lifecycle_stage": "lead", "lead_source": "inbound_email"}},
        {"type": "create_deal", "params": {"name": "Inbound Lead - {email}", "stage": "qualified_to_buy",
                                           "amount": 0}},
    ],
}

MEETING_RULE = {
    "name": "Update deal on meeting scheduled",
    "enabled": True,
    "trigger": {"type": "meeting_scheduled"},
    "conditions": [{"field": "deal.stage", "operator": "equals", "value": "qualified_to_buy"}],
    "actions": [
        {"type": "update_deal", "params": {"stage": "presentation_scheduled", "probability": 40}},
        {"type": "create_task", "params": {"title": "Prepare for meeting with {contact_name}",
                                           "due_date": "{meeting_date - 1 day}", "priority": "high"}},
    ],
}


def seed_rules():
    return [copy.deepcopy(EMAIL_REPLY_RULE), copy.deepcopy(MEETING_RULE)]

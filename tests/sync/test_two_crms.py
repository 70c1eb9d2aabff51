"""One tenant with a HubSpot and a Pipedrive config: a change made in one CRM reaches the other
through the local store, once, without loops."""
from tests.sync.conftest import add_pipedrive_config


def writes(entries):
    return [e for e in entries if e.get("method") in ("POST", "PATCH", "PUT", "DELETE")
            and not str(e.get("path", "")).endswith("/search")]


def test_change_in_hubspot_reaches_pipedrive_once(world, pipedrive_crm):
    pd_config = add_pipedrive_config(world, pipedrive_crm)
    world.hs.seed(contacts=5, companies=2, seed=21)
    assert world.sync()["status"] == "succeeded"
    job = world.sync(pd_config)
    assert job["status"] == "succeeded", job
    persons = [p for p in pipedrive_crm.state.tables["person"].rows.values() if not p["is_deleted"]]
    assert len(persons) == 5
    orgs = [o for o in pipedrive_crm.state.tables["organization"].rows.values() if not o["is_deleted"]]
    assert len(orgs) == 2
    # the loop settles: nothing more to do on either side
    hs_before = len(world.hs.state.records["contacts"])
    for _ in range(2):
        assert sum(v for k, v in world.sync().items() if k.endswith("_synced")) == 0
        assert sum(v for k, v in world.sync(pd_config).items() if k.endswith("_synced")) == 0
    assert len(world.hs.state.records["contacts"]) == hs_before

    # an edit in HubSpot travels to Pipedrive
    ext = next(iter(world.links("contact", "hubspot")))
    world.hs.edit("contacts", ext, {"lastname": "Travelled"})
    world.sync()
    world.sync(pd_config)
    local_id = world.links("contact", "hubspot")[ext]
    pd_id = {v: k for k, v in world.links("contact", "pipedrive").items()}[local_id]
    person = pipedrive_crm.state.tables["person"].rows[int(pd_id)]
    assert person["last_name"] == "Travelled"
    # and comes back to HubSpot as nothing
    job = world.sync()
    assert sum(v for k, v in job.items() if k.endswith("_synced")) == 0
    assert world.hs.state.records["contacts"][int(ext)].props["lastname"] == "Travelled"


HUBSPOT_TO_PIPEDRIVE_STAGES = {"appointmentscheduled": "Qualified", "qualifiedtobuy": "Contact made",
                               "presentationscheduled": "Demo scheduled"}


def test_deal_stages_travel_through_value_mappings(world, pipedrive_crm):
    """Stages are named differently in each CRM: the Pipedrive config's value mappings translate
    the local (HubSpot-named) stage at its boundary, both ways."""
    pd_config = add_pipedrive_config(world, pipedrive_crm, entities=["contacts", "companies", "deals"],
                                     value_mappings={"deal.stage": HUBSPOT_TO_PIPEDRIVE_STAGES,
                                                     "deal.pipeline": {"default": "Sales"}})
    for n, stage in enumerate(HUBSPOT_TO_PIPEDRIVE_STAGES):
        world.hs.api("POST", "/crm/v3/objects/deals", json={"properties": {
            "dealname": f"Deal {n}", "dealstage": stage, "pipeline": "default", "amount": "100"}})
    assert world.sync()["deals_synced"] == 3
    job = world.sync(pd_config)
    assert job["status"] == "succeeded" and job["deals_synced"] == 3, job
    stages = {s["id"]: s["name"] for s in pipedrive_crm.state.stages.values()}
    pd_deals = {d["title"]: stages[d["stage_id"]] for d in pipedrive_crm.state.tables["deal"].rows.values()}
    assert pd_deals == {f"Deal {n}": name for n, name in enumerate(HUBSPOT_TO_PIPEDRIVE_STAGES.values())}
    # a stage moved in Pipedrive arrives in HubSpot under HubSpot's name
    deal = next(d for d in pipedrive_crm.state.tables["deal"].rows.values() if d["title"] == "Deal 0")
    demo = next(i for i, name in stages.items()
                if name == "Demo scheduled" and pipedrive_crm.state.stages[i]["pipeline_id"] == deal["pipeline_id"])
    pipedrive_crm.state.update("deal", deal["id"], {"stage_id": demo}, source="app")
    world.sync(pd_config)
    world.sync()
    hs_deal = next(r for r in world.hs.state.records["deals"].values() if r.props.get("dealname") == "Deal 0")
    assert hs_deal.props["dealstage"] == "presentationscheduled"
    # and nothing bounces back
    assert sum(v for k, v in world.sync(pd_config).items() if k.endswith("_synced")) == 0
    assert sum(v for k, v in world.sync().items() if k.endswith("_synced")) == 0

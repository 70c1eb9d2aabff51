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

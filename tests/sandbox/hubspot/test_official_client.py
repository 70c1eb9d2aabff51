"""The official hubspot-api-client (v12), pointed at the sandbox with host=, deserializes our answers."""
from __future__ import annotations

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import ApiException as AssocApiException
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)


@pytest.fixture
def client(hubspot_sandbox):
    return HubSpot(access_token=hubspot_sandbox.token, host=hubspot_sandbox.base_url)


def test_get_all_search_and_batch_create(hubspot_sandbox, client):
    hubspot_sandbox.seed(seed=5, contacts=250, companies=10)
    everyone = client.crm.contacts.get_all(properties=["email", "crm_tier"])
    assert len(everyone) == 250 and len({c.id for c in everyone}) == 250
    assert all(c.properties["email"] for c in everyone)

    req = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="hs_object_id", operator="GT",
                                                   value=everyone[99].id)])],
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        properties=["email"], limit=200, after="0")
    page = client.crm.contacts.search_api.do_search(public_object_search_request=req)
    assert page.total == 150 and len(page.results) == 150 and page.paging is None
    assert page.results[0].id == everyone[100].id

    batch = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"email": f"sdk{i}@example.com"}) for i in range(3)])
    created = client.crm.contacts.batch_api.create(batch_input_simple_public_object_batch_input_for_create=batch)
    assert created.status == "COMPLETE" and len(created.results) == 3

    read = client.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=created.results[0].id), SimplePublicObjectId(id="999999")],
        properties=["email"], properties_with_history=[]))
    assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"

    one = client.crm.contacts.basic_api.get_by_id("sdk1@example.com", id_property="email",
                                                  associations=["companies"])
    assert one.properties["email"] == "sdk1@example.com"
    comp = client.crm.companies.basic_api.get_page(limit=5, properties=["domain"])
    assert len(comp.results) == 5 and comp.paging.next.after
    assocs = client.crm.associations.v4.basic_api.get_page("contacts", everyone[0].id, "companies")
    assert all(a.association_types for a in assocs.results)


def test_conflict_and_rate_limit_raise_api_exception(hubspot_sandbox, client):
    create = SimplePublicObjectInputForCreate(properties={"email": "twice@example.com"}, associations=[])
    first = client.crm.contacts.basic_api.create(simple_public_object_input_for_create=create)
    with pytest.raises(ApiException) as conflict:
        client.crm.contacts.basic_api.create(simple_public_object_input_for_create=create)
    assert conflict.value.status == 409
    assert f"Existing ID: {first.id}" in conflict.value.body

    hubspot_sandbox.configure(rate_limit=4)  # the two creates above already count in this window
    client.crm.contacts.basic_api.get_page(limit=1)
    client.crm.contacts.basic_api.get_page(limit=1)
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page(limit=1)
    assert limited.value.status == 429
    assert "TEN_SECONDLY_ROLLING" in limited.value.body
    with pytest.raises(AssocApiException) as limited_v4:
        client.crm.associations.v4.basic_api.get_page("contacts", first.id, "companies")
    assert limited_v4.value.status == 429


def test_partial_association_batches_properties_and_pipelines(hubspot_sandbox, client):
    from hubspot.crm.associations.v4 import (
        AssociationSpec,
        BatchInputPublicAssociationMultiPost,
        BatchInputPublicDefaultAssociationMultiPost,
        PublicAssociationMultiPost,
        PublicDefaultAssociationMultiPost,
        PublicObjectId,
    )
    from hubspot.crm.properties import PropertyCreate
    contact = client.crm.contacts.basic_api.create(simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
        properties={"email": "pair@example.com"}, associations=[]))
    company = client.crm.companies.basic_api.create(simple_public_object_input_for_create={"properties": {"name": "P"}})
    spec = [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)]
    made = client.crm.associations.v4.batch_api.create("contacts", "companies", BatchInputPublicAssociationMultiPost(
        inputs=[PublicAssociationMultiPost(_from=PublicObjectId(id=contact.id), to=PublicObjectId(id=company.id),
                                           types=spec),
                PublicAssociationMultiPost(_from=PublicObjectId(id=contact.id), to=PublicObjectId(id="999999"),
                                           types=spec)]))
    assert [r.to_object_id for r in made.results] == [company.id]
    assert made.num_errors == 1 and made.errors[0].context["toObjectId"] == ["999999"]
    default = client.crm.associations.v4.batch_api.create_default(
        "companies", "contacts", BatchInputPublicDefaultAssociationMultiPost(inputs=[
            PublicDefaultAssociationMultiPost(_from=PublicObjectId(id="888888"), to=PublicObjectId(id=contact.id))]))
    assert default.results == [] and default.errors[0].category == "OBJECT_NOT_FOUND"

    groups = client.crm.properties.groups_api.get_all("deals")
    assert "dealinformation" in [g.name for g in groups.results]
    prop = client.crm.properties.core_api.create("deals", PropertyCreate(
        name="crmsync_id", label="crmsync id", type="string", field_type="text", group_name="dealinformation",
        has_unique_value=True))
    assert prop.name == "crmsync_id" and prop.has_unique_value
    [tickets] = client.crm.pipelines.pipelines_api.get_all("tickets").results
    assert [s.metadata["ticketState"] for s in tickets.stages][-1] == "CLOSED"

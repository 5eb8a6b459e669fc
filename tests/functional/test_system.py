"""Home document, ping and health over every transport."""

from __future__ import annotations

from tests.clients import assert_error

OPERATIONS = {"create_queue", "post_messages", "claim_messages", "list_messages", "delete_messages",
              "delete_claim", "bulk_delete_messages", "delete_queue"}


def _assert_healthy(report):
    assert report["storage_reachable"] is True
    assert set(report["operation_status"]) == OPERATIONS
    assert all(op["succeeded"] for op in report["operation_status"].values())
    assert report["message_volume"]["total"] == 100


def test_health_runs_a_live_self_check_for_admins(client, pooled):
    result = client.call("check_node_health", headers={"X-Roles": "admin"})
    assert result.status == 200
    if not pooled:
        _assert_healthy(result.body)
        return
    # Pooled: the catalog's state and one report per registered pool (http-v2.md §7.2).
    reports = dict(result.body)
    assert reports.pop("catalog_reachable") is True
    assert len(reports) >= 2
    for report in reports.values():
        _assert_healthy(report)


def test_health_leaves_no_trace_in_the_callers_project(client):
    client.call("check_node_health", headers={"X-Roles": "admin"})
    assert client.call("queue_list").body["queues"] == []


def test_health_is_refused_without_the_admin_role(client):
    result = client.call("check_node_health")
    assert_error(result, 403, "You are not authorized to complete this action.", "Not authorized",
                 client.transport)


def test_ping_answers_204(client):
    assert client.call("ping_node").status == 204


def test_home_document_lists_admin_resources_in_admin_mode(client):
    resources = client.call("get_home_doc").body["resources"]
    assert "rel/health" in resources and "rel/messages" in resources

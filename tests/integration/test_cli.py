"""Every client command of the CLI against a real server: tables, --json, exit codes."""

from __future__ import annotations

import json

import pytest

from service.cli import main
from service.client import NewItem
from tests.conftest import png


def run(capsys, server, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--server", server.target])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, server, *argv: str):
    code, out, err = run(capsys, server, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def shop(client):
    client.upsert([NewItem(id=f"{color}-{n}", image=png(color), text=f"a {color} thing",
                           payload={"color": color, "n": n}) for color in ("red", "blue") for n in range(3)])
    return client


def test_version_and_help_list_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("lookalike ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("serve", "search", "similar", "recommend", "events", "profile", "forget", "embed", "get",
                    "delete", "ingest", "health", "demo", "train-demo", "eval"):
        assert f"\n    {command}" in out, command


def test_serve_help_names_each_flags_variable_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for variable, default in (("LOOKALIKE_PORT", "50051"), ("LOOKALIKE_MODEL", "ViT-B-32"),
                              ("LOOKALIKE_COLLECTION", "items"), ("LOOKALIKE_MAX_INFLIGHT", "64")):
        assert f"env {variable}; default: {default})" in out


def test_search_similar_and_get_print_tables_and_json(capsys, server, shop):
    code, out, _ = run(capsys, server, "search", "--text", "a red thing", "--target", "text", "--filter",
                       "color=red", "--limit", "2")
    assert code == 0 and "score" in out and "red-" in out and "blue-" not in out
    found = run_json(capsys, server, "similar", "red-0", "--filter", "n>=1")
    assert {hit["id"] for hit in found["results"]} == {"red-1", "red-2", "blue-1", "blue-2"}
    got = run_json(capsys, server, "get", "red-0", "nope")
    assert [item["id"] for item in got["items"]] == ["red-0"] and got["missing_ids"] == ["nope"]
    code, out, _ = run(capsys, server, "get", "red-1", "nope")
    assert "red-1" in out and "not in the catalog: nope" in out


def test_embed_prints_vectors(capsys, server, tmp_path, tiny_embedder):
    image = tmp_path / "red.png"
    image.write_bytes(png("red"))
    reply = run_json(capsys, server, "embed", "--text", "hello", "--image", str(image))
    assert reply["dim"] == tiny_embedder.dim and [v["kind"] for v in reply["vectors"]] == ["text", "image"]
    assert len(reply["vectors"][1]["vector"]) == tiny_embedder.dim


def test_events_recommend_profile_forget(capsys, server, shop, tmp_path):
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(json.dumps({"user_id": "ann", "item_id": f"red-{n}", "type": "purchase"})
                               for n in range(3)) + "\n{broken\n"
                     + json.dumps({"user_id": "ann", "item_id": "red-0", "type": "teleport"}) + "\n")
    code, out, _ = run(capsys, server, "events", str(jsonl))
    assert code == 3
    assert "recorded 3, failed 2" in out
    assert f"{jsonl}:4: (no id): not JSON" in out and f"{jsonl}:5: ann: type 'teleport'" in out

    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,type,weight,timestamp\nbob,blue-0,like,2,2026-01-01T00:00:00Z\n"
                   "bob,blue-1,click,,1767225600\nbob,,view,,\n")
    summary = json.loads(run(capsys, server, "events", str(csv), "--json")[1])
    assert (summary["recorded"], summary["failed"]) == (2, 1)
    assert summary["failures"][0]["where"] == f"{csv}:4" and "item_id is missing" in summary["failures"][0]["message"]

    result = run_json(capsys, server, "recommend", "ann", "--limit", "3", "--explain")
    assert not result["cold_start"] and len(result["items"]) == 3
    assert all(set(item["because"]) <= {"red-0", "red-1", "red-2"} for item in result["items"])
    code, out, _ = run(capsys, server, "recommend", "ann", "--limit", "2")
    assert code == 0 and "strategy multi_interest" in out
    profile = run_json(capsys, server, "profile", "ann")
    assert profile["event_count"] == 3 and profile["interests"]
    assert run_json(capsys, server, "forget", "ann") == {"deleted_events": 3}


def test_delete_by_ids_and_by_filter_asks_unless_yes(capsys, server, shop, monkeypatch):
    assert run_json(capsys, server, "delete", "red-0", "ghost") == {"deleted": 1}
    code, _, err = run(capsys, server, "delete", "--filter", "color=blue")
    assert code == 2 and "without --yes" in err  # stdin is not a terminal under pytest
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out, _ = run(capsys, server, "delete", "--filter", "color=blue")
    assert code == 1 and "nothing deleted" in out
    assert len(shop.get(["blue-0", "blue-1", "blue-2"]).items) == 3
    assert run_json(capsys, server, "delete", "--filter", "color=blue", "--yes") == {"deleted": 3}


def test_ingest_names_file_and_line_of_every_failure_and_exits_3(capsys, server, tmp_path, client):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.png").write_bytes(png("red"))
    (photos / "sub" / "b.png").write_bytes(png("blue"))
    (photos / "broken.png").write_bytes(b"not a png")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join([
        json.dumps({"id": "t1", "text": "a caption", "payload": {"k": 1}}),
        json.dumps({"id": "img", "image": "photos/a.png"}),
        json.dumps({"id": "gone", "image": "photos/missing.png", "text": "would be stored text-only"}),
        '{"id": "x", oops',
        json.dumps({"id": "typo", "txet": "misspelt"}),
    ]) + "\n")

    code, out, _ = run(capsys, server, "ingest", "--images", str(photos), "--jsonl", str(items), "--batch-size", "2")

    assert code == 3
    assert "upserted 4, failed 4" in out
    assert f"{photos / 'broken.png'}: broken.png: items[" in out
    assert f"{items}:3: gone: image {tmp_path / 'photos' / 'missing.png'}" in out
    assert f"{items}:4: (no id): not JSON" in out
    assert f"{items}:5: typo: unknown field(s) txet" in out
    assert {item.id for item in client.get(["a.png", "sub/b.png", "t1", "img", "gone"]).items} == {
        "a.png", "sub/b.png", "t1", "img"}


def test_health_and_a_clear_message_when_no_server_answers(capsys, server):
    code, out, _ = run(capsys, server, "health")
    assert code == 0 and out.strip() == "SERVING"
    code = main(["get", "x", "--server", "127.0.0.1:1", "--timeout", "3"])
    err = capsys.readouterr().err
    assert code == 1 and "UNAVAILABLE" in err

"""`make demo`'s command, as a user runs it: SQLite, inline, both sandboxes in-process."""
import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_and_tells_what_happened(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["CRMSYNC_HOME"] = str(tmp_path)
    crmsync = Path(sys.executable).parent / "crmsync"
    result = subprocess.run([str(crmsync), "demo", "--contacts", "30", "--persons", "20"], capture_output=True,
                            text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "neither side was overwritten" in out and "HubSpot now says first name = 'Loretta'" in out
    assert "Edited-In-HubSpot', Pipedrive 'Edited-In-HubSpot'" in out
    assert "Salesforce's phone edit:  HubSpot '+1 415 555 0199', Pipedrive '+1 415 555 0199'" in out
    # All three agree after the first sync (the push-backs included): the Salesforce round of the
    # Salesforce edit carries that edit and the people's edits, not a backlog from the first sync.
    salesforce_round = out.split("6. A change made in Salesforce")[1].split("7. Nothing left to do")[0]
    salesforce_line = next(line for line in salesforce_round.splitlines() if line.strip().startswith("Salesforce "))
    assert "company" not in salesforce_line and "contact updated=" in salesforce_line, salesforce_line
    last_round = out.split("7. Nothing left to do")[1]
    assert last_round.count("nothing to do") == 3
    assert (tmp_path / "demo.db").exists()

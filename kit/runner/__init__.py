"""WHERE and WHEN cells run: host and Docker runners, the sweep journal, resume."""

"""What the machine was: host and ML-stack fingerprints, with secrets redacted.

Importing this package never imports torch; `ml_stack()` does, inside the measuring process.
"""

from __future__ import annotations

from kit.env.host import host_fingerprint, nvidia_smi_xml
from kit.env.ml import ml_stack
from kit.env.redact import REDACTED, redact, redact_text, relevant_env
from kit.env.write import write_env, write_json, write_process_env

__all__ = [
    "REDACTED",
    "host_fingerprint",
    "ml_stack",
    "nvidia_smi_xml",
    "redact",
    "redact_text",
    "relevant_env",
    "write_env",
    "write_json",
    "write_process_env",
]

"""Launched by test_ddp.py under ``accelerate launch``: train, then record this rank's final weights."""

import hashlib
import json
import sys
from pathlib import Path

import toolkit

config, digest_dir = sys.argv[1], Path(sys.argv[2])
run = toolkit.train(config)
from accelerate import PartialState  # noqa: E402 (after training, as a user's script would)

state = PartialState()
rank, world = state.process_index, state.num_processes


def digest(tensors: dict) -> str:
    return hashlib.sha256(b"".join(tensors[k].detach().cpu().numpy().tobytes() for k in sorted(tensors))).hexdigest()


(digest_dir / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "world": world,
            "digest": digest(run.model.state_dict()),
            "parameters": digest(dict(run.model.named_parameters())),
            "metrics": run.metrics.get("test", {}).get("accuracy"),
        }
    )
)

"""Model IDs: derived from the artifact and the metadata that defines the model."""

import hashlib

from google.protobuf import json_format

from roundhouse.platform.api import model_pb2


def compute(record: model_pb2.ModelRecord) -> str:
    """`m-` + 24 hex digits of sha256 over the record's defining fields.

    Everything but model_id, timings, job_id, image and the artifact's uri counts: the
    artifact's sha256, the build (git SHA, dirty flag, target), the request, the data
    fingerprint, params, seeds, library versions and metrics. Same commit + same data -> same
    ID, whether it ran in a container image (which the commit's build defines anyway) or not.
    """
    defining = model_pb2.ModelRecord()
    defining.CopyFrom(record)
    for field in ("model_id", "timings", "job_id", "image"):
        defining.ClearField(field)
    defining.artifact.ClearField("uri")
    canonical = json_format.MessageToJson(defining, sort_keys=True, indent=None)
    return "m-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]

"""The request pipeline: the ordered stages every call passes, for every endpoint."""

from sluicegate.pipeline.call import Call, Principal, Reply, Usage
from sluicegate.pipeline.stage import Next, Pipeline, Stage

__all__ = ["Call", "Next", "Pipeline", "Principal", "Reply", "Stage", "Usage"]

"""Print the job graph's operator uids as JSON: `python -m pipeline.jobs.uids`.

Run in a fresh process: the Table-API source's generated uids (`1_source`, …) come from a counter in
the JVM, so they are what a deployed job (one job per JVM) gets only when built first in its JVM.
"""

from __future__ import annotations

import json


def job_uids() -> list[dict[str, str | None]]:
    """(operator name, uid) of every node of the job's stream graph, sorted by name."""
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job
    from pipeline.settings import load_settings

    settings = load_settings()
    env = stream_env(settings)
    liverec_job.build(env, settings)
    graph = env._generate_stream_graph(clear_transformations=False)  # noqa: SLF001 - no public accessor
    out = []
    it = graph.getStreamNodes().iterator()
    while it.hasNext():
        node = it.next()
        out.append({"name": node.getOperatorName(), "uid": node.getTransformationUID()})
    return sorted(out, key=lambda n: (n["name"], n["uid"] or ""))


if __name__ == "__main__":
    print(json.dumps(job_uids(), indent=1))

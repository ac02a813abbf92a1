"""A local Ray cluster of separate nodes on this machine, for tests that need real nodes (a node
lost mid-run, a token-authenticated head). Run as a child process (``python ray_nodes.py``), so its
environment (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``) stays out of the test process:

* prints the cluster's GCS address (``IP:PORT``) on its first line, once every node is up;
* ``--workers N``: N worker nodes of 1 CPU each beside the head (``--head-cpus``);
* reads commands on stdin, one a line: ``lose`` SIGKILLs the first worker node's processes (its
  actors die with it) and adds a new worker node (what an autoscaler does), then prints ``replaced``;
* at the end of stdin (the test closing it, or dying) every node is stopped.
"""

from __future__ import annotations

import argparse
import sys

OBJECT_STORE = 80 * 2**20  # bytes per node: small, the machine is shared


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-cpus", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    head = {"num_cpus": args.head_cpus, "include_dashboard": False, "object_store_memory": OBJECT_STORE}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        workers = [cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE) for _ in range(args.workers)]
        cluster.wait_for_nodes()
        print(cluster.address, flush=True)
        for line in sys.stdin:
            if line.strip() == "lose" and workers:
                cluster.remove_node(workers.pop(0), allow_graceful=False)
                workers.append(cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE))
                print("replaced", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()

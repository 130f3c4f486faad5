"""Whether a process still runs: the one test shared by the metrics folders' sweeps (the server's, at its
start, and each worker's, at its start and at each scrape). Imports nothing of the service's, so the
server's supervisor can use it without loading the metrics."""

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True

"""One method of the ``kmeans_stream`` benchmark, alone in its process (for its memory).

``python -m benchmarks._stream_worker METHOD PATH N D K BATCH OUT`` streams the
float32 memmap at PATH in batches, one pass to warm up (compilation) and three
timed passes, and writes the centroids, the pass times and the peak memory
growth over the warmed-up baseline to OUT (.npz). Memory is ``RssAnon`` of
/proc/self/status (what the process allocated; the memmap's file pages are page
cache), sampled every 2 ms.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak ``RssAnon`` (bytes) while active, sampled by a thread."""

    def __init__(self):
        self.anon = 0
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.anon = max(self.anon, _status("RssAnon"))
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(method, path, n, d, k, batch, out):
    n, d, k, batch = int(n), int(d), int(k), int(batch)
    x = np.memmap(path, np.float32, "r", shape=(n, d))

    def batches():
        return (x[i : i + batch] for i in range(0, n, batch))

    if method == "gradjax":
        import jax

        from gradjax import em

        def fit():
            state = em.fit_minibatch_kmeans(jax.random.key(0), batches(), k, progress=False)
            return np.asarray(state.centroids)

    else:
        import warnings

        from sklearn.cluster import MiniBatchKMeans
        from threadpoolctl import threadpool_limits

        threads = 1 if method == "sklearn-1thread" else None

        def fit():
            model = MiniBatchKMeans(k, batch_size=batch, compute_labels=False, n_init=1,
                                    random_state=0)  # fmt: skip
            with warnings.catch_warnings(), threadpool_limits(threads):
                warnings.simplefilter("ignore")
                for b in batches():
                    model.partial_fit(b)
            return model.cluster_centers_

    fit()  # warm-up: compilation (gradjax), first touch of the pages (both)
    base = _status("RssAnon")
    times = []
    with PeakMemory() as peak:
        for _ in range(3):
            start = time.perf_counter()
            centroids = fit()
            times.append(time.perf_counter() - start)
    np.savez(out, centroids=centroids, times=np.array(times), anon=peak.anon - base)


if __name__ == "__main__":
    main(*sys.argv[1:])

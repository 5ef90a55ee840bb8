"""gunicorn settings for ``make serve`` and ``deepfake-serve`` (deepfake/commands/serve.py), which run
``gunicorn -c <this file>``.

Give it as a file, not as ``python:deepfake.web.gunicorn_conf``: importing it as a module imports
the package, with OpenCV and onnxruntime, into gunicorn's master before it forks the workers, and
workers forked with that native state abort ("std::system_error") when they exit. Loaded as a
file, it imports nothing from the project; each worker loads the app after the fork.

HOST, PORT, WORKERS and THREADS come from the environment (the Makefile passes them). Tuned for
small CPU machines: each worker is a process with its own model and onnxruntime runs one thread
per worker, so workers x 1 threads of inference share the cores instead of each worker starting
one inference thread per core and fighting the others for them. gthread workers keep connections
alive and overlap request parsing in a few threads with inference, which releases the GIL.
"""

import os

wsgi_app = "deepfake.web.wsgi:app"
bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"]
workers = int(os.environ.get("WORKERS", "2"))
threads = int(os.environ.get("THREADS", "4"))
worker_class = "gthread"
keepalive = 5
# An occlusion heatmap with a large model can take seconds; a request stuck longer than this restarts the worker.
timeout = 60
graceful_timeout = 10
# Heartbeat files on a RAM disk, where there is one: a slow disk must not get workers killed as unresponsive.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The app logs one line per request itself (with its request id), so gunicorn's access log stays off.
accesslog = None
# gunicorn 27's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl), so two servers on
# one machine (make serve beside the tests) would take it from each other; nothing here uses it.
control_socket_disable = True
errorlog = "-"
loglevel = "info"

os.environ.setdefault("DEEPFAKE_ORT_THREADS", "1")
# Each request thread that finds faces needs a dlib detector of its own; each worker builds them at start.
os.environ.setdefault("DEEPFAKE_FACE_DETECTORS", str(threads))


def post_fork(server, worker):
    # OpenCV's own thread pool would add threads x workers more contenders for the same cores on every resize.
    import cv2

    cv2.setNumThreads(1)

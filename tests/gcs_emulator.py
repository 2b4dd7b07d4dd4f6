"""A Google Cloud Storage emulator for tests of `gs://` workdirs: `gcp-storage-emulator`'s in-memory HTTP server,
speaking GCS's JSON API on localhost. It is a test double for Google Cloud Storage: gcsfs, google-cloud-storage and
TensorStore (orbax) talk to it as they would to storage.googleapis.com, redirected by their emulator variables.

One addition: its media downloads lack the `x-goog-generation` header that GCS sends and TensorStore reads (without it
TensorStore fails with "Malformed StorageGeneration"), so `serve` adds it from the object's metadata."""

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator

BUCKET = 'fdx-test'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def _with_generation_headers() -> None:
    """Makes the emulator's media downloads carry `x-goog-generation` / `x-goog-metageneration` as GCS does."""
    from gcp_storage_emulator import server as server_lib
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    if getattr(original, 'adds_generation', False):
        return

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
        except NotFound:
            return
        response['x-goog-generation'] = obj['generation']
        response['x-goog-metageneration'] = obj['metageneration']

    download.adds_generation = True
    objects.download = download  # objects.get (`alt=media`) calls it by name
    server_lib.HANDLERS = tuple(
        (route, {verb: download if handler is original else handler for verb, handler in handlers.items()})
        for route, handlers in server_lib.HANDLERS
    )


@contextlib.contextmanager
def serve() -> Iterator[dict[str, str]]:
    """Runs the emulator with an empty bucket `BUCKET`; yields the environment variables that point clients at it."""
    from gcp_storage_emulator.server import create_server

    logging.getLogger('gcp_storage_emulator').setLevel(logging.ERROR)
    _with_generation_headers()
    port = _free_port()
    server = create_server('localhost', port, in_memory=True, default_bucket=BUCKET)
    server.start()
    httpd = server._api._httpd  # clients that hang up early are not errors (socketserver prints their tracebacks)
    report = httpd.handle_error
    httpd.handle_error = lambda request, address: (
        None if isinstance(sys.exc_info()[1], ConnectionError) else report(request, address)
    )
    url = f'http://localhost:{port}'
    try:
        yield {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url, 'GOOGLE_CLOUD_PROJECT': 'fdx-test'}
    finally:
        server.stop()
